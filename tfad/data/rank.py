"""Multi-frame rank filter: the replacement of Halcon ``rank_image`` over an acquisition's frames.

For the frames of one acquisition (same run, product, vial and region), the per-pixel minimum (rank 1)
and maximum (rank F) images show what moves between frames: a sinking particle leaves a dark trail in
the minimum image. The line uses them to enlarge the training set: each acquisition gives its frames plus
two rank images (docs/data.md, "Rank images").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfad.data.errors import CorruptImageError, DataError
from tfad.data.pipeline import CorruptFileCounter, OnCorrupt, check_image_size, load_sample_arrays
from tfad.data.records import ImageRecord

AcquisitionKey = tuple[str, str, int, str]  # run_id, product_id, vial, region


def rank_image(frames: tf.Tensor, rank: int | tf.Tensor) -> tf.Tensor:
    """Per-pixel order statistic over the frames axis: ``frames`` [F, H, W, C] -> [H, W, C].

    ``rank`` 1 is the minimum, F the maximum, anything between the rank-th smallest value (ties keep
    their value; the result is always one of the frame values at that pixel). Same dtype as ``frames``.

    Raises:
        ValueError: ``rank`` outside 1..F when both are known statically (else a TF assertion fails).
    """
    frames = tf.convert_to_tensor(frames)
    if frames.shape.rank != 4:
        raise ValueError(f"frames must be [F, H, W, C], got shape {frames.shape}")
    n_frames = frames.shape[0]
    if isinstance(rank, int | np.integer):
        rank = int(rank)
        if rank < 1 or (n_frames is not None and rank > n_frames):
            raise ValueError(f"rank must be in 1..{n_frames if n_frames is not None else 'F'}, got {rank}")
        if rank == 1:
            return tf.reduce_min(frames, axis=0)
        if n_frames is not None and rank == n_frames:
            return tf.reduce_max(frames, axis=0)
    rank = tf.convert_to_tensor(rank, tf.int32)
    count = tf.shape(frames)[0]
    with tf.control_dependencies(
        [
            tf.debugging.assert_greater_equal(rank, 1, message="rank must be >= 1"),
            tf.debugging.assert_less_equal(rank, count, message="rank must be <= number of frames"),
        ]
    ):
        # tf.sort has no uint8 kernel: sort in float32 (exact for 8/16-bit integers) and cast back.
        ordered = tf.sort(tf.cast(frames, tf.float32), axis=0)
        return tf.cast(tf.gather(ordered, rank - 1, axis=0), frames.dtype)


def rank_images(frames: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(min_image, max_image)`` over the frames axis of ``frames`` [F, H, W, C] (rank 1 and rank F)."""
    frames = tf.convert_to_tensor(frames)
    return tf.reduce_min(frames, axis=0), tf.reduce_max(frames, axis=0)


def group_acquisitions(records: Sequence[ImageRecord]) -> dict[AcquisitionKey, list[int]]:
    """Record indices grouped by (run_id, product_id, vial, region), each group sorted by frame.

    Raises:
        DataError: two records of one acquisition have the same frame number (names both paths).
    """
    groups: dict[AcquisitionKey, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault((r.run_id, r.product_id, r.vial, r.region), []).append(i)
    for indices in groups.values():
        indices.sort(key=lambda i: records[i].frame)
        for a, b in zip(indices, indices[1:], strict=False):
            if records[a].frame == records[b].frame:
                raise DataError(
                    f"two images of frame {records[a].frame}: {records[a].path!r}, {records[b].path!r}"
                )
    return dict(sorted(groups.items()))


def make_rank_dataset(
    records: Sequence[ImageRecord],
    image_size: tuple[int, int],
    channels: int = 1,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int | None = None,
    repeat: bool = False,
    on_corrupt: OnCorrupt = "skip",
    with_masks: bool = False,
    with_roi: bool = False,
    include_frames: bool = True,
    drop_remainder: bool = False,
    corrupt_counter: CorruptFileCounter | None = None,
    name: str = "rank",
) -> tf.data.Dataset:
    """Like :func:`tfad.data.pipeline.make_dataset`, per acquisition: its frames then its min and max image.

    Acquisitions are :func:`group_acquisitions` groups (shuffled as units when ``shuffle``); the elements
    of one acquisition stay together in the stream, so shuffle again downstream if batches must mix
    them. Rank images have ``index`` -1, ``label`` the maximum of the frames' labels, and ``mask``/``roi``
    the union of the frames' masks/ROIs. An acquisition with fewer than 2 readable frames yields no rank
    images. Corrupt files: as in ``make_dataset`` (a corrupt frame is left out of the rank images).
    With ``include_frames=False`` only the rank images are produced.
    """
    if not records:
        raise DataError(f"{name}: no records to build a dataset from")
    if on_corrupt not in ("skip", "fail"):
        raise ValueError(f"on_corrupt must be 'skip' or 'fail', got {on_corrupt!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    height, width = check_image_size(image_size)
    records = list(records)
    groups = list(group_acquisitions(records).values())
    counter = corrupt_counter or CorruptFileCounter(name)
    if counter.records_per_pass is None:
        counter.records_per_pass = len(records)

    def load_group(group_index: np.int64) -> list[np.ndarray]:
        images, masks, rois, labels, indices = [], [], [], [], []
        for i in groups[int(group_index)]:
            try:
                image, mask, roi = load_sample_arrays(records[i], (height, width), channels, with_masks, True)
                counter.processed()
            except CorruptImageError as err:
                counter.processed((err.path, err.reason))
                if on_corrupt == "fail":
                    raise
                continue
            images.append(image)
            masks.append(mask if with_masks else np.zeros((height, width, 1), np.uint8))
            rois.append(roi)
            labels.append(records[i].label)
            indices.append(i)

        def stack(arrays: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
            return np.stack(arrays) if arrays else np.zeros((0, *shape), np.uint8)

        return [
            stack(images, (height, width, channels)),
            stack(masks, (height, width, 1)),
            stack(rois, (height, width, 1)),
            np.asarray(labels, np.int32),
            np.asarray(indices, np.int64),
        ]

    def to_elements(group_index: tf.Tensor) -> dict[str, tf.Tensor]:
        images, masks, rois, labels, indices = tf.numpy_function(
            load_group, [group_index], [tf.uint8, tf.uint8, tf.uint8, tf.int32, tf.int64], name="decode_group"
        )
        images.set_shape((None, height, width, channels))
        masks.set_shape((None, height, width, 1))
        rois.set_shape((None, height, width, 1))
        labels.set_shape((None,))
        indices.set_shape((None,))
        n_rank = tf.where(tf.shape(images)[0] >= 2, 2, 0)  # rank images need at least two frames
        min_image, max_image = rank_images(images)
        rank_part = {
            "image": tf.stack([min_image, max_image])[:n_rank],
            "mask": tf.repeat(tf.reduce_max(masks, axis=0)[None], 2, axis=0)[:n_rank],
            "roi": tf.repeat(tf.reduce_max(rois, axis=0)[None], 2, axis=0)[:n_rank],
            "label": tf.repeat(tf.reduce_max(tf.concat([labels, [0]], 0)), 2)[:n_rank],
            "index": tf.constant([-1, -1], tf.int64)[:n_rank],
        }
        frame_part = {"image": images, "mask": masks, "roi": rois, "label": labels, "index": indices}
        if not include_frames:
            return rank_part
        return {k: tf.concat([frame_part[k], rank_part[k]], axis=0) for k in frame_part}

    def to_float(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = {
            "image": tf.cast(batch["image"], tf.float32) / 255.0,
            "label": batch["label"],
            "index": batch["index"],
        }
        if with_masks:
            out["mask"] = tf.cast(batch["mask"], tf.float32)
        if with_roi:
            out["roi"] = tf.cast(batch["roi"], tf.float32)
        return out

    ds = tf.data.Dataset.range(len(groups))
    if shuffle:
        ds = ds.shuffle(len(groups), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.map(to_elements, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.unbatch().batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    ds.corrupt_counter = counter
    return ds
