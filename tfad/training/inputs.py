"""The training input pipeline: streamed images -> augmentation -> synthetic anomalies P_q -> batches.

Decoding, resizing and corrupt-file handling are `tfad.data.pipeline`'s; this module adds what only
training needs. Randomness is stateless and keyed by (seed, position in the sample stream), so a run
is reproducible and a resumed run continues the stream where the interrupted one stopped.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from tfad.config import Config
from tfad.data.pipeline import CorruptFileCounter, make_dataset
from tfad.data.records import ImageRecord
from tfad.synthesis.anomalies import AnomalySynthesisConfig, AnomalySynthesizer
from tfad.training.augment import random_rotate_flip

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def build_synthesizer(config: Config) -> AnomalySynthesizer:
    """P_q from the config, with the optional texture folder as anomaly source."""
    s = config.synthesis
    textures = None
    if s.texture_dir:
        from pathlib import Path

        folder = Path(s.texture_dir)
        if not folder.is_dir():
            raise FileNotFoundError(2, "synthesis.texture_dir is not a folder", str(folder))
        textures = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not textures:
            raise ValueError(f"synthesis.texture_dir {folder} holds no PNG/JPEG/BMP/GIF images")
    return AnomalySynthesizer(
        AnomalySynthesisConfig(s.probability, s.beta_min, s.beta_max, s.max_scale_exponent), textures
    )


def training_dataset(
    records: Sequence[ImageRecord],
    config: Config,
    start_sample: int = 0,
    augment: bool = True,
    corrupt_counter: CorruptFileCounter | None = None,
    name: str = "train",
    with_roi: bool = False,
) -> tf.data.Dataset:
    """Endless batches of ``{"image": X*, "target": X, "noise_mask", "noise", "beta"}`` (and ``"roi"``
    ``[B, H, W, 1]`` 0/1, ones where a record has no ROI mask, with ``with_roi``).

    Args:
        start_sample: position of the first sample in the stream (``steps_done * batch_size`` when
            resuming), so that augmentation and P_q draws continue instead of repeating.
        augment: rotation/vertical flip (off for validation); the ROI is rotated/flipped with its image.
    """
    size = config.data.image_size
    seed = config.training.seed
    batch_size = config.training.batch_size
    synthesizer = build_synthesizer(config)
    images = make_dataset(
        records,
        (size, size),
        channels=config.data.channels,
        batch_size=batch_size,
        shuffle=True,
        seed=seed,
        repeat=True,
        on_corrupt=config.data.on_corrupt,
        corrupt_counter=corrupt_counter,
        name=name,
        start=start_sample,
        with_roi=with_roi,
    ).unbatch()

    def perturb(position: tf.Tensor, sample: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        key = tf.stack([tf.constant(seed, tf.int64), position])
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


def class_indices(records: Sequence[ImageRecord], class_names: Sequence[str]) -> list[int]:
    """Each record's class: 0 (``class_names[0]``, "good") for good images, else its defect type's index.

    Raises ValueError naming a defect type that is not one of ``class_names``.
    """
    from tfad.data.records import LABEL_GOOD

    lookup = {name: i for i, name in enumerate(class_names)}
    out = []
    for record in records:
        if record.label == LABEL_GOOD:
            out.append(0)
        elif record.defect_type in lookup and lookup[record.defect_type] != 0:
            out.append(lookup[record.defect_type])
        else:
            raise ValueError(
                f"{record.path}: defect type {record.defect_type!r} is not one of the classes "
                f"{list(class_names)} (supervised.classes)"
            )
    return out


def supervised_dataset(
    records: Sequence[ImageRecord],
    config: Config,
    class_names: Sequence[str],
    start_sample: int = 0,
    augment: bool = True,
    corrupt_counter: CorruptFileCounter | None = None,
    name: str = "train",
) -> tf.data.Dataset:
    """Endless batches of labelled samples for the supervised families:
    ``{"image" [B,H,W,C], "class" int32 [B], "mask" [B,H,W,1] 0/1, "synthetic" bool [B]}``.

    A record's class comes from its label and defect type (:func:`class_indices`); its mask is its mask
    file (zeros for good images or when missing). With ``supervised.synthetic_probability`` p > 0, a good
    image becomes, with probability p, a synthetic defect: P_q (``synthesis.*``, always applied) perturbs
    it, its class is ``"synthetic"`` (the last class) and its mask the Perlin mask. A draw whose Perlin
    mask is empty stays good (no anomaly was made). Seeded and resumable like :func:`training_dataset`.
    """
    import dataclasses

    size = config.data.image_size
    seed = config.training.seed
    batch_size = config.training.batch_size
    p_synthetic = config.supervised.synthetic_probability
    if p_synthetic > 0 and class_names[-1] != "synthetic":
        raise ValueError(
            "supervised.synthetic_probability > 0 needs 'synthetic' as the last class, got "
            f"{list(class_names)}"
        )
    synthesizer = build_synthesizer(
        dataclasses.replace(config, synthesis=dataclasses.replace(config.synthesis, probability=1.0))
    )
    classes = tf.constant(class_indices(records, class_names), tf.int32)
    synthetic_class = len(class_names) - 1
    images = make_dataset(
        records,
        (size, size),
        channels=config.data.channels,
        batch_size=batch_size,
        shuffle=True,
        seed=seed,
        repeat=True,
        on_corrupt=config.data.on_corrupt,
        corrupt_counter=corrupt_counter,
        name=name,
        start=start_sample,
        with_masks=True,
    ).unbatch()

    def label(position: tf.Tensor, sample: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        key = tf.stack([tf.constant(seed, tf.int64), position])
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
