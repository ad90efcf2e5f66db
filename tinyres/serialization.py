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
(3, (2, 2))
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from tinyres.engine import Tensor

MANIFEST = "__tinyres__"
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
    directory = os.path.dirname(os.path.abspath(path))
    prefix = f".{os.path.basename(path)}."
    _remove_orphans(directory, prefix)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f"{prefix}{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        # Whatever went wrong (even Ctrl-C), the target is untouched; drop the partial file.
        if os.path.exists(tmp):
            os.remove(tmp)
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
    """Rebuilds the object from the JSON tree and the arrays read from the file."""

    def __init__(self, arrays: dict[str, np.ndarray], path: str):
        self.arrays, self.path = arrays, path

    def decode(self, node: Any) -> Any:
        kind = node.get("type") if isinstance(node, dict) else None
        if kind == "dict":
            return {key: self.decode(value) for key, value in node["items"]}
        if kind in ("list", "tuple"):
            items = [self.decode(v) for v in node["items"]]
            return items if kind == "list" else tuple(items)
        if kind == "scalar":
            return node["value"]
        if kind in ("tensor", "ndarray", "numpy_scalar"):
            if node.get("name") not in self.arrays:
                raise ValueError(f"{self.path}: the manifest names an array {node.get('name')!r} "
                                 "that the file does not contain; the file is damaged")
            array = self.arrays[node["name"]]
            return Tensor(array) if kind == "tensor" else array if kind == "ndarray" else array[()]
        raise ValueError(f"{self.path}: unknown entry {node!r} in the tinyres manifest; the file is damaged")


def _read_npz(path: str) -> dict[str, np.ndarray]:
    """Every member of the archive at ``path`` as an array, or a ValueError saying why not."""
    expected = "expected an .npz archive written by tinyres.save or np.savez"
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError(f"load: {path} holds a single .npy array; {expected}")
        with npz:
            # Read every member now, so a truncated member fails here and not later.
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        if str(exc).startswith("load: "):
            raise
        raise ValueError(
            f"load: {path} is not a readable .npz archive ({expected}); it may be truncated "
            f"or another format, such as a pickle: {exc}"
        ) from None
    # A zip that is not an .npz (PyTorch's own checkpoints are zips) has non-.npy members,
    # which NumPy hands back as raw bytes.
    foreign = [name for name, value in arrays.items() if not isinstance(value, np.ndarray)]
    if foreign:
        raise ValueError(f"load: {path} is a zip archive but not an .npz ({expected}): "
                         f"member {foreign[0]!r} is not a .npy array")
    return arrays


def load(path: str | os.PathLike) -> Any:
    """Read what ``save`` wrote (arrays come back as they went in: tensors as
    ``Tensor``, NumPy arrays as arrays). Never unpickles.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the
    path for anything that is not a readable ``.npz`` (truncated, foreign, damaged).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: no such file: {path}")
    arrays = _read_npz(path)
    if MANIFEST not in arrays:
        return {name: Tensor(array) for name, array in arrays.items()}
    try:
        manifest = json.loads(str(arrays.pop(MANIFEST)))
        tree = manifest["tree"]
        version = manifest["version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"load: {path} has a damaged tinyres manifest: {exc}") from None
    if version != FORMAT_VERSION:
        raise ValueError(f"load: {path} has tinyres format version {version}, "
                         f"this tinyres reads version {FORMAT_VERSION}")
    return _Decoder(arrays, path).decode(tree)
