"""CIFAR-10 from a local directory in the official "python version" format.

Get ``cifar-10-python.tar.gz`` from https://www.cs.toronto.edu/~kriz/cifar.html and
unpack it; the directory ``cifar-10-batches-py`` holds ``data_batch_1`` ...
``data_batch_5`` (10,000 training images each) and ``test_batch``. Each file is a
pickled dict with ``b"data"``, a uint8 array of shape (N, 3072) (the red, green, then
blue 32x32 planes of each image), and ``b"labels"``, a list of N ints in 0..9.

Unpickling can run arbitrary code, so the files are read with ``SafeUnpickler``: it
builds plain dicts, lists, bytes, numbers and NumPy arrays, and refuses every other
global a file names.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tinyres.data.dataset import ArrayDataset, standardize
from tinyres.data.loader import Dataset
from tinyres.engine import Tensor

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
EXPECTED = (
    "the CIFAR-10 python version: a directory (cifar-10-batches-py) with data_batch_1 ... "
    "data_batch_5 and test_batch, from https://www.cs.toronto.edu/~kriz/cifar.html"
)

# NumPy pickles an array as a call to its reconstruct function (protocols 2-4) or to
# _frombuffer (protocol 5), plus ndarray and dtype. Take them from NumPy itself, so
# both the old module path (numpy.core) and NumPy 2's (numpy._core) map to them.
_empty = np.zeros(0, np.uint8)
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _empty.__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): _empty.__reduce__()[0],
    ("numpy.core.numeric", "_frombuffer"): _empty.__reduce_ex__(5)[0],
    ("numpy._core.numeric", "_frombuffer"): _empty.__reduce_ex__(5)[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): lambda *args: _plain_dtype(np.dtype(*args)),
}
# An official batch file is 31 MB (10,000 images of 3,072 bytes); anything far larger
# is not one, and is refused before it is read.
MAX_FILE_BYTES = 64 * 2**20


def _plain_dtype(dtype: np.dtype) -> np.dtype:
    """Refuse object dtypes: their arrays are rebuilt from nested Python lists."""
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"refusing dtype {dtype}: a CIFAR-10 file holds uint8 pixels")
    return dtype


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that only knows NumPy's array-rebuilding globals.

    >>> import io
    >>> SafeUnpickler(io.BytesIO(pickle.dumps({b"labels": [1, 2]}))).load()
    {b'labels': [1, 2]}
    >>> SafeUnpickler(io.BytesIO(pickle.dumps(print))).load()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    _pickle.UnpicklingError: refusing to load builtins.print: a CIFAR-10 file only holds ...
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _NUMPY_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a CIFAR-10 file only holds dicts, lists, bytes "
                "and NumPy arrays"
            ) from None


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as (images uint8 (N, 3, 32, 32), labels int64 (N,)).

    The unpickled object is checked for its exact form (a dict with a uint8 array and
    a flat list of ints as long as the array) before anything converts it: a small
    crafted file can nest shared lists so that a conversion would walk 1e10 elements.
    """
    if path.is_file() and path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{path} is {path.stat().st_size} bytes, larger than any CIFAR-10 batch file; "
                         f"expected {EXPECTED}")
    try:
        with open(path, "rb") as f:
            # The official files were pickled by Python 2: "bytes" keeps its strings as bytes.
            batch = SafeUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(f"{path} is not a CIFAR-10 batch file ({err}); expected {EXPECTED}") from err
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"{path}: expected a dict with b'data' and b'labels', got {keys}")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        is_array = isinstance(data, np.ndarray)
        got = f"{data.dtype} array of shape {data.shape}" if is_array else type(data).__name__
        raise ValueError(f"{path}: b'data' must be a uint8 array of shape (N, 3072), got {got}")
    if len(data) == 0:  # before the labels: with no images, whatever they are is beside the point
        raise ValueError(f"{path} holds zero images (its b'data' has shape {data.shape}); an official "
                         f"batch holds 10,000; expected {EXPECTED}")
    # Checked on the list itself, one step per element, before NumPy walks it.
    if not (isinstance(labels, list) and len(labels) == len(data)
            and all(type(v) is int and 0 <= v <= 9 for v in labels)):
        got = f"a list of {len(labels)}" if isinstance(labels, list) else f"a {type(labels).__name__}"
        raise ValueError(f"{path}: b'labels' must be a list of {len(data)} ints in 0..9, got {got} "
                         "(or items that are not such ints)")
    labels = np.array(labels, dtype=np.int64)
    return data.reshape(-1, 3, 32, 32), labels


def find_directory(root: str | Path) -> Path:
    """``root`` itself, or its ``cifar-10-batches-py`` sub-directory, whichever has the files."""
    root = Path(root)
    for candidate in (root, root / "cifar-10-batches-py"):
        if (candidate / TEST_FILE).is_file():
            return candidate
    if not root.is_dir():
        raise FileNotFoundError(f"CIFAR-10 directory {root} does not exist; expected {EXPECTED}")
    raise FileNotFoundError(
        f"no {TEST_FILE} in {root} (or {root / 'cifar-10-batches-py'}); expected {EXPECTED}"
    )


def load_cifar10(root: str | Path) -> tuple[ArrayDataset, ArrayDataset]:
    """The (train, test) data sets, images (N, 3, 32, 32) standardised per channel."""
    directory = find_directory(root)
    missing = [name for name in (*TRAIN_FILES, TEST_FILE) if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory} lacks {', '.join(missing)}; expected {EXPECTED}")
    parts = [read_batch(directory / name) for name in TRAIN_FILES]
    train_x = np.concatenate([x for x, _ in parts]).astype(np.float32) / 255.0
    train_y = np.concatenate([y for _, y in parts])
    test_x, test_y = read_batch(directory / TEST_FILE)
    test = ArrayDataset(test_x.astype(np.float32) / 255.0, test_y)
    return standardize(ArrayDataset(train_x, train_y), test)


# ---- download and the PyTorch-style data set ------------------------------------------------

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"  # published on the page above
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
CHUNK = 2**20


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, partial: Path) -> None:
    """Append ``url``'s bytes to ``partial``, asking only for the missing tail (HTTP Range)."""
    have = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            resumed = response.status == 206  # a server without ranges sends it all again (200)
            with open(partial, "ab" if resumed else "wb") as out:
                shutil.copyfileobj(response, out, CHUNK)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the range starts at the end: nothing is missing
            return
        raise OSError(f"download of {url} failed: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise OSError(f"download of {url} stopped ({err}); {partial} keeps the {partial.stat().st_size} "
                      "bytes so far, run again to resume") from None


def download_cifar10(root: str | Path, url: str = URL, md5: str = MD5) -> Path:
    """Fetch and unpack CIFAR-10 into ``root/cifar-10-batches-py``, unless it is there already.

    The archive is downloaded to ``ARCHIVE.part`` (an interrupted download resumes
    from where it stopped), checked against its published MD5 (a mismatch deletes it
    and is an error: nothing unverified is ever unpacked), unpacked into a temporary
    folder and renamed into place, so a crash never leaves half a data set.
    """
    root = Path(root)
    target = root / FOLDER
    if (target / TEST_FILE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    archive, partial = root / ARCHIVE, root / f"{ARCHIVE}.part"
    if not archive.is_file():
        _fetch(url, partial)
        got = _md5(partial)
        if got != md5:
            size = partial.stat().st_size
            partial.unlink()
            raise ValueError(f"download of {url} is broken: {size} bytes with MD5 {got}, expected {md5}; "
                             "deleted it, run again to download afresh")
        os.replace(partial, archive)
    elif _md5(archive) != md5:
        raise ValueError(f"{archive} does not have the published MD5 {md5}; delete it and download again")
    with tempfile.TemporaryDirectory(dir=root, prefix=".cifar-10-") as tmp, tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(f"{FOLDER}/") or m.name == FOLDER]
        tar.extractall(tmp, members=members, filter="data")  # "data": no links out, no absolute paths
        if not (Path(tmp) / FOLDER / TEST_FILE).is_file():
            raise ValueError(f"{archive} holds no {FOLDER}/{TEST_FILE}; expected {EXPECTED}")
        os.replace(Path(tmp) / FOLDER, target)
    return target


class CIFAR10(Dataset):
    """CIFAR-10 as ``torchvision.datasets.CIFAR10``: item ``i`` is ``(image, label)``.

    ``image`` is a float32 tensor (3, 32, 32) in [0, 1] (what torchvision's
    ``ToTensor()`` gives; tinyres has no PIL images), passed through ``transform`` if
    given; ``label`` an int in 0..9, through ``target_transform``. ``download=True``
    fetches and verifies the archive first (``download_cifar10``; ``url`` for a mirror).
    ``data`` holds the uint8 images (N, 3, 32, 32), ``targets`` the labels.
    """

    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

    def __init__(self, root: str | Path, train: bool = True, transform: Callable | None = None,
                 target_transform: Callable | None = None, download: bool = False, url: str = URL,
                 md5: str = MD5):
        directory = download_cifar10(root, url, md5) if download else find_directory(root)
        parts = [read_batch(directory / name) for name in (TRAIN_FILES if train else (TEST_FILE,))]
        self.data = np.concatenate([x for x, _ in parts])
        self.targets = np.concatenate([y for _, y in parts]).tolist()
        self.train, self.transform, self.target_transform = train, transform, target_transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image: Any = Tensor(self.data[index].astype(np.float32) / 255.0)
        label: Any = self.targets[index]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label
