"""Read a torch zip checkpoint (``torch.save``) as numpy arrays, without torch.

The ``.pth`` is a zip holding ``<archive>/data.pkl`` plus raw little-endian
storages ``<archive>/data/<key>``; the pickle is read by a restricted unpickler
that allows only the handful of globals a state dict needs (tensors, ordered
dicts, numeric scalars), and tensors are rebuilt from storage, offset, size and
stride with numpy. Used for the aisfx weights (:mod:`sea_core.models.aisfx`).
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

from sea_core.errors import WeightsError

__all__ = ["read_torch_checkpoint"]

# Storage classes a state dict may reference -> numpy dtype (little-endian).
_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2",
    "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


# --------------------------------------------------------------------------- restricted unpickling
class _StorageType:
    """Stands for ``torch.<X>Storage`` in the pickle; only its dtype matters."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    """numpy stand-in for ``torch._utils._rebuild_tensor_v2`` (a strided view, copied)."""
    if not isinstance(storage, np.ndarray):
        raise WeightsError(f"tensor refers to a non-storage object {type(storage).__name__}")
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    offset = int(storage_offset)
    if len(size) != len(stride):
        raise WeightsError(f"tensor size {size} and stride {stride} differ in rank")
    if any(s == 0 for s in size):
        return np.zeros(size, dtype=storage.dtype)
    last = offset + sum((n - 1) * st for n, st in zip(size, stride))
    if offset < 0 or any(st < 0 for st in stride) or last >= storage.size:
        raise WeightsError(f"tensor view (offset {offset}, size {size}, stride {stride}) "
                           f"overruns its storage of {storage.size} elements")
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=tuple(st * item for st in stride),
                                           writeable=False)
    return np.array(view, copy=True)


def _numpy_scalar(dtype, data=None):
    """Safe stand-in for ``numpy.core.multiarray.scalar`` (plain numeric dtypes only)."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise WeightsError("checkpoint holds a numpy scalar of an unsupported kind")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _numpy_dtype(spec, align=False, copy=False):
    dt = np.dtype(str(spec))
    if dt.hasobject:
        raise WeightsError(f"checkpoint asks for object dtype {spec!r}")
    return dt


def _codecs_encode(text, encoding="latin1"):
    if not isinstance(text, str) or encoding != "latin1":
        raise WeightsError("checkpoint uses an unexpected codecs.encode call")
    return text.encode("latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    """Reads a torch ``data.pkl`` allowing only the globals a state dict needs."""

    _ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("numpy.core.multiarray", "scalar"): _numpy_scalar,
        ("numpy._core.multiarray", "scalar"): _numpy_scalar,
        ("numpy", "dtype"): _numpy_dtype,
        ("_codecs", "encode"): _codecs_encode,
    }

    def __init__(self, file, read_storage):
        super().__init__(file)
        self._read_storage = read_storage
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise WeightsError(f"checkpoint references the global {module}.{name}, which a plain "
                               "state dict never needs; refusing to unpickle it") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise WeightsError(f"unsupported persistent id in checkpoint: {pid!r:.80}")
        _, stype, key, _location, numel = pid
        key = str(key)
        if key not in self._storages:
            raw = self._read_storage(key)
            arr = np.frombuffer(raw, dtype=stype.dtype)
            if arr.size < int(numel):
                raise WeightsError(f"storage {key} holds {arr.size} elements, expected {numel}")
            self._storages[key] = arr
        return self._storages[key]


def read_torch_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Tensors of a torch zip checkpoint as numpy arrays, without torch.

    Parameters
    ----------
    path : path-like
        A ``.pth`` written by ``torch.save`` (zip format). Its pickle may be a
        state dict or a tuple / dict containing one; every tensor found in a
        top-level (nested at most once) mapping is returned.

    Returns
    -------
    dict
        ``{state_dict_key: np.ndarray}`` in file order.

    Raises
    ------
    WeightsError
        The file is not a torch zip checkpoint, is big-endian, or its pickle
        references anything but tensors, ordered dicts and numeric scalars.
    """
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{path}: not a torch zip checkpoint ({exc})") from exc
    with zf:
        pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise WeightsError(f"{path}: expected one '<archive>/data.pkl', found {pkls}")
        prefix = pkls[0][: -len("data.pkl")]
        names = set(zf.namelist())
        if prefix + "byteorder" in names and zf.read(prefix + "byteorder").strip() != b"little":
            raise WeightsError(f"{path}: big-endian checkpoints are not supported")

        def read_storage(key: str) -> bytes:
            member = f"{prefix}data/{key}"
            if member not in names:
                raise WeightsError(f"{path}: storage {member} is missing")
            return zf.read(member)

        try:
            obj = _RestrictedUnpickler(io.BytesIO(zf.read(pkls[0])), read_storage).load()
        except WeightsError as exc:
            raise WeightsError(f"{path}: {exc}") from exc
        except Exception as exc:  # malformed pickle
            raise WeightsError(f"{path}: cannot read the checkpoint pickle ({exc})") from exc
    return _collect_tensors(obj, path)


def _collect_tensors(obj, path) -> dict[str, np.ndarray]:
    candidates = [obj]
    if isinstance(obj, (tuple, list)):
        candidates = list(obj)
    elif isinstance(obj, dict) and not any(isinstance(v, np.ndarray) for v in obj.values()):
        candidates = list(obj.values())
    for cand in candidates:
        if isinstance(cand, dict) and cand and all(isinstance(v, np.ndarray) for v in cand.values()):
            return {str(k): v for k, v in cand.items()}
    raise WeightsError(f"{path}: no state dict of tensors found in the checkpoint")
