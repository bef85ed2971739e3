"""Packing: one split of a data set as checksummed TFRecord shards plus ``index.json``
(:func:`pack_dataset`; the format: :mod:`tfad.data.shard_format`, reading: :mod:`tfad.data.shards`)."""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tfad import __version__
from tfad.data.decode import decode_image_file, load_binary_mask, resize_image
from tfad.data.errors import CorruptImageError, DataError
from tfad.data.records import ImageRecord, fingerprint
from tfad.data.shard_format import (
    DEFAULT_SHARD_SIZE,
    EXAMPLE_FEATURES,
    FORMAT,
    INDEX_NAME,
    SHARD_RE,
    SPLIT_RE,
    TMP_SUFFIX,
    OnCorrupt,
    SizeArg,
    bytes_feature,
    encode_png,
    file_sha256,
    int_feature,
    size_pair,
    source_png_if_identical,
)

log = logging.getLogger(__name__)


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


# -------------------------------------------------------------------------------------------- packing
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
        or bool(SHARD_RE.match(name))
        or (name.startswith(".") and name.endswith(TMP_SUFFIX))
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
            (then :func:`~tfad.data.shards.make_shard_dataset` can still resize to any size,
            bit-identically to the folder pipeline; packed at a size, it reads at that size only).
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
    if not SPLIT_RE.match(split):
        raise ValueError(f"split must be letters, digits, '_', '.' or '-', got {split!r}")
    size = size_pair(image_size)
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
        return encode_png(load_binary_mask(path, target, source_shape))

    def encode(position: int) -> bytes:
        record = records[position]
        decoded = decode_image_file(record.path, channels)
        source_shape = decoded.shape[:2]
        image = resize_image(decoded, size) if size else decoded
        target = image.shape[:2]
        image_png = source_png_if_identical(record.path, image) if image is decoded else None
        mask = b""
        if record.mask_path:
            mask = encode_png(load_binary_mask(record.mask_path, target, source_shape))
        roi = roi_png(os.path.abspath(record.roi_path), target, source_shape) if record.roi_path else b""
        feature = {
            "image": bytes_feature(image_png or encode_png(image)),
            "height": int_feature(target[0]),
            "width": int_feature(target[1]),
            "channels": int_feature(channels),
            "image_crc32": int_feature(zlib.crc32(image.tobytes())),
            "source_height": int_feature(source_shape[0]),
            "source_width": int_feature(source_shape[1]),
            "mask": bytes_feature(mask),
            "roi": bytes_feature(roi),
            "index": int_feature(position),
            "label": int_feature(record.label),
            "defect_type": bytes_feature(record.defect_type),
            "region": bytes_feature(record.region),
            "product_id": bytes_feature(record.product_id),
            "run_id": bytes_feature(record.run_id),
            "frame": int_feature(record.frame),
            "vial": int_feature(record.vial),
            "path": bytes_feature(_relpath(record.path, base)),
            "mask_path": bytes_feature(_relpath(record.mask_path, base)),
            "roi_path": bytes_feature(_relpath(record.roi_path, base)),
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
        entries.append({"records": in_shard, "bytes": os.path.getsize(path), "sha256": file_sha256(path)})
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
                    temp_paths.append(os.path.join(out_dir, f".{split}-{len(temp_paths):05d}{TMP_SUFFIX}"))
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
