"""The gradient-flow demos: the measured claims, the measurement itself, and every CLI run.

The default case of ``demo vanishing`` (ReLU, PyTorch's default init, no normalisation,
depth 56) is asserted with margin: the plain net's first/last block gradient ratio is
below 1e-6 (measured: about 1e-21) and the residual net's between 0.1 and 10 (about 0.9).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import tinyres as tr
from tinyres.cli import main
from tinyres.demos import degradation, jacobian, lesion, vanishing
from tinyres.demos.nets import make_net
from tinyres.demos.vanishing import Setting, measure
from tinyres.models.blocks import BasicBlock, PreActBlock


def test_vanishing_default_case_depth_56():
    plain = measure(56, residual=False, setting=Setting(), batch=32, seed=0)
    residual = measure(56, residual=True, setting=Setting(), batch=32, seed=0)
    assert plain.ratio < 1e-6
    assert 0.1 < residual.ratio < 10
    assert len(plain.block_norms) == len(residual.block_norms) == 27
    assert len(plain.weight_norms) == 56  # stem + 2 per block + classifier


def test_plain_and_residual_nets_start_from_the_same_weights():
    tr.manual_seed(3)
    plain = make_net(8, residual=False, norm="batch")
    tr.manual_seed(3)
    res = make_net(8, residual=True, norm="batch")
    a, b = plain.state_dict(), res.state_dict()
    assert list(a) == list(b)
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_underflowed_gradients_are_reported_as_underflow_not_as_a_ratio():
    m = vanishing.Measurement(20, False, 0.0, [0.0, 2e-3], [True, False])
    assert m.ratio == 0 and m.first_underflows
    assert "underflows" in vanishing.sentence(Setting(), [m], [m])
    m = vanishing.Measurement(20, False, 0.0, [3e-30, 2e-3], [False, False])
    words = vanishing.sentence(Setting(), [m], [m])
    assert "shrinks" in words and "underflow" not in words


def test_subnormal_noise_counts_as_underflow_whatever_the_algorithm():
    # Depth 110 in float32: the float64 truth of the first block's gradient is below even the
    # smallest subnormal float32; im2col (BLAS flushes subnormals) gives exactly 0, Winograd's
    # transforms leave subnormal rounding noise. Both must read "underflow", never a ratio.
    from tinyres import kernels

    for algorithm in ("im2col", "winograd"):
        with kernels.use_algorithm(algorithm):
            m = vanishing.measure(110, residual=False, setting=Setting(), batch=8)
        assert m.first_underflows and m.block_norms[0] < np.finfo(np.float32).tiny, algorithm
        assert "underflow" in vanishing.table(Setting(), [m], [m], "test"), algorithm


@pytest.mark.torch
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("norm", ["none", "batch"])
def test_block_gradient_norms_match_pytorch(residual, norm):
    """Same weights and data in PyTorch: the same dLoss/d(block input) norms."""
    torch = pytest.importorskip("torch")
    setting = Setting("tanh", "kaiming", norm)
    ours = measure(10, residual, setting, batch=3, seed=1)

    tr.manual_seed(1)
    net = make_net(10, residual, setting.activation, setting.init, norm)
    x, y = vanishing.data_batch(3, seed=1)
    params = {k: torch.tensor(v.numpy(), requires_grad=True) for k, v in net.state_dict().items()
              if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}

    def bn(h, prefix):
        if norm == "none":
            return h
        return torch.nn.functional.batch_norm(h, None, None, params[f"{prefix}.weight"],
                                              params[f"{prefix}.bias"], training=True)

    def conv(h, name):
        return torch.nn.functional.conv2d(h, params[f"{name}.weight"], padding=1)

    h = torch.tanh(bn(conv(torch.tensor(x.numpy()), "conv1"), "bn1"))
    inputs = []
    for i in range(len(net.layer1)):
        h.retain_grad()
        inputs.append(h)
        p = f"layer1.{i}"
        out = bn(conv(torch.tanh(bn(conv(h, f"{p}.conv1"), f"{p}.bn1")), f"{p}.conv2"), f"{p}.bn2")
        h = torch.tanh(out + h if residual else out)
    logits = h.mean((2, 3)) @ params["fc.weight"].T + params["fc.bias"]
    torch.nn.functional.cross_entropy(logits, torch.tensor(y.numpy())).backward()
    theirs = [t.grad.double().norm().item() for t in inputs]
    np.testing.assert_allclose(ours.block_norms, theirs, rtol=1e-4)
    np.testing.assert_allclose(ours.weight_norms["layer1.0.conv1.weight"],
                               params["layer1.0.conv1.weight"].grad.double().norm().item(), rtol=1e-4)


def test_jacobian_of_a_linear_map_is_its_matrix():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4))
    np.testing.assert_allclose(jacobian.jacobian(lambda t: (t.reshape(1, 4) @ tr.tensor(a.T)).reshape(3),
                                                 rng.standard_normal(4)), a, rtol=1e-12)


def test_residual_jacobian_spectrum_sits_around_one_plain_does_not():
    spectra = jacobian.block_spectra(width=4, size=4, setting=Setting(), seed=0)
    residual, plain = jacobian.summary(spectra["F(x) + x"]), jacobian.summary(spectra["F(x)"])
    assert residual["share_0.5_to_2"] > 0.9 and 0.7 < residual["median"] < 1.4
    assert plain["share_0.5_to_2"] < 0.3 and plain["median"] < 0.3


@pytest.mark.parametrize("block_type", [BasicBlock, PreActBlock])
def test_block_forward_jacobian_is_identity_plus_branch_jacobian(block_type):
    """The block's own forward, against J_F + I: deleting the shortcut fails this.

    BasicBlock ends in a ReLU, so J(forward) = D (J_F + I) with D = diag(output > 0);
    PreActBlock ends in the sum itself, so J(forward) = J_F + I.
    """
    if not hasattr(block_type, "branch"):
        pytest.skip(f"{block_type.__name__} has no branch() to compare with")
    tr.manual_seed(0)
    block = block_type(2, 2)
    block.double().train()
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 3))
    j_forward = jacobian.jacobian(block, x)
    j_branch = jacobian.jacobian(block.branch, x)
    out = block(tr.from_numpy(x)).detach().numpy().ravel()
    d = np.diag((out > 0).astype(float)) if block_type is BasicBlock else np.eye(18)
    np.testing.assert_allclose(j_forward, d @ (j_branch + np.eye(18)), atol=1e-12)
    # Some units are on (D is not zero), so the "+ I" really is checked.
    assert np.abs(j_forward - d @ j_branch).max() > 0.5


def test_run_key_changes_with_every_setting():
    config = degradation.recipe(quick=True, epochs=None, seed=0)
    base = degradation.run_key(degradation.Run(8, True), config, "d")
    assert base != degradation.run_key(degradation.Run(8, False), config, "d")
    assert base != degradation.run_key(degradation.Run(14, True), config, "d")
    assert base != degradation.run_key(degradation.Run(8, True), degradation.recipe(True, 3, 0), "d")
    assert base != degradation.run_key(degradation.Run(8, True), config, "e")


def test_lesion_replaces_one_block_and_restores_it():
    tr.manual_seed(0)
    model = degradation.Run(14, residual=True).build(1, 10)
    before = [id(b) for s in lesion.STAGES for b in getattr(model, s)]
    rng = np.random.default_rng(0)
    data = lesion.ArrayDataset(rng.standard_normal((6, 1, 8, 8)), np.arange(6) % 10)
    rows = lesion.lesion_accuracies(model, data)
    assert [r["block"] for r in rows] == [f"{s}.{i}" for s in lesion.STAGES for i in range(2)]
    assert [r["test_acc"] is None for r in rows] == [False, False, True, False, True, False]
    assert [id(b) for s in lesion.STAGES for b in getattr(model, s)] == before


# ---- every demo through the command line (the --quick forms CI runs) ---------------------------


def _outputs(folder, stem):
    for suffix in ("txt", "json", "png"):
        assert (folder / f"{stem}.{suffix}").stat().st_size > 0
    return json.loads((folder / f"{stem}.json").read_text())


def test_cli_vanishing_quick(tmp_path):
    assert main(["demo", "vanishing", "--quick", "--out", str(tmp_path)]) == 0
    data = _outputs(tmp_path, "vanishing")
    nets = data["settings"][0]["nets"]
    assert [(n["depth"], n["residual"]) for n in nets] == [(8, False), (14, False), (8, True), (14, True)]
    assert "residual nets" in data["settings"][0]["sentence"]


def test_cli_vanishing_grid(tmp_path):
    assert main(["demo", "vanishing", "--grid", "--depths", "4", "--batch", "2", "--out", str(tmp_path)]) == 0
    data = _outputs(tmp_path, "grid")
    assert len(data["settings"]) == 3 * 3 * 2


def test_cli_jacobian_quick(tmp_path):
    assert main(["demo", "jacobian", "--quick", "--out", str(tmp_path)]) == 0
    assert set(_outputs(tmp_path, "jacobian")["summary"]) == set(jacobian.MAPS)


def test_cli_degradation_then_lesion_quick(tmp_path):
    pytest.importorskip("sklearn")  # the demos train on scikit-learn's digits
    args = ["--quick", "--no-progress"]
    assert main(["demo", "degradation", *args, "--out", str(tmp_path / "deg")]) == 0
    data = _outputs(tmp_path / "deg", "degradation")
    assert set(data["runs"]) == {"plain-8", "plain-14", "resnet-8", "resnet-14"}
    for run in data["runs"].values():
        assert len(run["history"]) == len(run["grad_norms"]["per_epoch"]) == 2
    runs = sorted(p.name for p in (tmp_path / "deg" / "runs").iterdir())
    assert len(runs) == 4 and all(len(name.rsplit("-", 1)[1]) == 10 for name in runs)
    # lesion reuses the cached weights: no new run folders appear
    assert main(["demo", "lesion", *args, "--runs", str(tmp_path / "deg" / "runs"),
                 "--out", str(tmp_path / "les")]) == 0
    assert sorted(p.name for p in (tmp_path / "deg" / "runs").iterdir()) == runs
    data = _outputs(tmp_path / "les", "lesion")
    assert set(data["results"]) == {"resnet-14", "plain-14"}


def test_jacobian_report_is_made_from_its_json_data_alone(tmp_path):
    """Measurement apart from presentation: the table, sentence and figure made from the
    data read back from JSON are those made from the measured data."""
    data = jacobian.results(width=2, size=3, setting=Setting(), seed=0)
    again = json.loads(json.dumps(data))
    assert jacobian.table(again) == jacobian.table(data)
    assert jacobian.sentence(again) == jacobian.sentence(data)
    jacobian.figure(again, jacobian.sentence(again), jacobian.title(again))
