"""What a user can type, or hand over as a file, must not crash, hang or give a wrong number.

Each case that could kill the interpreter (a segfault, an abort in a thread pool, a
fork) runs in a subprocess, and the test asserts that the exit status is not a
signal. Command-line errors are one line on stderr: exit code 2 for a bad argument,
1 for a failure, a traceback only with ``--debug``.
"""

from __future__ import annotations

import os
import re
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


def run_python(code: str, *, timeout: float = 120, cwd: Path | None = None, env: dict | None = None,
               **kwargs) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (environment ``env``, default ours) on this checkout's tinyres."""
    env = {**(os.environ if env is None else env), "PYTHONPATH": str(ROOT)}
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


# ---- NaN: max pooling propagates it, as PyTorch does -------------------------------------


@pytest.mark.parametrize("kernels", ["pool_reference", "pool_numba"])
@pytest.mark.parametrize("kernel, stride, padding", [((2, 2), (1, 1), (0, 0)), ((3, 2), (2, 1), (1, 1))])
def test_max_pool_propagates_nan_and_routes_its_gradient_to_the_last_nan(kernels, kernel, stride, padding):
    import importlib

    module = importlib.import_module(f"tinyres.kernels.{kernels}")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5))
    x[rng.random(x.shape) < 0.15] = np.nan
    x[1, 2] = np.nan  # an all-NaN plane: every window NaN (not -inf)
    out, index = module.max_pool2d_forward(x, kernel, stride, padding, (1, 1))
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2), constant_values=-np.inf)
    for n, c, i, j in np.ndindex(out.shape):
        (r0, c0) = (i * stride[0], j * stride[1])
        window = xp[n, c, r0 : r0 + kernel[0], c0 : c0 + kernel[1]]
        nans = np.flatnonzero(np.isnan(window))
        if len(nans):  # PyTorch's rule: `val > max || isnan(val)`, so the last NaN in window order wins
            assert np.isnan(out[n, c, i, j])
            r, s = np.unravel_index(nans[-1], window.shape)
            want = (i * stride[0] + r - padding[0]) * x.shape[3] + j * stride[1] + s - padding[1]
            assert index[n, c, i, j] == want
        else:
            assert out[n, c, i, j] == window.max()


def test_max_pool_with_nan_matches_pytorch():
    torch = pytest.importorskip("torch")
    x = np.array([[[[np.nan, 1, 2], [2, np.nan, 3], [5, 1, 1]]]], np.float32)
    for args in [(2, 1, 0), (3, 1, 1), (2, 2, 1)]:
        ours = tr.tensor(x, requires_grad=True)
        out = tr.nn.functional.max_pool2d(ours, *args)
        out.sum().backward()
        theirs = torch.tensor(x, requires_grad=True)
        want = torch.nn.functional.max_pool2d(theirs, *args)
        want.sum().backward()
        np.testing.assert_array_equal(out.detach().numpy(), want.detach().numpy())
        np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())


# (fork after a kernel, and Python threads: tests/test_fork.py)


# ---- command line failures, in subprocesses: exit 1, one line ------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A finished one-epoch run of the smallest network on the digits, to resume from."""
    pytest.importorskip("sklearn")
    folder = tmp_path_factory.mktemp("runs")
    result = run_cli("train", "--model", "resnet20", "--epochs", "1", "--no-progress", "--out", "good",
                     cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


RESUME_CASES = {
    "truncated": (lambda raw: raw[: len(raw) // 2], [], "not a readable .npz"),
    "garbage": (lambda raw: b"hello", [], "not a readable .npz"),
    "other model": (None, ["--model", "resnet32"], "weights of another model"),
    "other batch size": (None, ["--batch-size", "64"], "different recipe"),
}


@pytest.mark.parametrize("case", RESUME_CASES, ids=RESUME_CASES)
def test_every_bad_resume_is_one_line_and_exit_1(trained_run, tmp_path, case):
    damage, extra, words = RESUME_CASES[case]
    out = tmp_path / "run"
    out.mkdir()
    raw = (trained_run / "good" / "checkpoint.npz").read_bytes()
    (out / "checkpoint.npz").write_bytes(damage(raw) if damage else raw)
    result = run_cli("train", "--model", "resnet20", "--epochs", "2", "--no-progress", "--out", str(out),
                     "--resume", *extra, cwd=tmp_path)
    assert_one_line_error(result, 1, words)


def test_resume_from_a_weights_only_file_is_one_line(tmp_path):
    pytest.importorskip("sklearn")
    from tinyres.models import resnet20

    (tmp_path / "run").mkdir()
    tr.save(resnet20(in_channels=1).state_dict(), tmp_path / "run" / "checkpoint.npz")
    result = run_cli("train", "--model", "resnet20", "--no-progress", "--out", "run", "--resume",
                     cwd=tmp_path)
    assert_one_line_error(result, 1, "not a training checkpoint")


def test_out_on_a_file_and_a_full_disk_are_one_line(tmp_path):
    pytest.importorskip("sklearn")
    (tmp_path / "afile").write_text("x")
    common = ("train", "--model", "resnet20", "--epochs", "1", "--no-progress")
    assert_one_line_error(run_cli(*common, "--out", "afile", cwd=tmp_path), 1, "is a file")

    def small_file_limit():  # the disk "fills" at 20 kB; EFBIG instead of the SIGXFSZ kill
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    result = run_cli(*common, "--out", "full", cwd=tmp_path, preexec_fn=small_file_limit)
    assert_one_line_error(result, 1, "File too large")
    assert not [p for p in (tmp_path / "full").iterdir() if p.suffix == ".tmp"]  # no partial file left


def test_a_second_run_into_a_locked_out_directory_stops_at_once(tmp_path):
    from tinyres.training import lock_directory

    outer = lock_directory(tmp_path)
    outer.__enter__()
    try:
        with pytest.raises(OSError, match="in use by another training run"), lock_directory(tmp_path):
            pass
    finally:
        outer.__exit__(None, None, None)
    with lock_directory(tmp_path):  # released: usable again
        pass


# ---- CIFAR-10 download: verified, atomic, resumable; only ever from 127.0.0.1 here ----------


def make_cifar_archive(path: Path, n: int = 3) -> tuple[bytes, dict]:
    """A small archive in the official layout (cifar-10-batches-py/data_batch_1..5, test_batch)."""
    import io
    import pickle
    import tarfile

    rng = np.random.default_rng(0)
    written = {}
    with tarfile.open(path, "w:gz") as tar:
        for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
            batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                     b"labels": rng.integers(0, 10, n).tolist()}
            written[name] = batch
            data = pickle.dumps(batch, protocol=4)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path.read_bytes(), written


@pytest.fixture()
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path/www``, with Range support; yields its URL."""
    import functools
    import http.server
    import threading

    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send_head(self):  # the standard handler ignores Range: serve the asked-for tail
            start = self.headers.get("Range", "bytes=0-")[len("bytes="):].split("-")[0]
            path = Path(self.translate_path(self.path))
            if not path.is_file():
                self.send_error(404)
                return None
            data = path.read_bytes()[int(start or 0):]
            self.send_response(206 if start and int(start) else 200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            import io

            return io.BytesIO(data)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def test_cifar10_downloads_verifies_unpacks_and_yields_image_label_pairs(tmp_path, server):
    import hashlib

    from tinyres.data import CIFAR10

    www, base = server
    raw, written = make_cifar_archive(www / "cifar-10-python.tar.gz")
    md5 = hashlib.md5(raw).hexdigest()
    root = tmp_path / "data"
    root.mkdir()
    (root / "cifar-10-python.tar.gz.part").write_bytes(raw[:100])  # an interrupted download: resumed
    train = CIFAR10(root, train=True, download=True, url=f"{base}/cifar-10-python.tar.gz", md5=md5,
                    transform=lambda image: image * 2)
    assert len(train) == 15 and (root / "cifar-10-python.tar.gz").read_bytes() == raw
    image, label = train[4]
    assert label == written["data_batch_2"][b"labels"][1]
    want = written["data_batch_2"][b"data"][1].reshape(3, 32, 32).astype(np.float32) / 255 * 2
    np.testing.assert_array_equal(image.numpy(), want)
    test = CIFAR10(root, train=False)  # already there: no download needed
    assert len(test) == 3 and test.targets == written["test_batch"][b"labels"]
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_a_broken_download_is_refused_and_deleted(tmp_path, server):
    from tinyres.data import download_cifar10

    www, base = server
    make_cifar_archive(www / "cifar-10-python.tar.gz")
    with pytest.raises(ValueError, match=r"is broken: .* MD5 .* expected c58f30108f718f92721af3b95e74349a"):
        download_cifar10(tmp_path / "data", url=f"{base}/cifar-10-python.tar.gz")
    assert list((tmp_path / "data").iterdir()) == []  # nothing unverified kept or unpacked
    with pytest.raises(OSError, match="HTTP 404"):
        download_cifar10(tmp_path / "data", url=f"{base}/missing.tar.gz")


def test_train_download_of_a_broken_archive_is_one_line(tmp_path, server):
    www, base = server
    make_cifar_archive(www / "cifar-10-python.tar.gz")
    result = run_cli("train", "--data", "cifar10", "--download", "--data-dir", "data", "--cifar-url",
                     f"{base}/cifar-10-python.tar.gz", "--epochs", "1", cwd=tmp_path)
    assert_one_line_error(result, 1, "is broken")



@pytest.mark.parametrize("dtype", [np.float16, np.complex64, np.complex128])
def test_unsupported_dtypes_are_refused_when_the_tensor_is_made(dtype):
    # Before: float16 reached a kernel and failed there; relu on complex gave a result.
    array = np.ones((1, 1, 3, 3), dtype=dtype)
    match = "float16 \\(half\\) is not supported" if dtype == np.float16 else "is not supported by tinyres"
    for make in (tr.tensor, tr.from_numpy, lambda a: tr.Tensor(a)):
        with pytest.raises(TypeError, match=match):
            make(array)


def test_ops_that_take_tensors_refuse_numpy_arrays_clearly():
    # Before: AttributeError: 'numpy.ndarray' object has no attribute '_data'.
    x, w = np.ones((2, 3), np.float32), tr.ones(4, 3)
    for call, name in [(lambda: tr.nn.functional.linear(x, w), "linear(): argument 'input'"),
                       (lambda: tr.nn.functional.linear(tr.tensor(x), w, np.ones(4)), "argument 'bias'"),
                       (lambda: tr.nn.functional.cross_entropy(x, tr.tensor([0, 1])), "cross_entropy()"),
                       (lambda: tr.nn.functional.mse_loss(x, tr.tensor(x)), "mse_loss()")]:
        with pytest.raises(TypeError, match=re.escape(name) + ".*must be a Tensor, not ndarray"):
            call()


def test_empty_and_absurd_shapes_get_pytorchs_answer_or_a_clear_error():
    F = tr.nn.functional
    # No channels: batch norm has nothing to normalise (PyTorch returns the empty tensor).
    assert F.batch_norm(tr.ones(2, 0, 3, 3), None, None, training=True).shape == (2, 0, 3, 3)
    # An empty height or width is refused even when padding would make room (as PyTorch does).
    with pytest.raises(ValueError, match="non-empty height and width, got \\(0, 0\\)"):
        F.conv2d(tr.ones(1, 1, 0, 0), tr.ones(1, 1, 1, 1), padding=1)
    # Padding no image needs is refused before anything is allocated.
    with pytest.raises(ValueError, match=r"padded plane .* expected at most"):
        F.conv2d(tr.ones(1, 1, 3, 3), tr.ones(1, 1, 3, 3), padding=10**9)


def test_an_optimizer_state_that_does_not_fit_leaves_the_optimizer_as_it_was():
    w = tr.nn.Parameter(tr.ones(3))
    opt = tr.optim.SGD([w], lr=0.1, momentum=0.9)
    w.grad = tr.ones(3)
    opt.step()
    before = (opt.param_groups[0]["lr"], opt.state[w]["momentum_buffer"].copy())
    bad = opt.state_dict()
    bad["param_groups"][0]["lr"] = 5.0
    bad["state"][0]["momentum_buffer"] = np.ones(4)  # the wrong shape, found after the groups
    with pytest.raises(ValueError, match="has shape"):
        opt.load_state_dict(bad)
    assert opt.param_groups[0]["lr"] == before[0]
    np.testing.assert_array_equal(opt.state[w]["momentum_buffer"], before[1])


# ---- signals: Ctrl-C and SIGTERM in every phase end with one line and a checkpoint to resume --

PAUSED = "tinyres: paused at"  # tinyres/phases.py: the line a pause point prints before it waits


class Running:
    """``python -m tinyres ARGV`` in the background, its stdout and stderr collected as they come."""

    def __init__(self, *argv: str, cwd: Path, env: dict | None = None, preexec_fn=None,
                 program: tuple[str, ...] = ("-m", "tinyres")):
        import threading

        self.out, self.err = [], []
        self.proc = subprocess.Popen([sys.executable, *program, *argv], cwd=cwd,
                                     env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec_fn)
        self.readers = [threading.Thread(target=self._read, args=(s, b), daemon=True)
                        for s, b in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, chunks: list) -> None:
        while chunk := stream.read1(4096):
            chunks.append(chunk.decode(errors="replace"))

    def wait_for(self, text: str, timeout: float = 120) -> None:
        """Until ``text`` appears on stdout or stderr (the process must still be running)."""
        import time

        deadline = time.monotonic() + timeout
        while text not in "".join(self.out) + "".join(self.err):
            assert self.proc.poll() is None, f"ended ({self.proc.returncode}) before {text!r}: {self.stderr}"
            assert time.monotonic() < deadline, f"no {text!r} after {timeout} s: {self.stderr}"
            time.sleep(0.02)

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 60) -> int:
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            for reader in self.readers:
                reader.join(5)
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def message_lines(self) -> list[str]:
        """stderr's lines without pause markers and progress bars (a bar redraws itself with \\r)."""
        lines = re.split(r"[\r\n]", self.stderr)
        bar = re.compile(r"\d%\|")
        return [line for line in lines if line.strip() and PAUSED not in line and not bar.search(line)]


def assert_interrupted(run: Running, signum: int, *words: str, timeout: float = 60) -> None:
    """Exit 128 + signum, one line on stderr naming the signal (and ``words``), no traceback."""
    import signal

    code = run.finish(timeout)
    lines = run.message_lines()
    assert code == 128 + signum, f"exit {code}: {run.stderr[-3000:]}"
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
    for word in (signal.Signals(signum).name, *words):
        assert word in lines[0], lines[0]


TRAIN = ("train", "--model", "resnet20", "--batch-size", "512", "--schedule", "multistep",
         "--milestones", "1", "--no-progress")


def metrics(out: Path) -> list[dict]:
    import json

    from tinyres.training import TIMING_KEYS

    history = json.loads((out / "metrics.json").read_text())
    return [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in history]


@pytest.fixture(scope="module")
def runs_to_resume(tmp_path_factory) -> Path:
    """``one``: a finished 1-epoch run (3 steps of 512 digits); ``two``: the recipe run straight for 2."""
    pytest.importorskip("sklearn")
    folder = tmp_path_factory.mktemp("signals")
    for name, epochs in (("one", "1"), ("two", "2")):
        result = run_cli(*TRAIN, "--epochs", epochs, "--out", name, cwd=folder)
        assert result.returncode == 0, result.stderr
    return folder


SIGNAL_PHASES = ["start-up", "data", "compilation", "step", "evaluation", "checkpoint-write"]


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", SIGNAL_PHASES)
def test_a_signal_in_any_phase_keeps_the_checkpoint_says_one_line_and_resume_is_exact(
    runs_to_resume, tmp_path, phase, signame
):
    """Resume a 1-epoch run to 2 epochs, stopped by the signal in ``phase`` of that resumed run;
    the checkpoint must be the 1-epoch one, byte for byte, and a second --resume must end with
    the metrics of the straight 2-epoch run. (That second --resume runs after SIGTERM only, to
    keep CI short: after SIGINT the directory is the same, byte for byte, so the result is too.)"""
    import shutil
    import signal

    signum = getattr(signal, signame)
    out = tmp_path / "run"
    shutil.copytree(runs_to_resume / "one", out)
    before = (out / "checkpoint.npz").read_bytes()
    env = {"TINYRES_PAUSE_AT": phase}
    if phase == "compilation":  # an empty cache: the first kernel the step calls is compiled
        env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba-cache")
    run = Running(*TRAIN, "--epochs", "2", "--out", str(out), "--resume", cwd=tmp_path, env=env)
    run.wait_for(f"{PAUSED} {phase}")
    run.send(signum)
    assert_interrupted(run, signum, "checkpoint.npz holds epoch 1", "--resume")
    assert (out / "checkpoint.npz").read_bytes() == before
    assert not list(out.glob(".*.tmp")), list(out.iterdir())  # no partial checkpoint left
    source = runs_to_resume / "one"
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"} == {
        p.name: p.read_bytes() for p in source.iterdir() if p.name != ".lock"}  # nothing else changed
    if signame == "SIGINT":
        return
    result = run_cli(*TRAIN, "--epochs", "2", "--out", str(out), "--resume", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert metrics(out) == metrics(runs_to_resume / "two")


def test_a_signal_before_the_first_checkpoint_says_there_is_nothing_to_resume(tmp_path):
    import signal

    pytest.importorskip("sklearn")
    run = Running(*TRAIN, "--epochs", "1", "--out", "fresh", cwd=tmp_path, env={"TINYRES_PAUSE_AT": "data"})
    run.wait_for(f"{PAUSED} data")
    run.send(signal.SIGTERM)
    assert_interrupted(run, signal.SIGTERM, "nothing to resume")


@pytest.mark.parametrize("second", ["SIGINT", "SIGTERM"])
def test_a_second_signal_while_winding_down_quits_at_once(runs_to_resume, tmp_path, second):
    import shutil
    import signal
    import time

    out = tmp_path / "run"
    shutil.copytree(runs_to_resume / "one", out)
    before = (out / "checkpoint.npz").read_bytes()
    run = Running(*TRAIN, "--epochs", "2", "--out", str(out), "--resume", cwd=tmp_path,
                  env={"TINYRES_PAUSE_AT": "step#2,interrupted"})
    run.wait_for(f"{PAUSED} step")
    run.send(signal.SIGINT)
    run.wait_for(f"{PAUSED} interrupted")  # handling the first: it would wait here for 60 s
    sent = time.monotonic()
    run.send(getattr(signal, second))
    assert_interrupted(run, getattr(signal, second), "again: quit at once", timeout=10)
    assert time.monotonic() - sent < 5
    assert (out / "checkpoint.npz").read_bytes() == before


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_demo_and_check_end_a_signal_with_one_line(tmp_path, signame):
    import signal

    signum = getattr(signal, signame)
    demo = Running("demo", "vanishing", "--out", "demo", cwd=tmp_path)
    demo.wait_for("nets:")  # its progress bar: the first net is being measured
    demo.send(signum)
    assert_interrupted(demo, signum, "tinyres demo: interrupted")
    pytest.importorskip("hypothesis")
    check = Running("check", cwd=tmp_path)
    check.wait_for("grading")  # the header: the first exercise is being graded
    check.send(signum)
    assert_interrupted(check, signum, "tinyres check: interrupted")


def test_an_object_the_signal_left_half_built_prints_nothing_at_exit(tmp_path):
    """Seen in CI: Ctrl-C during Numba's compilation left an llvmlite object half-built, and its
    ``__del__`` printed a traceback when the interpreter's clean-up collected it (a reference cycle
    keeps it until then). The console script leaves without that clean-up once the line is out."""
    import signal

    code = (
        "import os, signal, tinyres.cli.demo as demo\n"
        "class HalfBuilt:\n"
        "    def __del__(self):\n"
        "        raise AttributeError('half-built: no _as_parameter_')\n"
        "def run(args):\n"
        "    cycle = HalfBuilt(); cycle.me = cycle\n"  # collected only at the interpreter's exit
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    while True: pass\n"
        "demo.run = run\n"
        "from tinyres.cli import script\n"
        "import sys; sys.argv = ['tinyres', 'demo', 'vanishing']\n"
        "script()\n"
    )
    result = run_python(code, cwd=tmp_path, timeout=60)
    assert result.returncode == 128 + signal.SIGINT, result.stderr
    assert result.stderr.strip().splitlines() == ["tinyres demo: interrupted by SIGINT"], result.stderr


def console_script() -> tuple[str, ...]:
    """What the ``tinyres`` script pip writes runs: pyproject.toml's ``[project.scripts]`` entry point,
    called from ``python -c`` (so this checkout's, not an installed one)."""
    entry = re.search(r'^tinyres = "([\w.]+):(\w+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    module, function = entry.groups()
    return ("-c", f"import re, sys\nfrom {module} import {function}\nsys.exit({function}())")


def handler_installed(pid: int, signum: int) -> bool:
    """Whether the process catches ``signum`` (Linux: /proc/PID/status's SigCgt mask)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.M).group(1), 16)
    return bool(mask >> (signum - 1) & 1)


# (signal, when): "first" is the first moment our handlers are in: the process catches SIGTERM
# (SIGINT is caught from the interpreter's own start-up, whose site import we cannot cover).
# (python -m tinyres: three cases, its handlers are the same ones, installed from elsewhere)
EARLY_SIGNALS = [("script", "SIGINT", "first"), ("script", "SIGTERM", "first"), ("script", "SIGTERM", 0.05),
                 ("script", "SIGINT", 0.2), ("script", "SIGTERM", 0.5), ("script", "SIGHUP", 0.2),
                 ("-m", "SIGTERM", "first"), ("-m", "SIGTERM", 0.05), ("-m", "SIGINT", 0.2)]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/PID/status (Linux)")
@pytest.mark.parametrize(("program", "signame", "when"), EARLY_SIGNALS)
def test_a_signal_while_tinyres_is_still_importing_ends_with_one_line(tmp_path, program, signame, when):
    """Importing tinyres takes about a second (NumPy, Numba): a signal there got Python's defaults
    (a KeyboardInterrupt traceback; death by SIGTERM or SIGHUP, no line)."""
    import signal
    import time

    signum = getattr(signal, signame)
    started = time.monotonic()
    run = Running("summary", "resnet18", "--input", "1,3,32,32", cwd=tmp_path,
                  program=console_script() if program == "script" else ("-m", "tinyres"))
    if when != "first":
        time.sleep(max(0.0, when - (time.monotonic() - started)))
    if when == "first" or when < 0.2:  # not before the interpreter runs our first line (a busy machine)
        while not handler_installed(run.proc.pid, signal.SIGTERM):  # Python's start-up catches SIGINT
            assert time.monotonic() - started < 30 and run.proc.poll() is None, run.stderr
    numpy_loaded = "numpy" in Path(f"/proc/{run.proc.pid}/maps").read_text()
    run.send(signum)
    assert_interrupted(run, signum, "tinyres summary: interrupted")
    if when == "first":  # the handler is in before the imports (it was after them)
        assert not numpy_loaded


def test_signals_while_the_line_is_written_and_after_it_add_nothing(tmp_path):
    """The first signal's line is the only one: later ones, during or after it, leave at once
    with the first one's status."""
    import signal
    import time

    summary = ("summary", "resnet18", "--input", "1,3,32,32")
    run = Running(*summary, cwd=tmp_path, program=console_script(),
                  env={"TINYRES_PAUSE_AT": "start-up,leaving"})
    run.wait_for(f"{PAUSED} start-up")
    run.send(signal.SIGINT)
    run.wait_for(f"{PAUSED} leaving")  # the line is out: it would wait here for 60 s
    sent = time.monotonic()
    run.send(signal.SIGTERM)
    assert_interrupted(run, signal.SIGINT, "tinyres summary: interrupted", timeout=10)
    assert time.monotonic() - sent < 5
    burst = Running(*summary, cwd=tmp_path, program=console_script(), env={"TINYRES_PAUSE_AT": "start-up"})
    burst.wait_for(f"{PAUSED} start-up")
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        burst.send(signum)  # some land while the first one's line is being written
        time.sleep(0.0005)
    code = burst.finish(10)
    assert code in (130, 143, 129) and len(burst.message_lines()) == 1, (code, burst.stderr)
    assert "Traceback" not in burst.stderr, burst.stderr


def test_sighup_a_closed_terminal_keeps_the_checkpoint_and_exits_129(runs_to_resume, tmp_path):
    """The terminal is gone (its master end closed), so the line cannot be written: no traceback
    either (stderr refuses everything), the checkpoint stays, and the status says SIGHUP."""
    import shutil
    import signal

    out = tmp_path / "run"
    shutil.copytree(runs_to_resume / "one", out)
    before = (out / "checkpoint.npz").read_bytes()
    master, terminal = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tinyres", *TRAIN, "--epochs", "2", "--out", str(out),
                             "--resume"], cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=terminal,
                            stderr=terminal, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                  "TINYRES_PAUSE_AT": "step"})
    os.close(terminal)
    seen = b""
    try:
        while PAUSED.encode() not in seen:
            seen += os.read(master, 4096)
    finally:
        os.close(master)
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(60) == 128 + signal.SIGHUP
    assert (out / "checkpoint.npz").read_bytes() == before
    assert not list(out.glob(".*.tmp")), list(out.iterdir())


def test_under_nohup_sighup_stays_ignored_and_sigterm_while_parsing_arguments_is_one_line(tmp_path):
    import signal
    import time

    run = Running("summary", "resnet18", "--input", "1,3,32,32", cwd=tmp_path, program=console_script(),
                  env={"TINYRES_PAUSE_AT": "arguments"},
                  preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    run.wait_for(f"{PAUSED} arguments")
    run.send(signal.SIGHUP)
    time.sleep(0.3)
    assert run.proc.poll() is None, run.stderr
    run.send(signal.SIGTERM)
    assert_interrupted(run, signal.SIGTERM, "tinyres summary: interrupted")


def test_an_object_the_signal_left_half_built_prints_nothing_while_the_command_unwinds(tmp_path):
    """Seen in CI under mpiexec: the half-built llvmlite object was collected during the unwinding
    (its frame cleared), not at exit, and its ``__del__`` printed a traceback after the line."""
    import signal

    code = (
        "import os, signal, tinyres.cli.demo as demo\n"
        "class HalfBuilt:\n"
        "    def __del__(self):\n"
        "        raise AttributeError('half-built: no _as_parameter_')\n"
        "def run(args):\n"
        "    half = HalfBuilt()\n"  # no cycle: freed as the Interrupted unwinds this frame
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    while True: pass\n"
        "demo.run = run\n"
        "from tinyres.cli import script\n"
        "import sys; sys.argv = ['tinyres', 'demo', 'vanishing']\n"
        "script()\n"
    )
    result = run_python(code, cwd=tmp_path, timeout=60)
    assert result.returncode == 128 + signal.SIGINT, result.stderr
    assert result.stderr.strip().splitlines() == ["tinyres demo: interrupted by SIGINT"], result.stderr


def test_a_signal_whose_interrupt_a_library_swallows_still_ends_the_command(tmp_path):
    """A KeyboardInterrupt caught and dropped by code the command calls (or an unwinding that
    waits for ever) kept the command running; now it ends within GRACE_SECONDS, with one line."""
    import signal
    import time

    GRACE_SECONDS = 5.0  # tinyres.cli.signals.GRACE_SECONDS

    code = (
        "import os, signal, time, tinyres.cli.demo as demo\n"
        "def run(args):\n"
        "    sent = False\n"
        "    while True:\n"
        "        try:\n"
        "            if not sent:\n"
        "                sent = True\n"
        "                os.kill(os.getpid(), signal.SIGTERM)\n"
        "            time.sleep(0.05)\n"
        "        except BaseException:\n"  # what a careless library does
        "            pass\n"
        "demo.run = run\n"
        "from tinyres.cli import script\n"
        "import sys; sys.argv = ['tinyres', 'demo', 'vanishing']\n"
        "script()\n"
    )
    start = time.monotonic()
    result = run_python(code, cwd=tmp_path, timeout=GRACE_SECONDS + 30)
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert result.stderr.strip().splitlines() == ["tinyres demo: interrupted by SIGTERM"], result.stderr
    assert time.monotonic() - start < GRACE_SECONDS + 10


def test_the_watchdog_leaves_a_program_that_calls_main_in_process_alone(tmp_path):
    """The watchdog is for a signal whose Interrupted never arrives: once cli.main has handled it,
    a program that called main (a notebook's cell) goes on past GRACE_SECONDS."""
    code = (
        "import os, signal, sys, time, tinyres.cli.demo as demo, tinyres.cli.signals as signals\n"
        "signals.GRACE_SECONDS = 0.3\n"
        "def run(args):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(5)\n"
        "demo.run = run\n"
        "from tinyres.cli import main\n"
        "status = main(['demo', 'vanishing'])\n"
        "time.sleep(1.0)\n"
        "print('alive after', status)\n"
    )
    result = run_python(code, cwd=tmp_path, timeout=60)
    assert result.returncode == 0 and "alive after 130" in result.stdout, result.stdout + result.stderr


def test_a_second_run_into_a_locked_directory_names_the_pid_in_one_line_without_a_class_name(
    runs_to_resume, tmp_path
):
    import shutil
    import signal

    out = tmp_path / "run"
    shutil.copytree(runs_to_resume / "one", out)
    first = Running(*TRAIN, "--epochs", "2", "--out", str(out), "--resume", cwd=tmp_path,
                    env={"TINYRES_PAUSE_AT": "step"})
    try:
        first.wait_for(f"{PAUSED} step")
        second = run_cli(*TRAIN, "--epochs", "2", "--out", str(out), "--resume", cwd=tmp_path)
        assert_one_line_error(second, 1, f"in use by another training run (pid {first.proc.pid})")
        assert "Error" not in second.stderr, second.stderr
    finally:
        first.send(signal.SIGTERM)
        first.finish()


# ---- loading is all or nothing, and names the entry that failed -------------------------------


def small_net() -> nn.Module:
    tr.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3))


def arrays_of(model: nn.Module) -> dict:
    return {k: np.array(v._data) for k, v in model.state_dict(keep_vars=True).items()}


def test_load_state_dict_into_a_read_only_parameter_changes_nothing_and_names_it():
    # Before: "assignment destination is read-only" after 7 of the 9 entries were overwritten.
    model = small_net()
    before = arrays_of(model)
    new = {k: v + 1 for k, v in before.items()}
    model[3].weight._data.flags.writeable = False
    with pytest.raises(RuntimeError, match=r"3\.weight is read-only"):
        model.load_state_dict(new)
    for key, value in arrays_of(model).items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_a_copy_that_fails_part_way_is_undone_and_names_the_entry(monkeypatch):
    model = small_net()
    before = arrays_of(model)
    new = {k: v + 1 for k, v in before.items()}
    target = model[1].running_var
    original = tr.Tensor.copy_

    def copy_failing_on_running_var(self, src):  # what a MemoryError or Ctrl-C mid-load does
        if self is target:
            raise MemoryError("no room")
        return original(self, src)

    monkeypatch.setattr(tr.Tensor, "copy_", copy_failing_on_running_var)
    with pytest.raises(RuntimeError, match=r"copying 1\.running_var failed \(MemoryError: no room\)"):
        model.load_state_dict(new)
    for key, value in arrays_of(model).items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_an_optimizer_state_that_cannot_be_cast_names_its_entry_and_changes_nothing():
    w = tr.nn.Parameter(tr.ones(3))
    opt = tr.optim.SGD([w], lr=0.1, momentum=0.9)
    w.grad = tr.ones(3)
    opt.step()
    before = opt.state_dict()
    bad = opt.state_dict()
    bad["param_groups"][0]["lr"] = 5.0
    bad["state"][0]["momentum_buffer"] = np.array(["a", "b", "c"])
    with pytest.raises(ValueError, match=r"momentum_buffer.*parameter 0"):
        opt.load_state_dict(bad)
    assert_same(opt.state_dict(), before)


def test_a_resume_that_fails_part_way_leaves_model_optimizer_and_schedule_as_they_were(tmp_path):
    from tinyres.data import ArrayDataset, DataLoader
    from tinyres.training import load_checkpoint, save_checkpoint

    model = small_net()
    opt = tr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = tr.optim.lr_scheduler.MultiStepLR(opt, [1])
    loader = DataLoader(ArrayDataset(np.zeros((4, 1, 3, 3), np.float32), np.zeros(4, np.int64)), 2,
                        shuffle=True, generator=0)
    model(tr.randn(2, 1, 3, 3)).sum().backward()
    opt.step()
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, epoch=1, model=model, optimizer=opt, scheduler=sched, loader=loader, history=[])
    ckpt = tr.load(path)
    ckpt["model"] = {k: v + 1 for k, v in ckpt["model"].items()}  # loads fine...
    ckpt["optimizer"]["state"][0]["momentum_buffer"] = np.ones(5)  # ...then this does not fit
    tr.save(ckpt, path)
    before = (arrays_of(model), opt.state_dict(), dict(sched.state_dict()))
    with pytest.raises(ValueError, match=r"its 'optimizer' entry does not load.*has shape"):
        load_checkpoint(path, model=model, optimizer=opt, scheduler=sched, loader=loader)
    for key, value in arrays_of(model).items():
        np.testing.assert_array_equal(value, before[0][key], err_msg=key)
    assert_same(opt.state_dict(), before[1])
    assert sched.state_dict() == before[2]


# ---- refuse what PyTorch refuses: pooling an empty image ------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, 0, 0), (1, 1, 0, 3), (2, 1, 3, 0), (1, 0, 3, 3), (0, 3, 3)])
@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
def test_window_pooling_of_an_empty_image_is_refused_even_with_padding(op, shape):
    # Before: max_pool2d returned all -inf, avg_pool2d zeros. PyTorch 2.13: "Expected 3D or 4D
    # (batch mode) tensor with optional 0 dim batch size for input, but got:[1, 1, 0, 3]".
    with pytest.raises(ValueError, match=f"{op}: expected non-empty channels, height and width"):
        getattr(tr.nn.functional, op)(tr.ones(*shape), 2, 1, 1)
    assert getattr(tr.nn.functional, op)(tr.ones(0, 1, 3, 3), 2, 1, 1).shape == (0, 1, 4, 4)


@pytest.mark.parametrize("shape, size", [((1, 1, 0, 0), 2), ((1, 1, 0, 3), (2, 2)), ((1, 1, 3, 0), (1, 2))])
def test_adaptive_pooling_of_an_empty_image_to_more_than_1x1_is_refused(shape, size):
    # Before: NaN. PyTorch 2.13: "adaptive_avg_pool2d(): Expected input to have non-zero size for
    # non-batch dimensions, but input has sizes [1, 1, 0, 3] with dimension 2 being empty".
    with pytest.raises(ValueError, match="adaptive_avg_pool2d: expected a non-empty height and width"):
        tr.nn.functional.adaptive_avg_pool2d(tr.ones(*shape), size)
    # A 1x1 output is NaN in PyTorch too; no channels is an empty result.
    assert np.isnan(tr.nn.functional.adaptive_avg_pool2d(tr.ones(*shape), 1).numpy()).all()
    assert tr.nn.functional.adaptive_avg_pool2d(tr.ones(1, 0, 2, 2), 3).shape == (1, 0, 3, 3)


def test_empty_pooling_matches_pytorchs_refusals():
    torch = pytest.importorskip("torch")
    for shape, call in [((1, 1, 0, 3), lambda lib, x: lib.nn.functional.max_pool2d(x, 2, 1, 1)),
                        ((1, 1, 0, 3), lambda lib, x: lib.nn.functional.adaptive_avg_pool2d(x, 2)),
                        ((0, 1, 3, 3), lambda lib, x: lib.nn.functional.max_pool2d(x, 2, 1, 1)),
                        ((1, 1, 0, 3), lambda lib, x: lib.nn.functional.adaptive_avg_pool2d(x, 1))]:
        try:
            want = call(torch, torch.ones(shape)).numpy()
        except RuntimeError:
            with pytest.raises(ValueError):
                call(tr, tr.ones(*shape))
        else:
            np.testing.assert_array_equal(call(tr, tr.ones(*shape)).numpy(), want)


# ---- messages ------------------------------------------------------------------------------


def test_a_cifar_folder_of_empty_batches_says_they_hold_zero_images(tmp_path):
    import pickle

    folder = tmp_path / "cifar"
    folder.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {b"data": np.zeros((0, 3072), np.uint8), b"labels": np.zeros(0, np.int64)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=4))
    result = run_cli("train", "--data", "cifar10", "--data-dir", str(folder), "--out", "run", "--epochs", "1",
                     cwd=tmp_path)
    assert result.returncode == 1 and "holds zero images" in result.stderr, result.stderr
    assert "labels" not in result.stderr and "Warning" not in result.stderr, result.stderr


# ---- memory limits: a command that runs out of address space says so in one line ------------

START_PROBE = """
import tinyres as tr
from tinyres.kernels.threads import parallel_for, set_num_threads
set_num_threads(2)
x = tr.randn(2, 3, 8, 8, requires_grad=True)
y = tr.nn.functional.batch_norm(tr.nn.functional.conv2d(x, tr.randn(4, 3, 3, 3), padding=1), None, None,
                                training=True)
y.sum().backward()
parallel_for(lambda start, stop: None, 2)
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmPeak")))
"""
HEADROOM = 600 * 2**20  # beyond start-up (interpreter, NumPy, OpenBLAS's and the pool's threads, LLVM)


@pytest.fixture(scope="module")
def memory_limit() -> int:
    """Address space to allow: what start-up with the kernels and both thread pools took, plus
    ``HEADROOM``; each case below asks for several times the headroom at once."""
    if not sys.platform.startswith("linux"):
        pytest.skip("RLIMIT_AS and /proc/self/status are Linux's")
    result = run_python(START_PROBE)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1]) * 1024 + HEADROOM


def address_space(limit: int):
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def write_cifar(folder: Path, n: int) -> None:
    import pickle

    rng = np.random.default_rng(0)
    folder.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": [i % 10 for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=4))


def test_train_out_of_memory_is_one_line_and_keeps_the_checkpoint(tmp_path, memory_limit):
    # 5,000 CIFAR images in one batch: the first convolution's im2col alone is 550 MB.
    write_cifar(tmp_path / "cifar", 1000)
    result = run_cli("train", "--data", "cifar10", "--data-dir", "cifar", "--batch-size", "5000",
                     "--epochs", "1", "--no-progress", "--out", "run", cwd=tmp_path,
                     preexec_fn=address_space(memory_limit))
    assert_one_line_error(result, 1, "tinyres train: error:", "Unable to allocate")
    assert tr.load(tmp_path / "run" / "checkpoint.npz")["epoch"] == 0  # the one written before the first step
    assert not list((tmp_path / "run").glob(".*.tmp"))


MEMORY_CASES = {
    # a (64, 64, 112, 112) stem output is 205 MB; the forward holds several such
    "summary": ["summary", "resnet18", "--input", "64,3,224,224"],
    # 16,384 images of 16x16x16 floats: 270 MB per activation, 2.4 GB for one im2col
    "demo": ["demo", "vanishing", "--depths", "20", "--batch", "16384", "--out", "demo"],
}


@pytest.mark.parametrize("case", MEMORY_CASES)
def test_summary_and_demo_out_of_memory_are_one_line(tmp_path, memory_limit, case):
    result = run_cli(*MEMORY_CASES[case], cwd=tmp_path, preexec_fn=address_space(memory_limit))
    bar = re.compile(r"\d%\|")  # the demo's progress bar
    lines = [line for line in re.split(r"[\r\n]", result.stderr) if line.strip() and not bar.search(line)]
    assert result.returncode == 1, result.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"tinyres {case}: error:" in lines[0] and "allocate" in lines[0], lines[0]


def test_check_of_an_exercise_that_runs_out_of_memory_reports_it(tmp_path, memory_limit):
    pytest.importorskip("hypothesis")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "ex02_tanh.py").write_text(
        "import numpy as np\nfrom tinyres.engine import Function\n\n\nclass Tanh(Function):\n"
        "    def forward(self, x):\n        self.z = np.tanh(x) + np.zeros(2**30)[:0].sum()  # 8 GB\n"
        "        return self.z\n\n    def backward(self, grad):\n        return (grad * (1 - self.z**2),)\n"
    )
    result = run_cli("check", "ex02", "--from", str(folder), cwd=tmp_path,
                     preexec_fn=address_space(memory_limit))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "MemoryError" in result.stdout, (result.stdout, result.stderr)


def test_an_allocation_that_fails_inside_the_thread_pool_reaches_the_caller(memory_limit):
    code = """
import numpy as np
from tinyres.kernels.threads import parallel_for, set_num_threads
set_num_threads(2)
ran = []
def task(start, stop):  # run 0 goes to the pool's thread, run 1 stays in the caller
    import threading
    ran.append(threading.current_thread().name)
    if start == 0:
        np.ones(2**30)  # 8 GB
try:
    parallel_for(task, 2)
except MemoryError as err:
    print("caught", sorted(ran), err)
parallel_for(lambda s, e: ran.append("again"), 2)
print(ran.count("again"))
"""
    result = run_python(code, preexec_fn=address_space(memory_limit))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "caught ['MainThread', 'tinyres-kernel_0']" in result.stdout, result.stdout
    assert result.stdout.split()[-1] == "2"  # the pool still works afterwards


# ---- soak: 2,000 steps with flat memory and descriptors, and three SIGTERMs that change nothing --

# `tinyres train` as typed, with one model more, small enough for 2,000 steps in CI's time: two
# 3x3 convolutions of 8 channels with batch norm and ReLU, pooled, then a linear layer (about
# 15 ms a step against ResNet-8's 70 ms and ResNet-20's more; CPU time, 2 threads).
SOAK_MAIN = """
import sys
from tinyres import nn
from tinyres.cli import main, train
def tiny(num_classes, in_channels, **options):
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
train.CIFAR_MODELS["tiny"] = tiny
sys.exit(main(sys.argv[1:]))
"""
SOAK = ("train", "--model", "tiny", "--batch-size", "32", "--epochs", "45", "--schedule", "multistep",
        "--milestones", "30,40", "--no-progress")  # 45 steps an epoch: 2,025 steps


def soak_process(out: Path, cwd: Path, *extra: str, pause: str | None = None) -> Running:
    return Running(*SOAK, "--out", str(out), *extra, cwd=cwd, program=("-c", SOAK_MAIN),
                   env={"TINYRES_PAUSE_AT": pause} if pause else {})


def usage(pid: int) -> tuple[int, int]:
    """(resident kB, open file descriptors) of a running process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.slow
def test_soak_2000_steps_flat_memory_and_three_sigterms_resume_to_the_same_weights(tmp_path):
    import collections
    import random
    import signal
    import threading
    import time

    pytest.importorskip("sklearn")
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    # The straight run and the interrupted one go side by side (one core each on CI's two).
    straight = soak_process(tmp_path / "straight", tmp_path)
    samples = []  # (epochs done, resident kB, open fds) of the straight run, every 0.2 s

    def sample() -> None:
        while straight.proc.poll() is None:
            epochs = len(re.findall(r"^epoch ", "".join(straight.out), re.MULTILINE))
            try:
                samples.append((epochs, *usage(straight.proc.pid)))
            except (FileNotFoundError, ProcessLookupError, AttributeError):  # it has just ended
                return
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    interrupted = tmp_path / "interrupted"
    rng = random.Random(31)
    stops = []
    for i in range(3):  # each process stops at a random step of its own: SIGTERM there
        stops.append(rng.randrange(1, 700))
        run = soak_process(interrupted, tmp_path, *(["--resume"] if i else []), pause=f"step#{stops[-1]}")
        run.wait_for(f"{PAUSED} step", timeout=600)
        run.send(signal.SIGTERM)
        assert_interrupted(run, signal.SIGTERM, "--resume")
    final = soak_process(interrupted, tmp_path, "--resume")
    assert final.finish(1200) == 0, final.stderr
    assert straight.finish(1200) == 0, straight.stderr
    sampler.join()
    after_warm_up = [(rss, fds) for epoch, rss, fds in samples if 5 <= epoch < 44]
    assert len(after_warm_up) >= 20, samples
    rss = [r for r, _ in after_warm_up]
    fds = [f for _, f in after_warm_up]
    third = len(fds) // 3
    usual = collections.Counter(fds[:third]).most_common(1)[0][0]
    # Flat: 30 MB over these ~1,700 steps is under 18 kB a step; one step's graph holds about
    # 0.5 MB (a batch's activations are 32x8x8x8 floats, 64 kB each, eight of them and more).
    assert max(rss) - min(rss) < 30_000, f"resident memory went from {min(rss)} to {max(rss)} kB"
    # The same count early and late; at an epoch's end a file being written (the checkpoint's
    # temporary file, the curves) is open for a moment: 10 or 11 in the first full run.
    assert collections.Counter(fds[-third:]).most_common(1)[0][0] == usual, fds
    assert max(fds) <= usual + 2, f"open file descriptors: {sorted(set(fds))}"
    a, b = tr.load(tmp_path / "straight" / "checkpoint.npz"), tr.load(interrupted / "checkpoint.npz")
    assert_same(a["model"], b["model"])
    assert metrics(tmp_path / "straight") == metrics(interrupted), stops


# ---- the sweep of this session: what it found, each seen failing before --------------------------


@pytest.mark.parametrize(("data", "fn", "expected"), [
    ([1.0, 1.0, 0.0], "max", [0.5, 0.5, 0.0]),
    ([[1.0, 2.0], [2.0, 0.0]], "max", [[0.0, 0.5], [0.5, 0.0]]),
    ([0.0, 3.0, 0.0, 0.0], "min", [1 / 3, 0.0, 1 / 3, 1 / 3]),
    ([np.nan, 1.0, np.nan], "max", [0.5, 0.0, 0.5]),  # a NaN is the maximum, and the minimum
    ([3.0, 1.0, 2.0], "min", [0.0, 1.0, 0.0]),
])
def test_max_and_min_over_all_elements_split_the_gradient_among_ties_as_pytorch(data, fn, expected):
    """``torch.max(x)`` (no dim) splits the gradient evenly among equal maxima; tinyres sent it all
    to the first one (a different number, silently, for PyTorch code that has ties: ReLU outputs)."""
    x = tr.tensor(data, dtype=tr.float64, requires_grad=True)
    getattr(x, fn)().backward()
    np.testing.assert_allclose(x.grad.numpy(), expected)
    torch = pytest.importorskip("torch")
    y = torch.tensor(data, dtype=torch.float64, requires_grad=True)
    getattr(y, fn)().backward()
    np.testing.assert_allclose(x.grad.numpy(), y.grad.numpy())


def test_gather_refuses_a_negative_index_as_pytorch():
    """tinyres wrapped -1 to the last element; PyTorch raises (so code ported from it never meant that)."""
    with pytest.raises(IndexError, match=r"index -1 is out of range for dim 1 of size 3; expected 0..2"):
        tr.gather(tr.ones(2, 3), 1, tr.tensor([[0, -1]]))


def test_manual_seed_takes_pytorchs_range():
    """A negative seed (PyTorch: fine) raised NumPy's 'expected non-negative integer'; a seed past
    64 bits (PyTorch: refused) was taken."""
    tr.manual_seed(-1)
    a = tr.randn(3).numpy()
    tr.manual_seed(2**64 - 1)  # the same generator: a negative seed counts from 2**64
    np.testing.assert_array_equal(a, tr.randn(3).numpy())
    with pytest.raises(ValueError, match=r"manual_seed: expected an integer in -2\*\*63..2\*\*64-1"):
        tr.manual_seed(2**64)


def test_a_save_into_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path):
    """A full disk (here a file-size limit: Python ignores SIGXFSZ, so the write fails with EFBIG)
    gave '[Errno 27] File too large' naming no file: `tinyres train` said only that."""
    import resource

    code = (
        "import tinyres as tr\n"
        "tr.save({'w': tr.ones(3)}, 'w.pt')\n"
        "try:\n"
        "    tr.save({'w': tr.ones(100_000)}, 'w.pt')\n"
        "except OSError as err:\n"
        "    print(err)\n"
        "print(tr.load('w.pt')['w'].shape)\n"
    )
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))  # noqa: E731
    result = run_python(code, cwd=tmp_path, preexec_fn=limit)
    assert result.stdout.splitlines() == ["[Errno 27] File too large: 'w.pt'", "(3,)"], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]  # no partial file left


def test_a_save_to_a_directory_says_so_without_naming_a_temporary_file(tmp_path):
    """It said "Is a directory: '.../.tmp.1234.kiu8.tmp' -> 'DIR'", naming a file the user never chose."""
    with pytest.raises(IsADirectoryError, match=r"is a directory; expected the path of a file to write"):
        tr.save({"w": tr.ones(1)}, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("argv", "words"), [
    (["conv", "--repeats", "0"], "--repeats: expected a positive integer, got '0'"),  # was a traceback
    (["conv", "--shapes", "a"], "--shapes takes indices 0..11"),  # statistics.StatisticsError, ValueError
    (["models", "--rounds", "-1"], "--rounds: expected a positive integer"),
])
def test_a_benchmarks_bad_argument_is_one_line(tmp_path, argv, words):
    result = run_cli("bench", *argv, cwd=tmp_path, timeout=120)
    assert_one_line_error(result, 2, words)


def test_resuming_another_networks_checkpoint_with_the_same_weight_names_is_refused(runs_to_resume, tmp_path):
    """plain20's weights have resnet20's names and shapes: `--resume --model plain20` on a resnet20
    run went on silently, training the other network from its weights."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(runs_to_resume / "one", out)
    before = (out / "checkpoint.npz").read_bytes()
    argv = [a if a != "resnet20" else "plain20" for a in TRAIN]
    result = run_cli(*argv, "--epochs", "2", "--out", str(out), "--resume", cwd=tmp_path)
    assert_one_line_error(result, 1, "different recipe", "'model'")
    assert (out / "checkpoint.npz").read_bytes() == before


# ---- the leftovers of the reviewer's sweep, each seen failing before ------------------------------


@pytest.mark.parametrize(("value", "error", "words"), [
    (lambda: tr.zeros(3, 2), RuntimeError, "shape (3, 2)"),
    (lambda: tr.zeros(2, 3, dtype=tr.float64), RuntimeError, "dtype float64"),
    (lambda: np.zeros((2, 3), np.float32), TypeError, "expected to be a Tensor or None"),
    (lambda: 1.0, TypeError, "expected to be a Tensor or None"),
])
def test_assigning_a_grad_of_the_wrong_shape_dtype_or_type_is_refused_as_pytorch(value, error, words):
    """It was taken, and the optimizer's step failed later with NumPy's broadcast message."""
    x = tr.zeros(2, 3, requires_grad=True)
    with pytest.raises(error, match=re.escape(words)):
        x.grad = value()
    assert x.grad is None
    x.grad = tr.ones(2, 3)  # the right one is still taken, and None clears it
    x.grad = None
    torch = pytest.importorskip("torch")
    y = torch.zeros(2, 3)
    v = value()
    with pytest.raises(error):
        y.grad = torch.from_numpy(v.numpy()) if isinstance(v, tr.Tensor) else v


@pytest.mark.parametrize(("data", "error", "words"), [
    ("abc", TypeError, "expected numbers (or nested lists of them), got str 'abc'"),  # was a <U3 tensor
    (None, RuntimeError, "expected numbers (or nested lists of them), got NoneType None"),  # an object one
    ([1.0, None], RuntimeError, "got NoneType None"),
    ([2**70], ValueError, "expected integers in -2**63..2**63-1 (int64), got 1180591620717411303424"),
    ([2**63], ValueError, "got 9223372036854775808"),  # was wrapped round to -2**63, silently
    (2**64 - 1, ValueError, "got 18446744073709551615"),  # was -1
    ([[1, 2], [3]], ValueError, "expected nested lists of equal lengths at every level, got ragged ones"),
])
def test_tensor_of_data_that_is_not_numbers_is_refused_as_pytorch(data, error, words):
    with pytest.raises(error, match=re.escape(words)):
        tr.tensor(data)
    torch = pytest.importorskip("torch")
    with pytest.raises(error):
        torch.tensor(data)


def test_tensor_still_takes_what_pytorch_takes():
    assert tr.tensor([2**63 - 1]).dtype == tr.int64 and tr.tensor([True, 2]).tolist() == [1, 2]
    assert tr.tensor([1, 2.5]).dtype == tr.float32 and tr.tensor([]).dtype == tr.float32
    assert tr.tensor([2**70], dtype=tr.float32).item() == pytest.approx(2.0**70)


def test_fit_stops_at_the_first_non_finite_loss_naming_the_step_and_keeps_the_checkpoint(tmp_path):
    """A NaN in the data (or a diverging step) went on silently: NaN loss, NaN weights saved."""
    from tinyres.data import ArrayDataset, DataLoader
    from tinyres.training import fit

    images = np.ones((8, 1, 2, 2), np.float32)
    images[5] = np.nan  # the second batch of 4
    data = ArrayDataset(images, np.zeros(8, np.int64))
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    weights = model.state_dict()["1.weight"].numpy().copy()
    opt = tr.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match=r"the loss became nan at epoch 1, step 2; the last good "
                                                 r"checkpoint is .*ckpt.npz \(epoch 0\), kept"):
        fit(model, DataLoader(data, 4), DataLoader(data, 4), opt, epochs=2, checkpoint=tmp_path / "ckpt.npz",
            progress=False)
    assert np.isfinite(model.state_dict()["1.weight"].numpy()).all()  # stopped before the step
    saved = np.load(tmp_path / "ckpt.npz")
    assert any(np.array_equal(saved[k], weights) for k in saved.files)  # epoch 0's, as it was


def test_a_diverging_train_run_stops_in_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    """`--lr 1e300` trained on with NaN loss, wrote NaN weights over the checkpoint, and NumPy's
    'RuntimeWarning: overflow/invalid value' lines reached the terminal."""
    pytest.importorskip("sklearn")
    result = run_cli(*TRAIN, "--epochs", "2", "--lr", "1e300", "--out", "run", cwd=tmp_path)
    assert_one_line_error(result, 1, "the loss became", "at epoch 1, step 2", "the last good checkpoint is",
                          "checkpoint.npz (epoch 0)", "lower --lr")
    assert "RuntimeWarning" not in result.stderr + result.stdout
    saved = np.load(tmp_path / "run" / "checkpoint.npz")
    assert all(np.isfinite(saved[k]).all() for k in saved.files if saved[k].dtype.kind == "f")
    assert not (tmp_path / "run" / "metrics.json").exists()  # no epoch of NaN recorded


def test_an_exercise_that_calls_sys_exit_at_import_is_reported_and_ctrl_c_still_stops(tmp_path):
    """`tinyres check --from DIR` (and `train --mine DIR`) ended with the file's exit code, no line."""
    pytest.importorskip("hypothesis")
    from tinyres.grading import BY_ID, grade

    (tmp_path / "ex02_tanh.py").write_text("import sys\nsys.exit(3)\n")
    result = run_cli("check", "ex02", "--from", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "your file calls sys.exit (or exit()) when imported" in result.stdout, result.stdout
    report = grade(BY_ID["ex02"], tmp_path / "ex02_tanh.py")
    assert not report.passed and "sys.exit" in report.problem
    (tmp_path / "ex02_tanh.py").write_text("raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        grade(BY_ID["ex02"], tmp_path / "ex02_tanh.py")


def test_an_exercise_that_calls_sys_exit_while_graded_fails_with_a_hint(tmp_path):
    """A function that calls sys.exit (not at import: when the grader runs it) ended the grader."""
    pytest.importorskip("hypothesis")
    from tinyres.grading import BY_ID, grade

    source = (ROOT / "lessons" / "solutions" / "ex03_unbroadcast.py").read_text()
    (tmp_path / "ex03_unbroadcast.py").write_text(
        source.replace("    extra = grad.ndim - len(shape)", "    import sys\n    sys.exit(4)"))
    report = grade(BY_ID["ex03"], tmp_path / "ex03_unbroadcast.py")
    assert not report.passed
    text = report.text()
    assert "sys.exit(4)" in text and "line" in text, text
