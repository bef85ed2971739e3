"""Packed shards: one split of a data set as checksummed TFRecord files, for training at scale. This
module reads them; :mod:`tfad.data.packing` writes them, :mod:`tfad.data.shard_format` is their format.

Millions of small image files are slow on shared cluster storage; :func:`~tfad.data.packing.pack_dataset`
streams a record list into a few large files (``<split>-00000-of-000NN.tfrecord``, ``shard_size`` images
each) plus ``index.json`` (format ``"tfad-shards/1"``: per shard its record count, byte size and SHA-256;
the source fingerprint, counts and the corrupt files that were skipped). :func:`make_shard_dataset` reads
them back as batches with exactly the keys, dtypes, shapes and values of
:func:`tfad.data.pipeline.make_dataset`, so the training input pipeline can take either.
:func:`verify_shards` checks a packed folder and :func:`iterate_examples` yields the stored examples in
order (tests, audits).

Pixels are decoded once, at packing time, by :mod:`tfad.data.decode` (the folder pipeline's functions)
and stored as lossless PNG, so a shard sample equals the folder sample bit for bit. Format, integrity
checks and per-worker sharding: docs/data.md, "Packed shards (TFRecords)".
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import tensorflow as tf

from tfad.data.corrupt import CorruptFileCounter
from tfad.data.decode import resize_image
from tfad.data.errors import DataError
from tfad.data.pipeline import DECODE_CHUNK, chunk_samples, to_float
from tfad.data.records import ImageRecord
from tfad.data.shard_format import (
    FORMAT,
    INDEX_NAME,
    SHARD_RE,
    OnCorrupt,
    ShardError,
    SizeArg,
    VerifyLevel,
    check_geometry,
    decode_arrays,
    file_sha256,
    one_line,
    parse_example,
    size_pair,
)

log = logging.getLogger(__name__)


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
    :func:`~tfad.data.packing.pack_dataset` (the ``"index"`` of the batches).
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
        if not isinstance(name, str) or not SHARD_RE.match(name) or "/" in name or os.sep in name:
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
        if level == "sha256" and file_sha256(path) != entry["sha256"]:
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
                        parsed = parse_example(raw)
                        check_geometry(parsed, index)
                        if decode:
                            decode_arrays(parsed, True, True)
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
                    parsed = parse_example(raw)
                    image, mask, roi = decode_arrays(parsed, True, True)
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
    (the position in the record list given to :func:`~tfad.data.packing.pack_dataset`, i.e. make_dataset's
    ``index`` for the same records); with ``with_masks`` ``"mask"`` float32 [B,H,W,1] 0/1 (zeros when the
    record had none); with ``with_roi`` ``"roi"`` float32 [B,H,W,1] 0/1 (ones when none). Pixel values
    equal the folder pipeline's exactly. ``dataset.corrupt_counter`` records skipped records,
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
    size = size_pair(image_size) or packed_size
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
                parsed = parse_example(raw)
                check_geometry(parsed, index)
                image, mask, roi = decode_arrays(parsed, with_masks, with_roi)
            except ValueError as err:
                counter.processed((f"{paths[shard_id]} record {number}", one_line(err)))
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
