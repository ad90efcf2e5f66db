"""The training loop: outputs, exact resume, Ctrl-C, eval hygiene, flat memory, the CLI."""

from __future__ import annotations

import gc
import json
import tracemalloc

import numpy as np
import pytest
from helpers import toy_data

import tinyres as tr
from tinyres import nn
from tinyres.cli import main
from tinyres.data import DataLoader
from tinyres.models import CifarResNet
from tinyres.training import TIMING_KEYS, TrainConfig, evaluate, fit, train

TRAIN, TEST = toy_data(96, 0), toy_data(48, 1)
CONFIG = TrainConfig(epochs=2, batch_size=32, lr=0.05, milestones=(1,), padding=1, flip=True, seed=3)


def small_model(seed=0):
    tr.manual_seed(seed)
    return CifarResNet(8, num_classes=4, in_channels=1)


def run(out, epochs=2, model_seed=0, resume=False, **kw):
    model = small_model(model_seed)
    config = TrainConfig(**{**CONFIG.__dict__, "epochs": epochs})
    history = train(model, TRAIN, TEST, config, out_dir=out, resume=resume, progress=False, **kw)
    return model, history


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        np.testing.assert_array_equal(sa[key].numpy(), sb[key].numpy(), err_msg=key)


def without_timing(history):
    return [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in history]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """A 2-epoch run that is never interrupted: (out_dir, model, history)."""
    out = tmp_path_factory.mktemp("straight")
    return (out, *run(out, epochs=2))


def test_a_short_run_learns_and_writes_csv_json_png_and_checkpoint(straight):
    out, _, history = straight
    assert [h["epoch"] for h in history] == [1, 2]
    assert [h["lr"] for h in history] == pytest.approx([0.05, 0.005])
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",") == list(history[0]) and len(rows) == 3
    assert json.loads((out / "metrics.json").read_text()) == history
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt = tr.load(out / "checkpoint.npz")
    assert ckpt["epoch"] == 2 and ckpt["history"] == history
    assert not list(out.glob(".*tmp"))  # no temporary files left behind


def test_resume_gives_the_same_weights_and_metrics_as_a_straight_run(tmp_path, straight):
    _, straight_model, straight_history = straight
    run(tmp_path / "b", epochs=1)
    # A different initialisation: every weight must come from the checkpoint.
    resumed, resumed_history = run(tmp_path / "b", epochs=2, model_seed=99, resume=True)
    same_weights(straight_model, resumed)
    assert without_timing(resumed_history) == without_timing(straight_history)
    assert (tmp_path / "b" / "metrics.json").read_text().count('"epoch"') == 2


def test_ctrl_c_leaves_a_checkpoint_that_resumes_to_the_same_result(tmp_path, straight):
    _, straight_model, straight_history = straight

    def interrupt(step, loss):
        if step == 5:  # the second batch of epoch 2 (3 batches per epoch)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", epochs=2, on_step=interrupt)
    assert tr.load(tmp_path / "b" / "checkpoint.npz")["epoch"] == 1
    resumed, resumed_history = run(tmp_path / "b", epochs=2, model_seed=7, resume=True)
    same_weights(straight_model, resumed)
    assert without_timing(resumed_history) == without_timing(straight_history)


def test_ctrl_c_in_the_first_epoch_still_leaves_a_checkpoint(tmp_path):
    def interrupt(step, loss):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, epochs=2, on_step=interrupt)
    assert tr.load(tmp_path / "checkpoint.npz")["epoch"] == 0
    _, history = run(tmp_path, epochs=1, model_seed=5, resume=True)
    assert [h["epoch"] for h in history] == [1]


def test_resume_refuses_a_different_recipe_or_a_missing_checkpoint(tmp_path):
    run(tmp_path, epochs=1)
    model = small_model()
    other = TrainConfig(**{**CONFIG.__dict__, "lr": 0.2})
    with pytest.raises(ValueError, match=r"different recipe.*\['lr'\]"):
        train(model, TRAIN, TEST, other, out_dir=tmp_path, resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(model, TRAIN, TEST, CONFIG, out_dir=tmp_path / "empty", resume=True, progress=False)


class Spy(nn.Module):
    """Records the mode and whether a graph is being built on every forward."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))
        self.calls = []

    def forward(self, x):
        self.calls.append((self.training, tr.is_grad_enabled()))
        return self.net(x)


def test_evaluation_runs_in_eval_mode_without_a_graph_and_restores_the_mode():
    tr.manual_seed(0)
    model = Spy()
    bn = model.net[1]
    before = bn.running_mean.numpy().copy()
    loss, acc = evaluate(model, DataLoader(TEST, 16), nn.CrossEntropyLoss())
    assert model.calls == [(False, False)] * 3
    assert model.training
    np.testing.assert_array_equal(bn.running_mean.numpy(), before)
    assert 0 <= acc <= 1 and loss > 0
    model.calls.clear()
    opt = tr.optim.SGD(model.parameters(), lr=0.1)
    fit(model, DataLoader(TRAIN, 32), DataLoader(TEST, 48), opt, epochs=1, progress=False)
    assert model.calls == [(True, True)] * 3 + [(False, False)]


def live_bytes_growth(run, first=50, last=300) -> int:
    """Bytes alive after step ``last`` minus after step ``first`` of ``run(on_step=...)``.

    Growth, not the peak: ru_maxrss is the process's all-time high, which earlier tests
    have already raised. tracemalloc counts the bytes alive now (NumPy reports its arrays
    to it), so a loop that kept each step's graph shows up as megabytes.
    """
    alive = {}

    def measure(step, loss):
        if step in (first, last):
            gc.collect()
            alive[step] = tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        run(on_step=measure)
    finally:
        tracemalloc.stop()
    return alive[last] - alive[first]


def test_memory_does_not_grow_across_steps():
    # Kept graphs cost ~0.2 MB a step here (53 MB over these 250 steps); a clean loop ~35 kB.
    tr.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    opt = tr.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(TRAIN, 32, shuffle=True, generator=0)
    growth = live_bytes_growth(lambda on_step: fit(model, loader, DataLoader(TEST, 48), opt, epochs=100,
                                                   on_step=on_step, progress=False))
    assert growth < 2_000_000, f"{growth} bytes more alive at step 300 than at step 50"


@pytest.mark.slow
def test_memory_does_not_grow_training_resnet20_on_digits():
    pytest.importorskip("sklearn")
    from tinyres.data import load_digits
    from tinyres.models import resnet20

    train_data, test_data = load_digits()
    tr.manual_seed(0)
    config = TrainConfig(epochs=26, batch_size=128, padding=1, flip=False)  # 12 steps per epoch
    growth = live_bytes_growth(lambda on_step: train(resnet20(in_channels=1), train_data, test_data, config,
                                                     on_step=on_step, progress=False))
    assert growth < 2_000_000, f"{growth} bytes more alive at step 300 than at step 50"


def write_tiny_cifar(directory, n=2):
    import pickle

    rng = np.random.default_rng(0)
    directory.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}
        (directory / name).write_bytes(pickle.dumps(batch))


def test_cli_trains_on_cifar_files_and_resumes(tmp_path, capsys):
    write_tiny_cifar(tmp_path / "cifar")
    args = ["train", "--model", "resnet20", "--data", "cifar10", "--data-dir", str(tmp_path / "cifar"),
            "--batch-size", "5", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main([*args, "--epochs", "1"]) == 0
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "epoch   2" in out and "final test accuracy" in out
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    for name in ("metrics.csv", "curves.png", "checkpoint.npz"):
        assert (tmp_path / "run" / name).is_file()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data", "cifar10"], "needs --data-dir"),
        (["--data", "cifar10", "--data-dir", "/nonexistent/cifar"], "does not exist"),
        (["--resume"], "no checkpoint"),
    ],
)
def test_cli_errors_are_clear(tmp_path, extra, message):
    with pytest.raises(SystemExit, match=message):
        main(["train", "--out", str(tmp_path / "run"), *extra])


def test_cli_rejects_models_outside_the_cifar_family(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--model", "resnet18"])
    assert "invalid choice" in capsys.readouterr().err
