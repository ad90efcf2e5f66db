"""Data: the loader, the paper's augmentation, digits, and CIFAR-10 files."""

from __future__ import annotations

import os
import pickle
import struct
import sys

import numpy as np
import pytest
from helpers import arrays
from hypothesis import given
from hypothesis import strategies as st

from tinyres.data import ArrayDataset, DataLoader, RandomCropFlip, load_cifar10, load_digits
from tinyres.data.cifar10 import read_batch
from tinyres.data.digits import split


def dataset(n=10, shape=(1, 2, 2)):
    images = np.arange(n * int(np.prod(shape)), dtype=np.float32).reshape(n, *shape)
    return ArrayDataset(images, np.arange(n) % 3)


# ---- loader ---------------------------------------------------------------------------


@pytest.mark.parametrize("n, batch, drop_last", [(10, 4, False), (10, 4, True), (8, 4, False), (3, 5, False)])
def test_loader_sees_every_example_once_per_epoch(n, batch, drop_last):
    ds = dataset(n)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, drop_last=drop_last, generator=0)
    for _ in range(2):
        seen = [img[0, 0, 0].item() // 4 for images, _ in loader for img in images.numpy()]
        sizes = [len(y) for _, y in loader]
        assert len(sizes) == len(loader)
        if drop_last:
            assert all(s == batch for s in sizes) and len(seen) == n // batch * batch
        else:
            assert sorted(seen) == list(range(n))
        assert len(set(seen)) == len(seen)


def test_loader_without_shuffle_keeps_order_and_labels_match():
    ds = dataset(7)
    batches = list(DataLoader(ds, batch_size=3))
    images = np.concatenate([x.numpy() for x, _ in batches])
    labels = np.concatenate([y.numpy() for _, y in batches])
    np.testing.assert_array_equal(images, ds.images)
    np.testing.assert_array_equal(labels, ds.labels)
    assert batches[0][1].dtype == np.int64 and batches[0][0].dtype == np.float32


def epoch_labels(loader):
    return np.concatenate([y.numpy() for _, y in loader]).tolist()


def test_loader_is_reproducible_and_resumable_from_generator_state():
    ds = ArrayDataset(np.random.default_rng(0).standard_normal((20, 1, 4, 4)), np.arange(20))
    make = lambda seed: DataLoader(ds, 6, shuffle=True, transform=RandomCropFlip(1), generator=seed)  # noqa: E731
    a, b, c = make(1), make(1), make(2)
    first = [x.numpy() for x, _ in a]
    assert all(np.array_equal(x, y.numpy()) for x, (y, _) in zip(first, b))
    assert epoch_labels(c) != epoch_labels(make(1))
    # A new pass draws a new order; restoring the generator state replays it.
    state = a.generator.bit_generator.state
    second = epoch_labels(a)
    assert second != epoch_labels(make(1))
    d = make(99)
    d.generator.bit_generator.state = state
    assert epoch_labels(d) == second


def test_loader_and_dataset_reject_bad_input():
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(dataset(), batch_size=0)
    with pytest.raises(TypeError, match="ArrayDataset or a Dataset"):
        DataLoader(iter(range(3)))  # no __len__/__getitem__: not a map-style data set
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ArrayDataset(np.zeros((3, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="labels must have shape"):
        ArrayDataset(np.zeros((3, 1, 2, 2)), np.zeros(4))


# ---- augmentation ---------------------------------------------------------------------


def crop_and_flip_of(image, padded, padding):
    """The (dy, dx, flipped) whose crop of ``padded`` equals ``image``, or None."""
    h, w = image.shape[-2:]
    matches = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            window = padded[:, dy : dy + h, dx : dx + w]
            for flipped in (False, True):
                if np.array_equal(window[..., ::-1] if flipped else window, image):
                    matches.append((dy, dx, flipped))
    return matches


@given(
    st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)).flatmap(
        lambda s: st.tuples(arrays(s, dtype=np.float32, low=0.5, high=2.0), st.integers(0, 3), st.booleans())
    ),
    st.integers(0, 2**32 - 1),
)
def test_augmentation_is_a_padded_crop_or_its_mirror(case, seed):
    images, padding, flip = case
    out = RandomCropFlip(padding, flip)(images, np.random.default_rng(seed))
    assert out.shape == images.shape and out.dtype == images.dtype
    pad = ((0, 0), (padding, padding), (padding, padding))
    for image, result in zip(images, out):
        matches = crop_and_flip_of(result, np.pad(image, pad), padding)
        assert matches, "output is not a crop of the zero-padded input"
        if not flip:
            assert any(not f for _, _, f in matches)


def test_augmentation_uses_every_offset_and_flips_half_the_time():
    # Values > 0 and all distinct: each output matches exactly one (offset, flip).
    images = np.random.default_rng(0).uniform(1, 2, (400, 1, 5, 5)).astype(np.float32)
    out = RandomCropFlip(padding=2, flip=True)(images, np.random.default_rng(1))
    found = [crop_and_flip_of(o, np.pad(i, ((0, 0), (2, 2), (2, 2))), 2) for i, o in zip(images, out)]
    assert all(len(m) == 1 for m in found)
    offsets = {(dy, dx) for [(dy, dx, _)] in found}
    assert offsets == {(dy, dx) for dy in range(5) for dx in range(5)}
    flips = np.mean([f for [(_, _, f)] in found])
    assert 0.4 < flips < 0.6


def test_augmentation_without_padding_or_flip_is_identity():
    images = np.random.default_rng(0).standard_normal((3, 2, 4, 4))
    np.testing.assert_array_equal(RandomCropFlip(0, flip=False)(images, np.random.default_rng(0)), images)
    with pytest.raises(ValueError, match="padding"):
        RandomCropFlip(-1)
    with pytest.raises(ValueError, match="N, C, H, W"):
        RandomCropFlip(1)(np.zeros((4, 4)), np.random.default_rng(0))


# ---- digits ---------------------------------------------------------------------------


def test_digits_fixed_stratified_split():
    pytest.importorskip("sklearn")
    train, test = load_digits()
    assert (len(train), len(test)) == (1438, 359)
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == np.float32
    assert set(np.bincount(test.labels)) <= {35, 36, 37} and train.num_classes == 10
    assert abs(train.images.mean()) < 1e-5 and abs(train.images.std() - 1) < 1e-4
    again, _ = load_digits()
    np.testing.assert_array_equal(again.images, train.images)


def test_split_is_disjoint_complete_and_stratified():
    labels = np.repeat(np.arange(4), [10, 20, 5, 7])
    train, test = split(labels, 0.2, seed=0)
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))
    np.testing.assert_array_equal(np.bincount(labels[test]), [2, 4, 1, 1])
    again, _ = split(labels, 0.2, seed=0)
    np.testing.assert_array_equal(again, train)


def test_digits_without_scikit_learn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"tinyres\[digits\]"):
        load_digits()


# ---- CIFAR-10 files -------------------------------------------------------------------


class Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` opcodes, as the official CIFAR-10 files have them."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def write_batch(path, data, labels, protocol):
    batch = {b"batch_label": b"testing batch", b"labels": labels, b"data": data, b"filenames": [b"a.png"]}
    with open(path, "wb") as f:
        if protocol == "py2":
            Python2Pickler(f, protocol=2).dump(batch)
        else:
            pickle.dump(batch, f, protocol=protocol)


def write_cifar(directory, n=4, protocol=4, seed=0):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        write_batch(directory / name, data, labels, protocol)
        written[name] = (data, labels)
    return written


@pytest.mark.parametrize("protocol", ["py2", 3, 4, 5])
def test_cifar_batches_read_back_exactly(tmp_path, protocol):
    written = write_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol)
    images, labels = read_batch(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    data, want = written["data_batch_3"]
    np.testing.assert_array_equal(images, data.reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(labels, want)
    # The parent directory works too; the training set is the five batches in order.
    train, test = load_cifar10(tmp_path)
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(train.labels[8:12], want)
    assert abs(train.images.mean()) < 1e-4


def test_cifar_missing_directory_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist; expected the CIFAR-10 python version"):
        load_cifar10(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no test_batch"):
        load_cifar10(tmp_path)
    write_cifar(tmp_path)
    (tmp_path / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match="lacks data_batch_4"):
        load_cifar10(tmp_path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a CIFAR-10 batch file"),
        (b"this is no pickle", "not a CIFAR-10 batch file"),
        ("truncated", "not a CIFAR-10 batch file"),
        (pickle.dumps([1, 2, 3]), "expected a dict"),
        (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}), r"shape \(N, 3072\)"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}), "uint8"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 11]}), "ints in 0..9"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "list of 2 ints"),
    ],
)
def test_cifar_corrupt_files_get_clear_errors(tmp_path, content, message):
    write_cifar(tmp_path)
    if content == "truncated":
        content = (tmp_path / "data_batch_2").read_bytes()[:5000]
    (tmp_path / "data_batch_2").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_cifar10(tmp_path)


class Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_cifar_reader_refuses_code_in_a_pickle(tmp_path):
    write_cifar(tmp_path)
    target = str(tmp_path / "pwned")
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [Exploit(target)]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch))
    with pytest.raises(ValueError, match=r"refusing to load \w+\.mkdir"):
        load_cifar10(tmp_path)
    assert not os.path.exists(target)
