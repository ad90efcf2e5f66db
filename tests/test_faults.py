"""What a user can type, or hand over as a file, must not crash, hang or give a wrong number.

Each case that could kill the interpreter (a segfault, an abort in a thread pool, a
fork) runs in a subprocess, and the test asserts that the exit status is not a
signal. Command-line errors are one line on stderr: exit code 2 for a bad argument,
1 for a failure, a traceback only with ``--debug``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyres as tr
from tinyres import nn
from tinyres.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, *, timeout: float = 120, cwd: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that imports this checkout's tinyres."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                            cwd=cwd or ROOT, env=env, **kwargs)
    assert result.returncode >= 0, f"killed by signal {-result.returncode}: {result.stderr[-2000:]}"
    return result


def run_cli(*argv: str, cwd: Path, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    return run_python(f"import sys; from tinyres.cli import main; sys.exit(main({list(argv)!r}))",
                      cwd=cwd, timeout=timeout, **kwargs)


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


# ---- command line: bad arguments are refused while parsing (exit 2, one line) ----------------

BAD_ARGUMENTS = [
    (["train", "--threads", "0"], "--threads"),
    (["train", "--threads", "-2"], "--threads"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--lr", "-0.1"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--momentum", "-1"], "--momentum"),
    (["train", "--weight-decay", "inf"], "--weight-decay"),
    (["train", "--batch-size", "-3"], "--batch-size"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--gamma", "0"], "--gamma"),
    (["summary", "resnet18", "--input", "1000,3,100000,100000"], "elements"),
    (["summary", "resnet18", "--input", "1,3,32,32", "--depth", "-1"], "--depth"),
    (["summary", "resnet18", "--input", "1,3,32,32", "--num-classes", "0"], "--num-classes"),
    (["draw", "basic", "--out", "x.png", "--dpi", "0"], "--dpi"),
    (["draw", "basic", "--out", "x.png", "--dpi", "100000"], "--dpi"),
    (["draw", "resnet18", "--out", "x.png", "--input-size", "100000"], "--input-size"),
    (["demo", "vanishing", "--depths", "7"], "even"),
    (["demo", "vanishing", "--batch", "-3"], "--batch"),
    (["demo", "vanishing", "--seed", "-1"], "--seed"),
    (["demo", "jacobian", "--width", "0"], "--width"),
    (["demo", "jacobian", "--size", "1000"], "--size"),
    (["demo", "degradation", "--epochs", "0"], "--epochs"),
    (["demo", "degradation", "--depths", "8", "9"], "6n+2"),
    (["demo", "lesion", "--batch", "0"], "--batch"),
    (["gradcheck", "--seed", "-1"], "--seed"),
]


@pytest.mark.parametrize("argv, word", BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_are_one_line_and_exit_2(argv, word, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and word in err[0] and err[0].startswith("tinyres "), err


def test_failures_are_one_line_and_exit_1_and_debug_shows_the_traceback(capsys):
    assert main(["summary", "resnet18", "--input", "1,1,32,32"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input has 1 channels" in err[0] and "--debug" in err[0], err
    with pytest.raises(ValueError, match="input has 1 channels"):
        main(["summary", "resnet18", "--input", "1,1,32,32", "--debug"])
    with pytest.raises(ValueError, match="input has 1 channels"):
        main(["--debug", "summary", "resnet18", "--input", "1,1,32,32"])


# ---- files: load refuses crafted and damaged files with a ValueError naming them ------------


def write_npy_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    text += " " * (118 - len(text)) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode()


def manifest_file(path: Path, tree: str) -> Path:
    np.savez(path, __tinyres__=np.array('{"format": "tinyres", "version": 1, "tree": ' + tree + "}"))
    return path


DEEP = '{"type": "list", "items": [' * 150 + '{"type": "scalar", "value": 1}' + "]}" * 150
DEEPER_THAN_JSON = '{"type": "list", "items": [' * 100_000 + "1" + "]}" * 100_000
CRAFTED_MANIFESTS = {
    "nested past the depth bound": DEEP,
    "nested past the JSON parser's recursion limit": DEEPER_THAN_JSON,
    "dict without items": '{"type": "dict"}',
    "dict items not a list": '{"type": "dict", "items": 5}',
    "dict key a list": '{"type": "dict", "items": [[[1], 2]]}',
    "tensor without a name": '{"type": "tensor"}',
    "scalar holding a dict": '{"type": "scalar", "value": {"a": 1}}',
}


@pytest.mark.parametrize("tree", CRAFTED_MANIFESTS.values(), ids=CRAFTED_MANIFESTS.keys())
def test_crafted_manifests_are_value_errors_naming_the_file(tmp_path, tree):
    path = manifest_file(tmp_path / "crafted.npz", tree)
    with pytest.raises(ValueError, match=f"load: {path}"):
        tr.load(path)


def test_a_header_claiming_4_tib_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.npz"
    write_npy_zip(path, {"a.npy": npy_header("<f8", (2**39,)) + b"x" * 64})
    with pytest.raises(ValueError, match=f"load: {path}.*declares shape \\(549755813888,\\)"):
        tr.load(path)


def test_a_member_claiming_more_than_deflate_can_expand_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    data = npy_header("<f8", (2**22,)) + bytes(8 * 2**22)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.npy", data)
    assert tr.load(path)["a"].shape == (2**22,)  # zeros really do compress ~1000:1: allowed
    raw = bytearray(path.read_bytes())
    central = raw.rfind(b"PK\x01\x02")  # the central directory's record holds the sizes zipfile trusts
    raw[central + 24 : central + 28] = (2**32 - 1).to_bytes(4, "little")  # uncompressed size: 4 GiB
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=f"load: {path}.*more than the file can hold"):
        tr.load(path)


def test_object_arrays_and_bad_compression_are_value_errors(tmp_path):
    path = tmp_path / "object.npz"
    write_npy_zip(path, {"a.npy": npy_header("|O", (1,)) + b"\x00" * 8})
    with pytest.raises(ValueError, match=f"load: {path}.*Python objects"):
        tr.load(path)
    path = tmp_path / "zlib.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.npy", npy_header("<f8", (4,)) + bytes(32))
    raw = bytearray(path.read_bytes())
    start = raw.find(b"a.npy") + len("a.npy")  # the deflate stream follows the local header's name
    raw[start : start + 8] = b"\xff" * 8
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=f"load: {path}"):
        tr.load(path)


def test_a_directory_is_not_reported_missing(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        tr.load(tmp_path)


def test_a_key_longer_than_a_zip_name_is_refused_on_save(tmp_path):
    with pytest.raises(ValueError, match="at most 65531"):
        tr.save({"k" * 70_000: tr.ones(1)}, tmp_path / "k.npz")
    assert list(tmp_path.iterdir()) == []


def pytorch_style_checkpoint() -> dict:
    """What a PyTorch training script saves: weights, plain numbers, the optimizer's state."""
    tr.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3))
    opt = tr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(tr.randn(2, 1, 3, 3)).sum().backward()
    opt.step()
    return {"net": model.state_dict(), "acc": 93.1, "epoch": 12, "optimizer": opt.state_dict(), "name": "r"}


def assert_same(a, b) -> None:
    """Equal structure, types (any dict for a dict: an OrderedDict comes back as a dict), values."""
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), (type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, (tr.Tensor, np.ndarray)):
        x, y = np.asarray(a), np.asarray(b)
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True)
    else:
        assert a == b


def test_a_pytorch_style_nested_checkpoint_round_trips_into_a_fresh_optimizer(tmp_path):
    ckpt = pytorch_style_checkpoint()
    tr.save(ckpt, tmp_path / "ckpt.npz")
    loaded = tr.load(tmp_path / "ckpt.npz")
    assert_same(loaded, ckpt)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3))
    model.load_state_dict(loaded["net"])
    opt = tr.optim.SGD(model.parameters(), lr=0.5)
    opt.load_state_dict(loaded["optimizer"])
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["momentum"] == 0.9
    assert_same(opt.state_dict(), ckpt["optimizer"])


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> tuple[bytes, dict]:
    path = tmp_path_factory.mktemp("ckpt") / "ckpt.npz"
    ckpt = pytorch_style_checkpoint()
    tr.save(ckpt, path)
    return path.read_bytes(), ckpt


@settings(max_examples=200)
@given(data=st.data())
def test_any_corruption_of_a_checkpoint_is_a_value_error_naming_it_or_a_correct_load(
    checkpoint_bytes, tmp_path_factory, data
):
    raw, original = checkpoint_bytes
    damaged = bytearray(raw)
    kind = data.draw(st.sampled_from(["flip", "truncate", "overwrite", "insert"]))
    at = data.draw(st.integers(0, len(raw) - 1))
    if kind == "flip":
        damaged[at] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "truncate":
        del damaged[at:]
    elif kind == "overwrite":
        chunk = data.draw(st.binary(min_size=1, max_size=64))
        damaged[at : at + len(chunk)] = chunk
    else:
        damaged[at:at] = data.draw(st.binary(min_size=1, max_size=64))
    path = tmp_path_factory.mktemp("damaged") / "ckpt.npz"
    path.write_bytes(bytes(damaged))
    try:
        loaded = tr.load(path)
    except ValueError as err:
        assert str(path) in str(err)
    else:
        assert_same(loaded, original)


# ---- CIFAR-10 batch files: the restricted unpickler's output is checked before conversion ---


def test_a_small_batch_of_nested_shared_label_lists_is_refused_at_once(tmp_path):
    import pickle

    labels: list = [0] * 10
    for _ in range(5):
        labels = [labels] * 100  # pickle stores each level once: the file stays small
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": np.zeros((10, 3072), np.uint8), b"labels": labels}, protocol=4))
    assert path.stat().st_size < 35_000
    # np.asarray(labels) would walk 1e11 elements: a subprocess, so a regression is a timeout
    result = run_python(
        "from pathlib import Path; from tinyres.data.cifar10 import read_batch\n"
        f"try:\n    read_batch(Path({str(path)!r}))\nexcept ValueError as err:\n    print(err)",
        timeout=60,
    )
    assert result.returncode == 0 and "must be a list of 10 ints" in result.stdout, result


def test_object_arrays_are_refused_by_the_cifar_unpickler(tmp_path):
    import pickle

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": np.array([[1, [2]]], dtype=object), b"labels": [0]}, protocol=4))
    from tinyres.data.cifar10 import read_batch

    with pytest.raises(ValueError, match="refusing dtype object"):
        read_batch(path)
