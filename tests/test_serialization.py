"""tinyres.save / tinyres.load: round trips, no pickle on load, atomic writes, and clear
errors for truncated, foreign and damaged files."""

import os
import pickle
import stat
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import tinyres as tr
from tinyres import nn, serialization


def make_model():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def test_state_dict_round_trip(tmp_path):
    tr.manual_seed(0)
    model = make_model()
    model(tr.randn(2, 3, 5, 5))  # move the running statistics off their initial values
    path = tmp_path / "model.npz"
    tr.save(model.state_dict(), path)
    loaded = tr.load(path)
    assert list(loaded) == list(model.state_dict())
    assert all(isinstance(v, tr.Tensor) for v in loaded.values())
    assert loaded["1.num_batches_tracked"].dtype == np.int64 and loaded["1.num_batches_tracked"].item() == 1
    twin = make_model()
    twin.load_state_dict(loaded)
    model.eval(), twin.eval()
    x = tr.randn(2, 3, 5, 5)
    np.testing.assert_array_equal(model(x).detach().numpy(), twin(x).detach().numpy())


def test_plain_numpy_reads_the_file(tmp_path):
    model = make_model()
    path = tmp_path / "model.npz"
    tr.save(model.state_dict(), path)
    with np.load(path, allow_pickle=False) as npz:
        assert set(npz.files) == {*model.state_dict(), serialization.MANIFEST}
        np.testing.assert_array_equal(npz["5.weight"], model[5].weight.detach().numpy())


def test_nested_checkpoint_keeps_types(tmp_path):
    checkpoint = {
        "epoch": 7, "lr": 0.05, "best": float("inf"), "name": "resnet20", "note": None, "done": False,
        "model": {"fc.weight": tr.ones(2, 3, dtype=tr.float64)},
        "history": [0.5, 0.25], "betas": (0.9, 0.999),
        "optimizer": {"state": {0: {"momentum_buffer": np.arange(3, dtype=np.float32)}}},
        "mask": np.array([True, False]), "count": np.int64(3),
    }
    path = tmp_path / "ckpt.npz"
    tr.save(checkpoint, path)
    got = tr.load(path)
    assert {k: got[k] for k in ("epoch", "lr", "best", "name", "note", "done", "history", "betas")} == {
        "epoch": 7, "lr": 0.05, "best": float("inf"), "name": "resnet20", "note": None, "done": False,
        "history": [0.5, 0.25], "betas": (0.9, 0.999)}
    weight = got["model"]["fc.weight"]
    assert isinstance(weight, tr.Tensor) and weight.dtype == np.float64 and weight.tolist() == [[1.0] * 3] * 2
    buf = got["optimizer"]["state"][0]["momentum_buffer"]  # int keys survive
    assert isinstance(buf, np.ndarray) and buf.dtype == np.float32 and buf.tolist() == [0, 1, 2]
    assert got["mask"].dtype == np.bool_ and got["count"] == 3 and isinstance(got["count"], np.int64)


def test_plain_savez_file_loads_as_tensors(tmp_path):
    """Weights exported with np.savez (from PyTorch, say) load as a flat dict of tensors."""
    path = tmp_path / "exported.npz"
    np.savez(path, **{"fc.weight": np.ones((2, 4), np.float32), "fc.bias": np.zeros(2, np.float32)})
    got = tr.load(path)
    assert sorted(got) == ["fc.bias", "fc.weight"] and isinstance(got["fc.weight"], tr.Tensor)
    nn.Sequential(OrderedDict(fc=nn.Linear(4, 2))).load_state_dict(got)


def test_path_is_used_as_given_and_mode_is_normal(tmp_path):
    path = tmp_path / "weights.pth"
    tr.save({"a": tr.zeros(1)}, str(path))
    assert path.exists() and not (tmp_path / "weights.pth.npz").exists()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["weights.pth"]  # no temporary file left behind


@pytest.mark.parametrize(("obj", "match"), [
    ({"a": {1, 2}}, "cannot store a set at a"),
    ({"m": nn.ReLU()}, "cannot store a ReLU"),
    ({"a": np.array([object()])}, "dtype object"),
    ({(1, 2): tr.zeros(1)}, "keys must be str or int"),
])
def test_unsupported_objects_are_refused(tmp_path, obj, match):
    path = tmp_path / "x.npz"
    with pytest.raises(TypeError, match=match):
        tr.save(obj, path)
    assert not path.exists() and os.listdir(tmp_path) == []


def test_colliding_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="both be stored as 'a/b'"):
        tr.save({"a/b": tr.zeros(1), "a": {"b": tr.zeros(1)}}, tmp_path / "x.npz")


# ---- atomicity ------------------------------------------------------------------------------

def crashing_savez(error=OSError):
    """An np.savez that writes part of an archive, then dies as a killed process
    (KeyboardInterrupt) or a full disk (OSError) would."""

    def savez(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise error("simulated crash mid-write")

    return savez


@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
def test_crash_mid_write_keeps_the_old_file(tmp_path, monkeypatch, error):
    path = tmp_path / "model.npz"
    tr.save({"w": tr.ones(3)}, path)
    old_bytes = path.read_bytes()
    monkeypatch.setattr(serialization.np, "savez", crashing_savez(error))
    with pytest.raises(error, match="simulated crash"):
        tr.save({"w": tr.zeros(3)}, path)
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["model.npz"]  # the partial temporary file was removed
    monkeypatch.undo()
    assert tr.load(path)["w"].tolist() == [1.0, 1.0, 1.0]


def test_crash_before_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    tr.save({"w": tr.ones(2)}, path)

    def fail(*args):
        raise OSError("simulated power cut before rename")

    monkeypatch.setattr(serialization.os, "replace", fail)
    with pytest.raises(OSError, match="power cut"):
        tr.save({"w": tr.zeros(2)}, path)
    monkeypatch.undo()
    assert tr.load(path)["w"].tolist() == [1.0, 1.0] and os.listdir(tmp_path) == ["model.npz"]


def test_no_file_is_created_when_the_first_save_crashes(tmp_path, monkeypatch):
    monkeypatch.setattr(serialization.np, "savez", crashing_savez())
    with pytest.raises(OSError):
        tr.save({"w": tr.ones(2)}, tmp_path / "new.npz")
    assert os.listdir(tmp_path) == []


# ---- refusals on load -----------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.npz"
    tr.save(make_model().state_dict(), path)
    return path


@pytest.mark.parametrize("keep", [0.5, 0.9, 10])
def test_truncated_file_is_a_clear_error(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)] if keep < 1 else data[:keep])
    with pytest.raises(ValueError, match=rf"load: {saved} is not a readable \.npz archive.*truncated"):
        tr.load(saved)


def test_corrupted_member_is_a_clear_error(saved):
    data = bytearray(saved.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = b"\xff" * 16  # flip bytes inside a stored array
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"load: {saved}"):
        tr.load(saved)


class Exploit:
    """A pickle that would create a file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_files_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"w": Exploit(str(marker))}))
    with pytest.raises(ValueError, match=f"load: {path} is not a readable .npz archive"):
        tr.load(path)
    assert not marker.exists()


@pytest.mark.parametrize(("content", "match"), [
    (b"", r"not a readable \.npz"),
    (b"hello, I am a text file\n", r"not a readable \.npz"),
])
def test_foreign_bytes_are_refused(tmp_path, content, match):
    path = tmp_path / "foreign.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        tr.load(path)


def test_single_npy_array_is_refused(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ValueError, match=r"holds a single \.npy array"):
        tr.load(path)


def test_other_zip_archives_are_refused(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"not an array")
    with pytest.raises(ValueError, match=r"zip archive but not an \.npz.*'archive/data\.pkl'"):
        tr.load(path)


def test_pytorch_checkpoint_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(ValueError, match=f"load: {path} is a zip archive but not an .npz"):
        tr.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        tr.load(tmp_path / "nope.npz")


@pytest.mark.parametrize(("manifest", "match"), [
    ("not json", "damaged tinyres manifest"),
    ('{"format": "tinyres", "version": 99, "tree": {}}', "format version 99"),
    ('{"format": "tinyres", "version": 1, "tree": {"type": "tensor", "name": "gone"}}',
     "names an array 'gone'"),
    ('{"format": "tinyres", "version": 1, "tree": {"type": "pickle"}}', "unknown entry"),
])
def test_damaged_manifest(tmp_path, manifest, match):
    path = tmp_path / "x.npz"
    np.savez(path, **{serialization.MANIFEST: np.array(manifest)})
    with pytest.raises(ValueError, match=match):
        tr.load(path)


def test_load_takes_torch_loads_keywords_and_refuses_another_device(tmp_path):
    # The CIFAR-10 tutorial writes torch.load(PATH, weights_only=True); checkpoints are
    # often loaded with map_location="cpu" or a (storage, location) function.
    path = tmp_path / "ckpt.pth"
    tr.save({"net": {"w": tr.ones(2)}, "acc": 93.1, "epoch": 12}, path)
    for keywords in [{"map_location": "cpu"}, {"map_location": tr.device("cpu")},
                     {"map_location": lambda storage, location: storage},
                     {"map_location": {"cuda:0": "cpu"}}, {"weights_only": True}]:
        checkpoint = tr.load(path, **keywords)
        assert checkpoint["epoch"] == 12 and checkpoint["net"]["w"].tolist() == [1.0, 1.0]
    for where in ["cuda", "cuda:1", {"cpu": "cuda"}]:
        with pytest.raises(RuntimeError, match="CPU only"):
            tr.load(path, map_location=where)
    with pytest.raises(TypeError, match="weights_only must be True, False or None"):
        tr.load(path, weights_only="yes")
