"""Packed shards: one split of a data set as checksummed TFRecord files, for training at scale.

Millions of small image files are slow on shared cluster storage; :func:`pack_dataset` streams a record
list into a few large files (``<split>-00000-of-000NN.tfrecord``, ``shard_size`` images each) plus
``index.json`` (format ``"tfad-shards/1"``: per shard its record count, byte size and SHA-256; the source
fingerprint, counts and the corrupt files that were skipped). :func:`make_shard_dataset` reads them back
as batches with exactly the keys, dtypes, shapes and values of :func:`tfad.data.pipeline.make_dataset`,
so the training input pipeline can take either. :func:`verify_shards` checks a packed folder and
:func:`iterate_examples` yields the stored examples in order (tests, audits).

Pixels are decoded once, at packing time, by :mod:`tfad.data.decode` (the folder pipeline's functions)
and stored as lossless PNG, so a shard sample equals the folder sample bit for bit. Format, integrity
checks and per-worker sharding: docs/data.md, "Packed shards (TFRecords)".
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
import tensorflow as tf

from tfad import __version__
from tfad.data.corrupt import CorruptFileCounter
from tfad.data.decode import decode_image_file, load_binary_mask, resize_image
from tfad.data.errors import CorruptImageError, DataError
from tfad.data.pipeline import DECODE_CHUNK, chunk_samples, to_float
from tfad.data.records import ImageRecord, fingerprint

log = logging.getLogger(__name__)

FORMAT = "tfad-shards/1"
INDEX_NAME = "index.json"
DEFAULT_SHARD_SIZE = 1024
_SPLIT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SHARD_RE = re.compile(r"^(?P<split>.+)-(?P<k>\d{5})-of-(?P<n>\d{5})\.tfrecord$")
_TMP_SUFFIX = ".tfrecord.tmp"

OnCorrupt = Literal["skip", "fail"]
VerifyLevel = Literal["sha256", "size"]
SizeArg = int | Sequence[int] | None

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "FORMAT",
    "INDEX_NAME",
    "PackResult",
    "ShardError",
    "ShardExample",
    "VerifyResult",
    "iterate_examples",
    "make_shard_dataset",
    "pack_dataset",
    "read_index",
    "verify_shards",
]


class ShardError(DataError):
    """A packed-shard folder is damaged or inconsistent with its ``index.json``.

    ``shard`` is the first offending file name (a shard or ``index.json``), ``problems`` every
    ``(file, what is wrong)`` found. The message is one line naming the folder, the file and the problem.
    """

    def __init__(self, out_dir: str, problems: Sequence[tuple[str, str]]) -> None:
        problems = [(f, _one_line(p)) for f, p in problems]
        first_file, first_problem = problems[0]
        more = f" (+{len(problems) - 1} more problem(s): " if len(problems) > 1 else ""
        rest = "; ".join(f"{f}: {p}" for f, p in problems[1:4])
        tail = f"{more}{rest}{'; ...' if len(problems) > 4 else ''})" if more else ""
        super().__init__(f"packed shards {out_dir!r}: {first_file!r}: {first_problem}{tail}")
        self.out_dir = out_dir
        self.shard = first_file
        self.problem = first_problem
        self.problems = problems


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# ----------------------------------------------------------------------------------------------- results
@dataclass
class PackResult:
    """What :func:`pack_dataset` wrote."""

    out_dir: str
    index_path: str
    shards: list[str]
    records: int  # examples written
    source_records: int
    skipped: dict[str, str]  # corrupt source file (relative path) -> reason
    bytes: int
    seconds: float
    index: dict = field(repr=False)


@dataclass
class VerifyResult:
    """What :func:`verify_shards` checked (it raises :class:`ShardError` instead of returning a failure)."""

    out_dir: str
    shards: int
    records: int
    bytes: int
    checks: list[str]  # e.g. ["index", "size", "sha256", "records", "decode"]
    seconds: float
    index: dict = field(repr=False)


@dataclass
class ShardExample:
    """One stored example, decoded (see :func:`iterate_examples`).

    ``image`` is ``uint8 [H, W, C]`` as stored (resized at packing time or as decoded); ``mask``/``roi``
    ``uint8 [H, W, 1]`` 0/1, or None when the record had none. ``record`` is the source
    :class:`ImageRecord` with its paths where the files were at packing time (the index's source root
    joined with the stored relative paths). ``index`` is the record's position in the list given to
    :func:`pack_dataset` (the ``"index"`` of the batches).
    """

    index: int
    image: np.ndarray
    mask: np.ndarray | None
    roi: np.ndarray | None
    record: ImageRecord
    source_path: str  # relative to the index's source root, "/" separators
    source_shape: tuple[int, int]  # (height, width) of the decoded source file
    shard: str
    position: int  # record number inside the shard (0-based)


# ------------------------------------------------------------------------------------------ PNG helpers
def _encode_png(array: np.ndarray) -> bytes:
    """Lossless PNG of ``uint8 [H, W, C]`` (C 1 or 3, RGB order)."""
    if array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)  # OpenCV writes BGR; decode swaps back
    else:
        array = array[:, :, 0]
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:  # pragma: no cover - OpenCV encodes every uint8 1/3-channel array
        raise RuntimeError("OpenCV could not encode a PNG")
    return buffer.tobytes()


def _decode_png(data: bytes, shape: tuple[int, int, int], what: str) -> np.ndarray:
    """``uint8 [H, W, C]`` from PNG bytes; ValueError when they do not decode to ``shape``."""
    if not data:
        raise ValueError(f"{what}: empty PNG bytes")
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        raise ValueError(f"{what}: PNG does not decode: {_one_line(err)}") from err
    if array is None:
        raise ValueError(f"{what}: PNG does not decode")
    if array.dtype != np.uint8:
        raise ValueError(f"{what}: PNG holds {array.dtype}, expected uint8")
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    elif array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    if array.shape != tuple(shape):
        raise ValueError(f"{what}: PNG is {array.shape}, the example says {tuple(shape)}")
    return array


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _source_png_if_identical(path: str, image: np.ndarray) -> bytes | None:
    """The source file's bytes when it is a PNG that the reader decodes to exactly ``image``, else None.

    Encoding costs ~3x decoding; an 8-bit PNG stored as decoded need not be re-encoded. The check decodes
    the bytes with the reader's own function, so what is stored always reads back as ``image``.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    if not data.startswith(_PNG_SIGNATURE):
        return None
    try:
        same = np.array_equal(_decode_png(data, image.shape, "image"), image)
    except ValueError:  # 16-bit, alpha, palette, grey stored as colour ...: converted, so re-encode
        return None
    return data if same else None


# -------------------------------------------------------------------------------------- example schema
def _bytes(value: bytes | str) -> tf.train.Feature:
    return tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[value.encode() if isinstance(value, str) else value])
    )


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


#: Feature name -> kind ("bytes"/"int") of every tf.train.Example in a shard (docs/data.md lists them).
EXAMPLE_FEATURES = {
    "image": "bytes", "height": "int", "width": "int", "channels": "int", "image_crc32": "int",
    "source_height": "int", "source_width": "int", "mask": "bytes", "roi": "bytes",
    "index": "int", "label": "int", "defect_type": "bytes", "region": "bytes", "product_id": "bytes",
    "run_id": "bytes", "frame": "int", "vial": "int", "path": "bytes", "mask_path": "bytes",
    "roi_path": "bytes",
}  # fmt: skip


def _parse_example(raw: bytes) -> dict:
    """Feature dict of a serialized example; ValueError naming what is missing or malformed."""
    try:
        example = tf.train.Example.FromString(raw)
    except Exception as err:  # protobuf's DecodeError; its module differs between protobuf builds
        raise ValueError(f"not a tf.train.Example ({type(err).__name__})") from err
    features = example.features.feature
    out: dict = {}
    for name, kind in EXAMPLE_FEATURES.items():
        if name not in features:
            raise ValueError(f"feature {name!r} missing")
        values = features[name].bytes_list.value if kind == "bytes" else features[name].int64_list.value
        if len(values) != 1:
            raise ValueError(f"feature {name!r} is not one {kind} value")
        out[name] = (
            values[0].decode() if kind == "bytes" and name not in ("image", "mask", "roi") else values[0]
        )
    return out


def _check_geometry(parsed: dict, index: dict) -> None:
    """ValueError when an example's channels or size contradict the index."""
    if parsed["channels"] != index["channels"]:
        raise ValueError(f"has {parsed['channels']} channels, the index says {index['channels']}")
    size = index["image_size"]
    if size and [parsed["height"], parsed["width"]] != size:
        raise ValueError(f"is {parsed['height']}x{parsed['width']}, the index says {size[0]}x{size[1]}")


def _decode_arrays(
    parsed: dict, want_mask: bool, want_roi: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Stored pixels of a parsed example: (image, mask or None, roi or None); ValueError when corrupt."""
    shape = (int(parsed["height"]), int(parsed["width"]), int(parsed["channels"]))
    image = _decode_png(parsed["image"], shape, "image")
    # The CRC of the decoded pixels catches a writer or decoder bug that PNG/TFRecord checksums cannot.
    if zlib.crc32(image.tobytes()) != int(parsed["image_crc32"]):
        raise ValueError("image pixels do not match their stored CRC-32")
    mask = roi = None
    if want_mask and parsed["mask"]:
        mask = _decode_png(parsed["mask"], (*shape[:2], 1), "mask")
        if mask.max(initial=0) > 1:
            raise ValueError("mask holds values other than 0/1")
    if want_roi and parsed["roi"]:
        roi = _decode_png(parsed["roi"], (*shape[:2], 1), "roi")
        if roi.max(initial=0) > 1:
            raise ValueError("roi holds values other than 0/1")
    return image, mask, roi


# -------------------------------------------------------------------------------------------- packing
def _size_pair(image_size: SizeArg, what: str = "image_size") -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int | np.integer):
        image_size = (int(image_size), int(image_size))
    if len(image_size) != 2 or not all(isinstance(v, int | np.integer) and v > 0 for v in image_size):
        raise ValueError(f"{what} must be a positive int or (height, width), got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


def _common_root(records: Sequence[ImageRecord]) -> str:
    # The same rule as tfad.data.records.fingerprint: the deepest common folder of the images.
    dirs = {os.path.dirname(os.path.abspath(r.path)) for r in records}
    return os.path.commonpath(sorted(dirs))


def _relpath(path: str | None, base: str) -> str:
    return "" if path is None else os.path.relpath(os.path.abspath(path), base).replace(os.sep, "/")


def _is_ours(name: str) -> bool:
    """A file :func:`pack_dataset` writes (final shards, temp shards, the index and its temp file)."""
    return (
        name == INDEX_NAME
        or name == f".{INDEX_NAME}.tmp"
        or bool(_SHARD_RE.match(name))
        or (name.startswith(".") and name.endswith(_TMP_SUFFIX))
    )


def _prepare_out_dir(out_dir: str, overwrite: bool) -> None:
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataError(f"output folder {out_dir!r} is a file")
    os.makedirs(out_dir, exist_ok=True)
    names = os.listdir(out_dir)
    if not names:
        return
    if not overwrite:
        raise DataError(f"output folder {out_dir!r} is not empty (pass overwrite=True / --overwrite)")
    foreign = sorted(n for n in names if not _is_ours(n))
    if foreign:
        # Overwrite replaces an earlier pack; never delete or mix with files that are not ours.
        raise DataError(
            f"output folder {out_dir!r} holds files that are not packed shards ({', '.join(foreign[:3])}); "
            "refusing to overwrite it"
        )
    # The index goes first: a half-removed folder must not look like a complete pack.
    for name in sorted(names, key=lambda n: n != INDEX_NAME):
        path = os.path.join(out_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems (and directories on some OSes) refuse fsync; best effort
        pass
    finally:
        os.close(fd)


def _file_sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _write_json_atomic(path: str, payload: dict) -> None:
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def pack_dataset(
    records: Sequence[ImageRecord],
    out_dir: str | os.PathLike,
    image_size: SizeArg,
    channels: int = 1,
    shard_size: int = DEFAULT_SHARD_SIZE,
    on_corrupt: OnCorrupt = "skip",
    progress: bool = True,
    overwrite: bool = False,
    split: str = "data",
    source_root: str | os.PathLike | None = None,
    layout: str | None = None,
    shuffle_seed: int | None = None,
    num_threads: int = 2,
) -> PackResult:
    """Write ``records`` as TFRecord shards plus ``index.json`` into ``out_dir``; streaming.

    Every example holds the image as lossless PNG (``uint8``; resized to ``image_size`` with the folder
    pipeline's bilinear resize, or as decoded when ``image_size`` is None; a source PNG that decodes to
    exactly the stored pixels is copied instead of re-encoded), its mask and ROI as 0/1 PNGs
    at the image's size (nearest-resized as the pipeline does; absent when the record has none), every
    labelling field, the source paths relative to ``source_root`` and a CRC-32 of the pixels. Shards are
    named ``<split>-<k:05d>-of-<n:05d>.tfrecord``, ``shard_size`` examples each (the last one fewer).

    Only the record list is in memory: images are decoded/encoded by ``num_threads`` threads a few at a
    time and appended to the open shard. Shards are written under a hidden temporary name and renamed
    when complete; ``index.json`` is written last, atomically, so a folder with an index is a complete
    pack (a crash leaves no index; the temporary files are removed on errors).

    Args:
        image_size: int (square) or (height, width) to resize to, or None to store images as decoded
            (then :func:`make_shard_dataset` can still resize to any size, bit-identically to the folder
            pipeline; packed at a size, it reads at that size only).
        channels: 1 (grey, BT.601 from colour) or 3 (RGB), converted as :mod:`tfad.data.decode` does.
        on_corrupt: ``"skip"`` leaves a sample whose image, mask or ROI cannot be decoded out and lists it
            (path -> reason) in the index and the result; ``"fail"`` raises :class:`CorruptImageError`
            naming the file and leaves no shard behind.
        overwrite: replace an earlier pack in ``out_dir``; a non-empty folder is refused otherwise, and a
            folder holding files that are not ours is refused always.
        split: shard file prefix and the index's ``split`` (letters, digits, ``_ . -``).
        source_root: what stored paths are relative to (default: the deepest common folder of the
            images, as :func:`tfad.data.records.fingerprint`).
        layout: recorded in the index (``"mvtec"``/``"line"``), informational.
        shuffle_seed: when given, examples are written in a permutation of ``records`` fixed by the seed,
            so every shard mixes classes, products and runs (recommended for training sets: readers
            shuffle with a bounded buffer). The ``index`` stored per example stays the position in
            ``records``.

    Raises:
        DataError: no records, a non-empty / foreign output folder, nothing decodable.
        CorruptImageError: a corrupt file with ``on_corrupt="fail"``.
    """
    started = time.perf_counter()
    records = list(records)
    if not records:
        raise DataError("no records to pack")
    if on_corrupt not in ("skip", "fail"):
        raise ValueError(f"on_corrupt must be 'skip' or 'fail', got {on_corrupt!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive int, got {shard_size!r}")
    if not _SPLIT_RE.match(split):
        raise ValueError(f"split must be letters, digits, '_', '.' or '-', got {split!r}")
    size = _size_pair(image_size)
    out_dir = os.path.abspath(os.fspath(out_dir))
    base = os.path.abspath(os.fspath(source_root)) if source_root is not None else _common_root(records)
    try:
        # The convention of `tfad fit` (default root), so a run trained from the shards or from the folders
        # records the same training-data fingerprint; taken before the files are read.
        source_fingerprint: str | None = fingerprint(records)
        fingerprint_error = None
    except FileNotFoundError as err:  # a missing file is a corrupt sample below, not a reason to stop
        source_fingerprint, fingerprint_error = None, f"a file is missing: {err.filename}"
    _prepare_out_dir(out_dir, overwrite)

    @functools.lru_cache(maxsize=256)
    def roi_png(path: str, target: tuple[int, int], source_shape: tuple[int, int]) -> bytes:
        # One ROI file (roi/<region>.png) serves thousands of records: decode and encode it once.
        return _encode_png(load_binary_mask(path, target, source_shape))

    def encode(position: int) -> bytes:
        record = records[position]
        decoded = decode_image_file(record.path, channels)
        source_shape = decoded.shape[:2]
        image = resize_image(decoded, size) if size else decoded
        target = image.shape[:2]
        image_png = _source_png_if_identical(record.path, image) if image is decoded else None
        mask = b""
        if record.mask_path:
            mask = _encode_png(load_binary_mask(record.mask_path, target, source_shape))
        roi = roi_png(os.path.abspath(record.roi_path), target, source_shape) if record.roi_path else b""
        feature = {
            "image": _bytes(image_png or _encode_png(image)),
            "height": _int(target[0]),
            "width": _int(target[1]),
            "channels": _int(channels),
            "image_crc32": _int(zlib.crc32(image.tobytes())),
            "source_height": _int(source_shape[0]),
            "source_width": _int(source_shape[1]),
            "mask": _bytes(mask),
            "roi": _bytes(roi),
            "index": _int(position),
            "label": _int(record.label),
            "defect_type": _bytes(record.defect_type),
            "region": _bytes(record.region),
            "product_id": _bytes(record.product_id),
            "run_id": _bytes(record.run_id),
            "frame": _int(record.frame),
            "vial": _int(record.vial),
            "path": _bytes(_relpath(record.path, base)),
            "mask_path": _bytes(_relpath(record.mask_path, base)),
            "roi_path": _bytes(_relpath(record.roi_path, base)),
        }
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    order = list(range(len(records)))
    if shuffle_seed is not None:
        order = [int(i) for i in np.random.default_rng(shuffle_seed).permutation(len(records))]

    temp_paths: list[str] = []
    entries: list[dict] = []
    skipped: dict[str, str] = {}
    counts = {
        "labels": Counter(),
        "defect_types": Counter(),
        "regions": Counter(),
        "with_mask": 0,
        "with_roi": 0,
    }
    writer: tf.io.TFRecordWriter | None = None
    in_shard = 0

    def close_shard() -> None:
        nonlocal writer, in_shard
        if writer is None:
            return
        writer.close()
        writer = None
        path = temp_paths[-1]
        _fsync(path)
        entries.append({"records": in_shard, "bytes": os.path.getsize(path), "sha256": _file_sha256(path)})
        in_shard = 0

    from tqdm import tqdm

    bar = tqdm(total=len(records), desc=f"packing {split}", unit="img", disable=not progress)
    window = max(4, 8 * num_threads)  # examples in flight: bounded, so memory does not grow with the set
    try:
        with ThreadPoolExecutor(max(1, num_threads)) as pool:
            pending: list[tuple[int, Future]] = []
            queue = iter(order)
            while True:
                while len(pending) < window and (position := next(queue, None)) is not None:
                    pending.append((position, pool.submit(encode, position)))
                if not pending:
                    break
                position, future = pending.pop(0)
                try:
                    serialized = future.result()
                except CorruptImageError as err:
                    if on_corrupt == "fail":
                        for _, other in pending:
                            other.cancel()
                        raise
                    skipped[_relpath(err.path, base)] = err.reason
                    bar.update(1)
                    continue
                if writer is None:
                    temp_paths.append(os.path.join(out_dir, f".{split}-{len(temp_paths):05d}{_TMP_SUFFIX}"))
                    writer = tf.io.TFRecordWriter(temp_paths[-1])
                writer.write(serialized)
                in_shard += 1
                record = records[position]
                counts["labels"][str(record.label)] += 1
                counts["defect_types"][record.defect_type] += 1
                counts["regions"][record.region] += 1
                counts["with_mask"] += record.mask_path is not None
                counts["with_roi"] += record.roi_path is not None
                bar.update(1)
                if in_shard == shard_size:
                    close_shard()
        close_shard()
        if not entries:
            raise DataError(
                f"no image of the {len(records)} record(s) could be decoded, nothing packed; e.g. "
                + "; ".join(f"{p}: {r}" for p, r in list(skipped.items())[:3])
            )
        n_shards = len(entries)
        names = [f"{split}-{k:05d}-of-{n_shards:05d}.tfrecord" for k in range(n_shards)]
        for temp, name, entry in zip(temp_paths, names, entries, strict=True):
            os.replace(temp, os.path.join(out_dir, name))
            entry["file"] = name
        index = {
            "format": FORMAT,
            "split": split,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "tfad_version": __version__,
            "source": {
                "root": base,
                "layout": layout,
                "records": len(records),
                "fingerprint": source_fingerprint,
                **({"fingerprint_error": fingerprint_error} if fingerprint_error else {}),
            },
            "image_size": list(size) if size else None,
            "channels": channels,
            "encoding": {"image": "png uint8", "mask": "png 0/1", "roi": "png 0/1"},
            "shard_size": shard_size,
            "shuffle_seed": shuffle_seed,
            "records": sum(e["records"] for e in entries),
            "counts": {
                "labels": dict(sorted(counts["labels"].items())),
                "defect_types": dict(sorted(counts["defect_types"].items())),
                "regions": dict(sorted(counts["regions"].items())),
                "with_mask": counts["with_mask"],
                "with_roi": counts["with_roi"],
            },
            "corrupt": dict(sorted(skipped.items())),
            "features": EXAMPLE_FEATURES,
            "shards": [
                {"file": e["file"], "records": e["records"], "bytes": e["bytes"], "sha256": e["sha256"]}
                for e in entries
            ],
        }
        _write_json_atomic(os.path.join(out_dir, INDEX_NAME), index)
        _fsync(out_dir)
    except BaseException:
        if writer is not None:
            writer.close()
        for path in temp_paths:
            if os.path.exists(path):
                os.remove(path)
        raise
    finally:
        bar.close()
    if skipped:
        log.warning(
            "%s: skipped %d corrupt file(s) while packing: %s",
            split,
            len(skipped),
            "; ".join(f"{p}: {r}" for p, r in list(skipped.items())[:5]),
        )
    return PackResult(
        out_dir=out_dir,
        index_path=os.path.join(out_dir, INDEX_NAME),
        shards=[e["file"] for e in entries],
        records=index["records"],
        source_records=len(records),
        skipped=dict(sorted(skipped.items())),
        bytes=sum(e["bytes"] for e in entries),
        seconds=time.perf_counter() - started,
        index=index,
    )


# ------------------------------------------------------------------------------------------ the index
def read_index(out_dir: str | os.PathLike) -> dict:
    """Load and validate ``out_dir/index.json`` (structure only; no shard is opened).

    Raises:
        ShardError: no index, invalid JSON, another format, or inconsistent fields (naming which).
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    path = os.path.join(out_dir, INDEX_NAME)
    if not os.path.isdir(out_dir):
        raise ShardError(out_dir, [(INDEX_NAME, "folder not found")])
    if not os.path.isfile(path):
        problem = "missing (not a packed-shard folder, or packing did not finish)"
        raise ShardError(out_dir, [(INDEX_NAME, problem)])
    try:
        with open(path) as fh:
            index = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ShardError(out_dir, [(INDEX_NAME, f"not valid JSON: {err}")]) from err

    def bad(problem: str) -> ShardError:
        return ShardError(out_dir, [(INDEX_NAME, problem)])

    if not isinstance(index, dict) or index.get("format") != FORMAT:
        found = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise bad(f"format is {found!r}, expected {FORMAT!r}")
    channels = index.get("channels")
    if channels not in (1, 3):
        raise bad(f"channels is {channels!r}, expected 1 or 3")
    size = index.get("image_size")
    if size is not None and not (
        isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)
    ):
        raise bad(f"image_size is {size!r}, expected null or [height, width]")
    shards = index.get("shards")
    if not isinstance(shards, list) or not shards:
        raise bad("lists no shards")
    seen: set[str] = set()
    for i, entry in enumerate(shards):
        if not isinstance(entry, dict):
            raise bad(f"shard entry {i} is not an object")
        name = entry.get("file")
        # A name with a separator could point outside the folder: never follow it.
        if not isinstance(name, str) or not _SHARD_RE.match(name) or "/" in name or os.sep in name:
            raise bad(f"shard entry {i} has an invalid file name {name!r}")
        if name in seen:
            raise bad(f"shard {name!r} is listed twice")
        seen.add(name)
        for key in ("records", "bytes"):
            value = entry.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise bad(f"shard {name!r}: {key} is {value!r}, expected a non-negative int")
        sha = entry.get("sha256")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise bad(f"shard {name!r}: sha256 is {sha!r}, expected 64 hex digits")
    total = sum(e["records"] for e in shards)
    if index.get("records") != total:
        raise bad(f"records is {index.get('records')!r} but the shards hold {total}")
    return index


def _check_files(out_dir: str, entries: Sequence[dict], level: VerifyLevel, progress: bool = False) -> None:
    """Existence, byte size and (``level="sha256"``) SHA-256 of ``entries``; ShardError listing all bad."""
    if level not in ("sha256", "size"):
        raise ValueError(f"verify must be 'sha256' or 'size', got {level!r}")
    problems: list[tuple[str, str]] = []
    iterator = entries
    if progress and level == "sha256":
        from tqdm import tqdm

        iterator = tqdm(entries, desc="checksums", unit="shard")
    for entry in iterator:
        name = entry["file"]
        path = os.path.join(out_dir, name)
        if not os.path.isfile(path):
            problems.append((name, "missing"))
            continue
        size = os.path.getsize(path)
        if size < entry["bytes"]:
            problems.append((name, f"truncated: {size} bytes, the index says {entry['bytes']}"))
            continue
        if size > entry["bytes"]:
            problems.append((name, f"size is {size} bytes, the index says {entry['bytes']} (file replaced?)"))
            continue
        if level == "sha256" and _file_sha256(path) != entry["sha256"]:
            problems.append((name, "SHA-256 mismatch: the file changed or is corrupted since packing"))
    if problems:
        raise ShardError(out_dir, problems)


def _shard_records(path: str) -> Iterator[tuple[int, bytes]]:
    """(record number, serialized bytes) of one shard; ValueError naming the record that is unreadable."""
    n = 0
    iterator = iter(tf.data.TFRecordDataset(path).as_numpy_iterator())
    while True:
        try:
            raw = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as err:  # TFRecord length/CRC-32C check failed
            raise ValueError(f"record {n} is unreadable ({type(err).__name__}: {err.message})") from err
        yield n, raw
        n += 1


def verify_shards(out_dir: str | os.PathLike, decode: bool = False, progress: bool = False) -> VerifyResult:
    """Check a packed folder; return what was checked or raise :class:`ShardError`.

    Checks ``index.json`` (format and consistency), then every shard's existence, byte size and SHA-256
    (all shards, every problem listed), then reads every shard: each record must pass TFRecord's CRC
    checks and parse as a tfad example, and the shard must hold the recorded number of records. With
    ``decode`` also every image, mask and ROI PNG must decode to its recorded shape and the image to its
    pixel CRC. Cost: one read of every byte (the SHA-256 pass; the parse pass then reads from the page
    cache when it fits); ``decode`` adds the PNG decoding (about one folder-pipeline pass).

    Raises:
        ShardError: naming the folder, the first bad file and what is wrong (missing, truncated,
            size/SHA-256 mismatch, record N unreadable/unparsable/undecodable, wrong record count).
    """
    started = time.perf_counter()
    out_dir = os.path.abspath(os.fspath(out_dir))
    index = read_index(out_dir)
    entries = index["shards"]
    _check_files(out_dir, entries, "sha256", progress)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=index["records"], desc="records", unit="rec")
    problems: list[tuple[str, str]] = []
    try:
        for entry in entries:
            name = entry["file"]
            count = 0
            try:
                for count, raw in _shard_records(os.path.join(out_dir, name)):
                    try:
                        parsed = _parse_example(raw)
                        _check_geometry(parsed, index)
                        if decode:
                            _decode_arrays(parsed, True, True)
                    except ValueError as err:
                        raise ValueError(f"record {count}: {err}") from err
                    if bar is not None:
                        bar.update(1)
                    count += 1
            except ValueError as err:
                problems.append((name, str(err)))
                continue
            if count != entry["records"]:
                problems.append((name, f"holds {count} records, the index says {entry['records']}"))
    finally:
        if bar is not None:
            bar.close()
    if problems:
        raise ShardError(out_dir, problems)
    return VerifyResult(
        out_dir=out_dir,
        shards=len(entries),
        records=index["records"],
        bytes=sum(e["bytes"] for e in entries),
        checks=["index", "size", "sha256", "records"] + (["decode"] if decode else []),
        seconds=time.perf_counter() - started,
        index=index,
    )


def iterate_examples(out_dir: str | os.PathLike, verify: bool = True) -> Iterator[ShardExample]:
    """Every stored example in index order (shard by shard, record by record), decoded.

    For tests and audits (one thread, no resizing): ``image`` is exactly the stored pixels. ``verify``
    first checks sizes and SHA-256 of every shard (:func:`verify_shards` without the parse pass).

    Raises:
        ShardError: a damaged shard or an undecodable record, naming the shard and record number.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    index = read_index(out_dir)
    if verify:
        _check_files(out_dir, index["shards"], "sha256")
    root = index.get("source", {}).get("root") or ""

    def absolute(rel: str) -> str | None:
        return os.path.normpath(os.path.join(root, rel)) if rel else None

    for entry in index["shards"]:
        name = entry["file"]
        count = 0
        try:
            for count, raw in _shard_records(os.path.join(out_dir, name)):
                try:
                    parsed = _parse_example(raw)
                    image, mask, roi = _decode_arrays(parsed, True, True)
                except ValueError as err:
                    raise ValueError(f"record {count}: {err}") from err
                record = ImageRecord(
                    path=absolute(parsed["path"]),
                    label=int(parsed["label"]),
                    defect_type=parsed["defect_type"],
                    mask_path=absolute(parsed["mask_path"]),
                    roi_path=absolute(parsed["roi_path"]),
                    region=parsed["region"],
                    product_id=parsed["product_id"],
                    run_id=parsed["run_id"],
                    frame=int(parsed["frame"]),
                    vial=int(parsed["vial"]),
                )
                yield ShardExample(
                    index=int(parsed["index"]),
                    image=image,
                    mask=mask,
                    roi=roi,
                    record=record,
                    source_path=parsed["path"],
                    source_shape=(int(parsed["source_height"]), int(parsed["source_width"])),
                    shard=name,
                    position=count,
                )
                count += 1
        except ValueError as err:
            raise ShardError(out_dir, [(name, str(err))]) from err
        if count != entry["records"]:
            raise ShardError(out_dir, [(name, f"holds {count} records, the index says {entry['records']}")])


# ------------------------------------------------------------------------------------------ tf.data
def make_shard_dataset(
    out_dir: str | os.PathLike,
    image_size: SizeArg = None,
    channels: int | None = None,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int | None = None,
    repeat: bool = False,
    on_corrupt: OnCorrupt = "skip",
    with_masks: bool = False,
    with_roi: bool = False,
    drop_remainder: bool = False,
    num_shards: int = 1,
    shard_index: int = 0,
    shuffle_buffer: int = 2048,
    cycle_length: int = 4,
    verify: VerifyLevel = "sha256",
    corrupt_counter: CorruptFileCounter | None = None,
    name: str = "dataset",
    start: int = 0,
) -> tf.data.Dataset:
    """Batches from a packed folder, element for element like :func:`tfad.data.pipeline.make_dataset`.

    Each element: ``"image"`` float32 [B,H,W,C] in [0,1]; ``"label"`` int32 [B]; ``"index"`` int64 [B]
    (the position in the record list given to :func:`pack_dataset`, i.e. make_dataset's ``index`` for
    the same records); with ``with_masks`` ``"mask"`` float32 [B,H,W,1] 0/1 (zeros when the record had
    none); with ``with_roi`` ``"roi"`` float32 [B,H,W,1] 0/1 (ones when none). Pixel values equal the
    folder pipeline's exactly. ``dataset.corrupt_counter`` records skipped records,
    ``dataset.records_per_pass`` is the number of examples this worker reads per pass,
    ``dataset.shard_files`` its shard files and ``dataset.shard_index_json`` the index.

    Args:
        image_size: int or (height, width); None = the packed size. A folder packed at a size reads at
            that size only (resampling twice would not equal the folder pipeline); one packed as decoded
            is resized here with the pipeline's own resize.
        channels: None or the packed number of channels (conversion at read time is not offered).
        shuffle: shuffles the order of this worker's shard files every pass (``seed``), reads
            ``cycle_length`` shards interleaved one example at a time, then shuffles through a buffer of
            ``shuffle_buffer`` serialized examples (seeded). Not a uniform permutation of the whole set
            like make_dataset's: pack with ``shuffle_seed`` so every shard is a random mix. Unshuffled,
            examples come in stored order, shard by shard (index order unless packed with
            ``shuffle_seed``; ``cycle_length`` shards are still read ahead in parallel).
        num_shards, shard_index: worker sharding by file: this reader gets shard files ``shard_index``,
            ``shard_index + num_shards``, ... of the index (for ``tf.distribute``:
            ``input_context.num_input_pipelines`` and ``input_context.input_pipeline_id``). Workers get
            disjoint examples whose union is the whole pack; their counts differ by up to one shard. With
            ``num_shards > 1`` tf.data auto-sharding is switched off (the data is already sharded).
        verify: before building, ``"sha256"`` (default) checks existence, size and SHA-256 of this
            worker's shards (reads each byte once more, once per call: SHA-256 runs at ~1 GB/s per core
            here, plus the read from storage), or
            ``"size"`` only existence and size (free). Either way each record's TFRecord CRC-32C is
            checked while reading and every shard must yield its recorded count, else iteration raises an
            error whose message contains ``ShardError`` and the shard file.
        on_corrupt: for a record whose stored bytes do not parse/decode (a writer bug or a hand-made
            shard): ``"skip"`` leaves it out and records ``"<shard path> record N"`` in the counter;
            ``"fail"`` stops iteration with an error whose message contains ``ShardError``, the shard and
            the record number. A damaged shard file (CRC, truncation, count) always stops iteration.
        start: skip this many examples of the (shuffled, repeated) stream before decoding anything (a
            resumed run); they are read but not decoded.
        drop_remainder, corrupt_counter, name: as make_dataset.

    Raises:
        ShardError: the index or one of this worker's shards fails the ``verify`` checks.
        DataError: ``image_size``/``channels`` incompatible with the pack; a worker with no shard file.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    if on_corrupt not in ("skip", "fail"):
        raise ValueError(f"on_corrupt must be 'skip' or 'fail', got {on_corrupt!r}")
    if not (isinstance(num_shards, int) and isinstance(shard_index, int) and 0 <= shard_index < num_shards):
        raise ValueError(f"need 0 <= shard_index < num_shards, got {shard_index} and {num_shards}")
    if batch_size < 1 or shuffle_buffer < 1 or cycle_length < 1 or start < 0:
        raise ValueError("batch_size, shuffle_buffer and cycle_length must be >= 1 and start >= 0")
    index = read_index(out_dir)
    packed_size = tuple(index["image_size"]) if index["image_size"] else None
    size = _size_pair(image_size) or packed_size
    if size is None:
        raise DataError(f"{out_dir!r} was packed at the decoded sizes: give image_size to read it")
    if packed_size is not None and size != packed_size:
        raise DataError(
            f"{out_dir!r} was packed at {packed_size[0]}x{packed_size[1]}, cannot read it at "
            f"{size[0]}x{size[1]} (repack, or pack without --image-size to resize at read time)"
        )
    if channels is None:
        channels = index["channels"]
    if channels != index["channels"]:
        raise DataError(f"{out_dir!r} was packed with {index['channels']} channel(s), asked for {channels}")
    height, width = size
    entries = index["shards"][shard_index::num_shards]
    if not entries:
        raise DataError(
            f"{out_dir!r} has {len(index['shards'])} shard file(s), fewer than the {num_shards} workers: "
            f"worker {shard_index} gets none (repack with a smaller shard size)"
        )
    _check_files(out_dir, entries, verify)
    paths = [os.path.join(out_dir, e["file"]) for e in entries]
    expected = [e["records"] for e in entries]
    records_per_pass = sum(expected)
    if records_per_pass == 0:
        raise DataError(f"{out_dir!r}: the shards of worker {shard_index} hold no records")
    counter = corrupt_counter or CorruptFileCounter(name)
    if counter.records_per_pass is None:
        counter.records_per_pass = records_per_pass

    def decode_chunk(shard_ids: np.ndarray, numbers: np.ndarray, raws: np.ndarray, ends: np.ndarray) -> list:
        images, masks, rois, labels, kept = [], [], [], [], []
        for shard_id, number, raw, end in zip(shard_ids, numbers, raws, ends, strict=True):
            shard_id, number = int(shard_id), int(number)
            if end:
                # End-of-shard marker: ``number`` records passed TFRecord's checks. Fewer means a damaged
                # file (reading stopped at the first bad record); never silently train on a part of it.
                if number != expected[shard_id]:
                    if not os.path.exists(paths[shard_id]):
                        what = "missing"
                    elif number < expected[shard_id]:
                        what = (
                            f"record {number} is unreadable (truncated, fails its CRC-32C, or is not there)"
                        )
                    else:
                        what = "holds more records than the index says"
                    problem = f"{what}; read {number} of {expected[shard_id]}"
                    raise ShardError(out_dir, [(entries[shard_id]["file"], problem)])
                continue
            try:
                parsed = _parse_example(raw)
                _check_geometry(parsed, index)
                image, mask, roi = _decode_arrays(parsed, with_masks, with_roi)
            except ValueError as err:
                counter.processed((f"{paths[shard_id]} record {number}", _one_line(err)))
                if on_corrupt == "fail":
                    problem = f"record {number}: {err}"
                    raise ShardError(out_dir, [(entries[shard_id]["file"], problem)]) from err
                continue
            counter.processed()
            source_shape = image.shape[:2]
            # The folder pipeline's own resize functions: the same pixels as decoding the files.
            image = resize_image(image, size)
            if with_masks:
                if mask is None:
                    mask = np.zeros((height, width, 1), np.uint8)
                elif source_shape != size:
                    mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)[:, :, None]
                masks.append(mask)
            if with_roi:
                if roi is None:
                    roi = np.ones((height, width, 1), np.uint8)
                elif source_shape != size:
                    roi = cv2.resize(roi, (width, height), interpolation=cv2.INTER_NEAREST)[:, :, None]
                rois.append(roi)
            images.append(image)
            labels.append(int(parsed["label"]))
            kept.append(int(parsed["index"]))

        def stack(arrays: list, depth: int) -> np.ndarray:
            return np.stack(arrays) if arrays else np.zeros((0, height, width, depth), np.uint8)

        outputs = [stack(images, channels), np.asarray(labels, np.int32), np.asarray(kept, np.int64)]
        if with_masks:
            outputs.append(stack(masks, 1))
        if with_roi:
            outputs.append(stack(rois, 1))
        return outputs

    tout = [tf.uint8, tf.int32, tf.int64] + [tf.uint8] * (int(with_masks) + int(with_roi))
    paths_t = tf.constant(paths)

    def read_shard(shard_id: tf.Tensor) -> tf.data.Dataset:
        # Records of one shard, numbered, then an end marker carrying how many were read: TFRecord's
        # errors do not name the file, so they end the shard (ignore_errors) and the marker's count is
        # checked against the index in decode_chunk, which names it.
        records = tf.data.TFRecordDataset(paths_t[shard_id]).ignore_errors()
        records = records.map(lambda raw: (raw, tf.constant(False)))
        marker = tf.data.Dataset.from_tensors((tf.constant(b""), tf.constant(True)))

        def number(count: tf.Tensor, element: tuple) -> tuple:
            raw, end = element
            return count + tf.cast(tf.logical_not(end), tf.int64), (shard_id, count, raw, end)

        return records.concatenate(marker).scan(tf.constant(0, tf.int64), number)

    files = tf.data.Dataset.range(len(paths))
    if shuffle:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        files = files.repeat()
    # Unshuffled, a block longer than any shard keeps index order while cycle_length files are read ahead.
    block = 1 if shuffle else max(expected) + 1
    ds = files.interleave(
        read_shard,
        cycle_length=min(cycle_length, len(paths)),
        block_length=block,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if shuffle:
        buffer_seed = None if seed is None else seed + 1  # distinct from the file-order stream
        ds = ds.shuffle(shuffle_buffer, seed=buffer_seed, reshuffle_each_iteration=True)
    if start:

        def seen(count: tf.Tensor, element: tuple) -> tuple:
            return count + tf.cast(tf.logical_not(element[3]), tf.int64), (count, element)

        # Skip examples, never end markers: their checks must still run.
        ds = ds.scan(tf.constant(0, tf.int64), seen)
        ds = ds.filter(lambda count, element: tf.logical_or(element[3], count >= start))
        ds = ds.map(lambda count, element: element)

    def decode_tf(shard_ids: tf.Tensor, numbers: tf.Tensor, raws: tf.Tensor, ends: tf.Tensor) -> dict:
        outputs = tf.numpy_function(decode_chunk, [shard_ids, numbers, raws, ends], tout, name="decode_shard")
        return chunk_samples(outputs, (height, width, channels), with_masks, with_roi)

    ds = ds.batch(DECODE_CHUNK).map(decode_tf, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.unbatch().batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    if num_shards > 1:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        ds = ds.with_options(options)
    ds.corrupt_counter = counter
    ds.records_per_pass = records_per_pass
    ds.shard_files = paths
    ds.shard_index_json = index
    return ds
