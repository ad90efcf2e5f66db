"""``save`` and ``load``: state dicts as NumPy ``.npz`` files, written atomically.

``torch.save`` pickles, and unpickling a file can run any code in it. tinyres
stores arrays in NumPy's ``.npz`` format (a zip of ``.npy`` files) and reads it with
``allow_pickle=False``, so loading a file can only ever produce arrays.

Layout: every array is an ``.npy`` member named by its key (nested keys joined
with "/"), so ``np.load`` alone can read a checkpoint; a member ``__tinyres__``
holds a JSON description of the object's structure (dicts, lists, tensors or
arrays, and plain scalars such as an epoch number), so ``load`` rebuilds it
exactly. A plain ``.npz`` without that member, as ``np.savez`` writes it, loads as
a flat dict of tensors.

Writing is atomic: the data goes to a temporary file in the same directory, is
flushed to disk (fsync), then renamed over the target with ``os.replace``, which
either fully happens or not at all. A crash mid-write leaves the old file intact.

>>> import os, tempfile
>>> import tinyres as tr
>>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
>>> tr.save({"epoch": 3, "model": {"fc.weight": tr.ones(2, 2)}}, path)
>>> ckpt = tr.load(path)
>>> ckpt["epoch"], ckpt["model"]["fc.weight"].shape
(3, tinyres.Size([2, 2]))
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from tinyres import phases
from tinyres.engine import Tensor
from tinyres.plumbing import check_device

MANIFEST = "__tinyres__"
EXPECTED = "expected an .npz archive written by tinyres.save or np.savez"
MAX_DEPTH = 100  # nesting of dicts and lists in a checkpoint; real ones use 3 or 4
MAX_NAME = 65535 - len(".npy")  # a zip member's name is at most 65535 bytes
FORMAT_VERSION = 1
_SCALARS = (bool, int, float, str, type(None))


class _Encoder:
    """Turns an object into a JSON-able tree plus a dict of named arrays."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def encode(self, obj: Any, path: str) -> dict[str, Any]:
        if isinstance(obj, (Tensor, np.ndarray, np.generic)):
            return self._array(obj, path)
        if isinstance(obj, dict):
            items = []
            for key, value in obj.items():
                if not isinstance(key, (str, int)) or isinstance(key, bool):
                    raise TypeError(f"save: dict keys must be str or int, got {key!r} at {path or 'top'}")
                items.append([key, self.encode(value, f"{path}/{key}" if path else str(key))])
            return {"type": "dict", "items": items}
        if isinstance(obj, (list, tuple)):
            kind = "list" if isinstance(obj, list) else "tuple"
            return {"type": kind, "items": [self.encode(v, f"{path}/{i}") for i, v in enumerate(obj)]}
        if isinstance(obj, _SCALARS):
            return {"type": "scalar", "value": obj}
        raise TypeError(
            f"save: cannot store a {type(obj).__name__} at {path or 'top'}; expected tensors, "
            "arrays, numbers, strings, None, and dicts, lists or tuples of them"
        )

    def _array(self, obj: Any, path: str) -> dict[str, Any]:
        if isinstance(obj, Tensor):
            kind = "tensor"
        else:
            kind = "ndarray" if isinstance(obj, np.ndarray) else "numpy_scalar"
        array = np.asarray(obj._data if isinstance(obj, Tensor) else obj)
        if array.dtype.hasobject:
            raise TypeError(f"save: the array at {path} has dtype object, which .npz can only pickle")
        name = path or "array"
        if len(name.encode()) > MAX_NAME:
            raise ValueError(f"save: the key path {name[:60]!r}... is {len(name.encode())} bytes long; a "
                             f".npz member's name holds at most {MAX_NAME}")
        if name in self.arrays or name == MANIFEST:
            raise ValueError(f"save: two entries would both be stored as {name!r}; rename one")
        self.arrays[name] = array
        return {"type": kind, "name": name}


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` (a state dict, or nested dicts/lists of tensors, arrays and
    scalars) to ``path`` as ``.npz``, atomically. The name is used as given."""
    encoder = _Encoder()
    tree = encoder.encode(obj, "")
    manifest = json.dumps({"format": "tinyres", "version": FORMAT_VERSION, "tree": tree})
    write_atomically(path, lambda f: np.savez(f, **{MANIFEST: np.array(manifest)}, **encoder.arrays))


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, make it durable, rename it over ``path``.

    The temporary name carries the writer's process id, so temporary files left by a
    writer that was killed (kill -9 runs no cleanup) are recognised and removed by the
    next write to the same path, and two writers never share one.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "is a directory; expected the path of a file to write", path)
    directory = os.path.dirname(os.path.abspath(path))
    prefix = f".{os.path.basename(path)}."
    _remove_orphans(directory, prefix)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f"{prefix}{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            phases.reached("checkpoint-write")
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as err:
        # Whatever went wrong (even Ctrl-C), the target is untouched; drop the partial file.
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError) and err.errno and err.filename is None:  # a full disk names no file
            raise type(err)(err.errno, err.strerror, path) from err
        raise
    _fsync_directory(directory)


def _remove_orphans(directory: str, prefix: str) -> None:
    """Delete ``prefix<pid>.*.tmp`` files in ``directory`` whose writing process is gone."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split(".", 1)[0]
        if not (name.startswith(prefix) and name.endswith(".tmp") and pid.isdigit()):
            continue
        try:
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(directory, name))
        except (PermissionError, OverflowError):
            pass  # alive under another user, or not a pid at all: leave it


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories can't be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Decoder:
    """Rebuilds the object from the JSON tree and the arrays read from the file.

    The tree comes from the file, so it is checked as it is walked: its nesting is
    bounded (``MAX_DEPTH``), and any node of the wrong form is a ``ValueError``.
    """

    def __init__(self, arrays: dict[str, np.ndarray], path: str):
        self.arrays, self.path = arrays, path

    def decode(self, node: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise ValueError(f"load: {self.path}: the manifest nests deeper than {MAX_DEPTH} levels; "
                             "tinyres.save never writes that, so the file is crafted or damaged")
        kind = node.get("type") if isinstance(node, dict) else None
        if kind == "dict":
            items = self._items(node)
            if not all(isinstance(item, list) and len(item) == 2 and isinstance(item[0], (str, int))
                       for item in items):
                raise ValueError(f"load: {self.path}: a dict in the manifest has malformed items; "
                                 "the file is damaged")
            return {key: self.decode(value, depth + 1) for key, value in items}
        if kind in ("list", "tuple"):
            items = [self.decode(v, depth + 1) for v in self._items(node)]
            return items if kind == "list" else tuple(items)
        if kind == "scalar" and isinstance(node.get("value"), _SCALARS):
            return node["value"]
        if kind in ("tensor", "ndarray", "numpy_scalar"):
            name = node.get("name")
            if not isinstance(name, str) or name not in self.arrays:
                raise ValueError(f"load: {self.path}: the manifest names an array {name!r} "
                                 "that the file does not contain; the file is damaged")
            array = self.arrays[name]
            if kind == "tensor":
                return Tensor(array)
            return array if kind == "ndarray" else array[()]
        raise ValueError(f"load: {self.path}: unknown entry {str(node)[:80]!r} in the tinyres manifest; "
                         "the file is damaged")

    def _items(self, node: dict) -> list:
        items = node.get("items")
        if not isinstance(items, list):
            raise ValueError(f"load: {self.path}: a {node['type']} in the manifest has no list of items; "
                             "the file is damaged")
        return items


def _check_members(archive: zipfile.ZipFile, file_size: int, path: str) -> None:
    """Refuse, before NumPy allocates anything, any member whose sizes do not add up.

    NumPy allocates an array of the shape a member's header declares, then reads
    into it, so a 200-byte file declaring 4 TiB would ask for 4 TiB. Here every
    member must be a ``.npy`` whose declared data size (shape x item size) is exactly
    the bytes the member holds, and a compressed member may not claim to expand more
    than deflate can (about 1032:1), so nothing read can exceed ~1000x the file.
    """
    for info in archive.infolist():
        where = f"load: {path}: member {info.filename[:80]!r}"
        if not info.filename.endswith(".npy"):  # PyTorch's own checkpoints are zips too
            raise ValueError(f"load: {path} is a zip archive but not an .npz ({EXPECTED}): "
                             f"member {info.filename[:80]!r} is not a .npy array")
        if info.compress_size > file_size or info.file_size > 1100 * info.compress_size + 2**16:
            raise ValueError(f"{where} claims {info.file_size} bytes from {info.compress_size} stored, "
                             "more than the file can hold; it is crafted or damaged")
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"{where} has .npy format version {version}; expected 1.0 or 2.0")
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            try:
                shape, _, dtype = read_header(member)
            except Exception as exc:  # NumPy parses the header with ast; junk raises any of several
                raise ValueError(f"{where} has a damaged .npy header: {type(exc).__name__}: {exc}") from None
            header_bytes = member.tell()
        if dtype.hasobject:
            raise ValueError(f"{where} holds Python objects (dtype {dtype}), which only a pickle can "
                             "store; tinyres never unpickles")
        declared = math.prod(shape) * dtype.itemsize
        if declared != info.file_size - header_bytes:
            raise ValueError(f"{where} declares shape {shape} of {dtype} ({declared} bytes) but holds "
                             f"{info.file_size - header_bytes} bytes; it is truncated, crafted or damaged")


def _read_npz(path: str) -> dict[str, np.ndarray]:
    """Every member of the archive at ``path`` as an array, or a ValueError saying why not."""
    try:
        with open(path, "rb") as f:
            if f.read(6) == b"\x93NUMPY":
                raise ValueError(f"load: {path} holds a single .npy array; {EXPECTED}")
        with zipfile.ZipFile(path) as archive:
            _check_members(archive, os.path.getsize(path), path)
        with np.load(path, allow_pickle=False) as npz:
            # Read every member now, so a damaged member fails here and not later.
            return {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, zlib.error, NotImplementedError,
            SyntaxError, TypeError, UnicodeDecodeError) as exc:
        # (read_magic and the header parsers raise ValueError, SyntaxError or TypeError on junk;
        # zipfile raises NotImplementedError for compression methods it lacks.)
        if str(exc).startswith("load: "):
            raise
        raise ValueError(
            f"load: {path} is not a readable .npz archive ({EXPECTED}); it may be truncated, damaged "
            f"or another format, such as a pickle: {type(exc).__name__}: {exc}"
        ) from None


def load(path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None) -> Any:
    """Read what ``save`` wrote (arrays come back as they went in: tensors as
    ``Tensor``, NumPy arrays as arrays). Never unpickles.

    ``map_location`` and ``weights_only`` are accepted as ``torch.load`` takes them, so
    programs that pass them run: everything loads onto the CPU (a device name, a
    ``device``, a ``{from: to}`` dict or a function are accepted when they name the CPU),
    and nothing is ever unpickled, so ``weights_only`` has nothing left to restrict.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the
    path for anything that is not a readable ``.npz`` (truncated, foreign, damaged).
    """
    _check_map_location(map_location)
    if weights_only not in (None, True, False):
        raise TypeError(f"load: weights_only must be True, False or None, got {weights_only!r}")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"load: {path} is a directory; expected a file written by tinyres.save")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: no such file: {path}")
    arrays = _read_npz(path)
    if MANIFEST not in arrays:
        return {name: Tensor(array) for name, array in arrays.items()}
    try:
        text = arrays.pop(MANIFEST)
        if text.dtype.kind != "U" or text.ndim != 0:
            raise TypeError(f"the manifest is a {text.dtype} array of shape {text.shape}, not a string")
        manifest = json.loads(str(text))
        tree = manifest["tree"]
        version = manifest["version"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ValueError(f"load: {path} has a damaged tinyres manifest: {type(exc).__name__}: "
                         f"{str(exc)[:200]}") from None
    if version != FORMAT_VERSION:
        raise ValueError(f"load: {path} has tinyres format version {version}, "
                         f"this tinyres reads version {FORMAT_VERSION}")
    return _Decoder(arrays, path).decode(tree)


def _check_map_location(map_location: Any) -> None:
    """Accept what ``torch.load`` accepts when it means the CPU; refuse another device clearly."""
    if map_location is None or callable(map_location):
        return  # a function of (storage, location): on a CPU-only library the storage stays put
    targets = map_location.values() if isinstance(map_location, dict) else [map_location]
    for target in targets:
        check_device(target)
