"""The training input pipeline: streamed images -> augmentation -> synthetic anomalies P_q -> batches.

Decoding, resizing and corrupt-file handling are `tfad.data.pipeline`'s (image folders) or
`tfad.data.shards`'s (packed TFRecord shards, ``data.shards``); this module adds what only training needs.
Randomness is stateless and keyed by (seed, position in the sample stream), so a run is reproducible and a
resumed run continues the stream where the interrupted one stopped.

Under ``tf.distribute`` every worker runs its own input pipeline (``num_pipelines``, ``pipeline_id``): it
reads its share of the data (every ``num_pipelines``-th record of the list, or of the shard files), and
sample ``k`` of pipeline ``i`` is keyed by the global position ``k * num_pipelines + i``, so no two workers
draw the same augmentation or P_q. With one pipeline this is exactly the single-process stream.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfad.data.pipeline import CorruptFileCounter, make_dataset
from tfad.data.records import ImageRecord, class_indices
from tfad.data.shard_format import ShardError
from tfad.data.shards import make_shard_dataset, read_index
from tfad.schema import IMAGE_SUFFIXES, Config
from tfad.synthesis.anomalies import AnomalySynthesisConfig, AnomalySynthesizer
from tfad.trainers.augment import random_rotate_flip


def build_synthesizer(config: Config) -> AnomalySynthesizer:
    """P_q from the config, with the optional texture folder as anomaly source."""
    s = config.synthesis
    textures = None
    if s.texture_dir:
        from pathlib import Path

        folder = Path(s.texture_dir)
        if not folder.is_dir():
            raise FileNotFoundError(2, "synthesis.texture_dir is not a folder", str(folder))
        textures = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not textures:
            raise ValueError(f"synthesis.texture_dir {folder} holds no PNG/JPEG/BMP/GIF images")
    return AnomalySynthesizer(
        AnomalySynthesisConfig(s.probability, s.beta_min, s.beta_max, s.max_scale_exponent), textures
    )


def _check_pipeline(num_pipelines: int, pipeline_id: int) -> None:
    if not (
        isinstance(num_pipelines, int) and isinstance(pipeline_id, int) and 0 <= pipeline_id < num_pipelines
    ):
        raise ValueError(f"need 0 <= pipeline_id < num_pipelines, got {pipeline_id} and {num_pipelines}")


def _samples(
    records: Sequence[ImageRecord] | None,
    config: Config,
    shards: str | None,
    batch_size: int,
    start_sample: int,
    corrupt_counter: CorruptFileCounter | None,
    name: str,
    num_pipelines: int,
    pipeline_id: int,
    with_roi: bool = False,
    with_masks: bool = False,
) -> tf.data.Dataset:
    """This pipeline's endless, shuffled stream of single samples (``make_dataset`` elements, unbatched),
    from its share of ``records`` or of the shard files of ``shards``, starting at ``start_sample``."""
    size = config.data.image_size
    common = dict(
        batch_size=batch_size,
        shuffle=True,
        seed=config.training.seed,
        repeat=True,
        on_corrupt=config.data.on_corrupt,
        corrupt_counter=corrupt_counter,
        name=name,
        start=start_sample,
        with_roi=with_roi,
        with_masks=with_masks,
    )
    if shards is not None:
        images = make_shard_dataset(
            shards,
            (size, size),
            config.data.channels,
            num_shards=num_pipelines,
            shard_index=pipeline_id,
            **common,
        )
    else:
        if records is None:
            raise ValueError("give records or shards")
        mine = list(records)[pipeline_id::num_pipelines]
        images = make_dataset(mine, (size, size), channels=config.data.channels, **common)
    return images.unbatch()


def _sample_key(seed: int, position: tf.Tensor, num_pipelines: int, pipeline_id: int) -> tf.Tensor:
    # The global position in the cluster's sample stream: unique over workers, = position with one pipeline.
    if num_pipelines > 1:
        position = position * num_pipelines + pipeline_id
    return tf.stack([tf.constant(seed, tf.int64), position])


def training_dataset(
    records: Sequence[ImageRecord] | None,
    config: Config,
    start_sample: int = 0,
    augment: bool = True,
    corrupt_counter: CorruptFileCounter | None = None,
    name: str = "train",
    with_roi: bool = False,
    *,
    shards: str | None = None,
    batch_size: int | None = None,
    num_pipelines: int = 1,
    pipeline_id: int = 0,
) -> tf.data.Dataset:
    """Endless batches of ``{"image": X*, "target": X, "noise_mask", "noise", "beta"}`` (and ``"roi"``
    ``[B, H, W, 1]`` 0/1, ones where a record has no ROI mask, with ``with_roi``).

    Args:
        records: the images (folders); ignored when ``shards`` is given.
        start_sample: position of the first sample in this pipeline's stream (``steps_done * batch`` per
            pipeline when resuming), so that augmentation and P_q draws continue instead of repeating.
        augment: rotation/vertical flip (off for validation); the ROI is rotated/flipped with its image.
        shards: a packed folder (``tfad datasets pack``) to read instead of ``records``.
        batch_size: the batch this pipeline yields (default ``training.batch_size``; under a strategy the
            per-replica batch).
        num_pipelines, pipeline_id: this input pipeline's share of the data (one per worker).
    """
    _check_pipeline(num_pipelines, pipeline_id)
    seed = config.training.seed
    batch_size = batch_size or config.training.batch_size
    synthesizer = build_synthesizer(config)
    images = _samples(
        records, config, shards, batch_size, start_sample, corrupt_counter, name, num_pipelines, pipeline_id,
        with_roi=with_roi,
    )  # fmt: skip

    def perturb(position: tf.Tensor, sample: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        key = _sample_key(seed, position, num_pipelines, pipeline_id)
        seeds = tf.random.experimental.stateless_split(key, num=2)
        views = {"image": sample["image"]}
        if with_roi:
            views["roi"] = sample["roi"]
        if augment:
            views = random_rotate_flip(
                views, seeds[0], config.augment.max_rotation, config.augment.vertical_flip
            )
        out = synthesizer(views["image"], seeds[1])
        out.pop("applied")
        if with_roi:
            out["roi"] = views["roi"]
        return out

    ds = images.enumerate(start=start_sample).map(perturb, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def packed_records(out_dir: str) -> dict[int, ImageRecord]:
    """The labelling of every example of a packed folder, by its stored ``index`` (no image is decoded).

    For the supervised families, whose batches need each example's class (its defect type), which the
    shard reader does not carry. Reads every shard once (the metadata is in the same records as the
    pixels); TFRecord's CRC checks every record. Paths are the source paths at packing time.

    Raises:
        ShardError: a damaged index or shard (see :func:`tfad.data.shards.make_shard_dataset`).
    """
    import os

    out_dir = os.path.abspath(out_dir)
    index = read_index(out_dir)
    root = (index.get("source") or {}).get("root") or ""
    ints = ("index", "label", "frame", "vial")
    strings = ("defect_type", "region", "product_id", "run_id", "path")
    spec = {k: tf.io.FixedLenFeature([], tf.int64) for k in ints}
    spec.update({k: tf.io.FixedLenFeature([], tf.string) for k in strings})
    out: dict[int, ImageRecord] = {}
    for entry in index["shards"]:
        path = os.path.join(out_dir, entry["file"])
        ds = tf.data.TFRecordDataset(path).map(lambda raw: tf.io.parse_single_example(raw, spec)).batch(1024)
        count = 0
        try:
            for batch in ds.as_numpy_iterator():
                for i in range(len(batch["index"])):
                    rel = batch["path"][i].decode()
                    out[int(batch["index"][i])] = ImageRecord(
                        path=os.path.normpath(os.path.join(root, rel)),
                        label=int(batch["label"][i]),
                        defect_type=batch["defect_type"][i].decode(),
                        region=batch["region"][i].decode(),
                        product_id=batch["product_id"][i].decode(),
                        run_id=batch["run_id"][i].decode(),
                        frame=int(batch["frame"][i]),
                        vial=int(batch["vial"][i]),
                    )
                    count += 1
        except tf.errors.OpError as err:
            raise ShardError(
                out_dir, [(entry["file"], f"unreadable after {count} records: {err.message}")]
            ) from err
        if count != entry["records"]:
            raise ShardError(
                out_dir, [(entry["file"], f"holds {count} records, the index says {entry['records']}")]
            )
    return out


def class_table(records_by_index: dict[int, ImageRecord], class_names: Sequence[str]) -> np.ndarray:
    """int32 class of every stored index of a pack (see :func:`packed_records`; absent indices: 0)."""
    table = np.zeros(max(records_by_index, default=-1) + 1, np.int32)
    keys = sorted(records_by_index)
    table[keys] = class_indices([records_by_index[k] for k in keys], class_names)
    return table


def supervised_dataset(
    records: Sequence[ImageRecord] | None,
    config: Config,
    class_names: Sequence[str],
    start_sample: int = 0,
    augment: bool = True,
    corrupt_counter: CorruptFileCounter | None = None,
    name: str = "train",
    *,
    shards: str | None = None,
    classes_by_index: np.ndarray | None = None,
    batch_size: int | None = None,
    num_pipelines: int = 1,
    pipeline_id: int = 0,
) -> tf.data.Dataset:
    """Endless batches of labelled samples for the supervised families:
    ``{"image" [B,H,W,C], "class" int32 [B], "mask" [B,H,W,1] 0/1, "synthetic" bool [B]}``.

    A record's class comes from its label and defect type (:func:`class_indices`); its mask is its mask
    file (zeros for good images or when missing). With ``supervised.synthetic_probability`` p > 0, a good
    image becomes, with probability p, a synthetic defect: P_q (``synthesis.*``, always applied) perturbs
    it, its class is ``"synthetic"`` (the last class) and its mask the Perlin mask. A draw whose Perlin
    mask is empty stays good (no anomaly was made). Seeded and resumable like :func:`training_dataset`
    (whose ``shards``, ``batch_size``, ``num_pipelines`` and ``pipeline_id`` it shares); with ``shards``,
    ``classes_by_index`` is the class of every stored index (:func:`class_table`).
    """
    import dataclasses

    _check_pipeline(num_pipelines, pipeline_id)
    seed = config.training.seed
    batch_size = batch_size or config.training.batch_size
    p_synthetic = config.supervised.synthetic_probability
    if p_synthetic > 0 and class_names[-1] != "synthetic":
        raise ValueError(
            "supervised.synthetic_probability > 0 needs 'synthetic' as the last class, got "
            f"{list(class_names)}"
        )
    synthesizer = build_synthesizer(
        dataclasses.replace(config, synthesis=dataclasses.replace(config.synthesis, probability=1.0))
    )
    if shards is not None:
        if classes_by_index is None:
            raise ValueError("supervised_dataset(shards=...) needs classes_by_index (class_table)")
        table = np.asarray(classes_by_index, np.int32)
    else:
        # "index" is the position in this pipeline's share of the records (make_dataset's convention)
        table = np.asarray(class_indices(list(records)[pipeline_id::num_pipelines], class_names), np.int32)
    classes = tf.constant(table, tf.int32)
    synthetic_class = len(class_names) - 1
    images = _samples(
        records, config, shards, batch_size, start_sample, corrupt_counter, name, num_pipelines, pipeline_id,
        with_masks=True,
    )  # fmt: skip

    def label(position: tf.Tensor, sample: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        key = _sample_key(seed, position, num_pipelines, pipeline_id)
        seeds = tf.random.experimental.stateless_split(key, num=3)
        views = {"image": sample["image"], "mask": sample["mask"]}
        if augment:
            views = random_rotate_flip(
                views, seeds[0], config.augment.max_rotation, config.augment.vertical_flip
            )
        image, mask = views["image"], views["mask"]
        klass = tf.gather(classes, sample["index"])
        synthetic = tf.constant(False)
        if p_synthetic > 0:
            out = synthesizer(image, seeds[1])
            draw = tf.random.stateless_uniform([], seed=seeds[2]) < p_synthetic
            synthetic = (klass == 0) & draw & (tf.reduce_max(out["noise_mask"]) > 0)
            image = tf.where(synthetic, out["image"], image)
            mask = tf.where(synthetic, out["noise_mask"], mask)
            klass = tf.where(synthetic, synthetic_class, klass)
        return {"image": image, "class": klass, "mask": mask, "synthetic": synthetic}

    ds = images.enumerate(start=start_sample).map(label, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
