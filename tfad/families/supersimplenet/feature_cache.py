"""SuperSimpleNet's on-disk cache of backbone features, and the ``tfad fit`` streams read from it.

The backbone is frozen and, without geometric augmentation, an image's features never change: they are
computed once (one pass with a progress bar) and stored as float16 ``[n, g, g, D]`` in the run directory
(``feature_cache/``), with the grid masks and labels. A training step then reads a batch of features instead
of decoding and running the backbone: the heads are all that trains. Cost: ``g * g * D * 2`` bytes per
image (``bytes_per_image``; the ``line`` preset: 32 x 32 x 152 x 2 = 311 296 bytes). The file name carries a
digest of the images (paths, sizes, modification times) and of the feature knobs, so a changed dataset or
architecture is a new cache, and a resumed run reuses its own.

The cache is used with one input pipeline (not under ``--strategy`` mirrored / multi-worker, whose workers
each read their own share of the images; they use the image streams) and with folders (not packed shards).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfad.data.corrupt import CorruptFileCounter
from tfad.data.pipeline import make_dataset
from tfad.data.records import ImageRecord

log = logging.getLogger(__name__)

CACHE_DIR = "feature_cache"
CACHE_BATCH = 16
FEATURE_KNOBS = (
    "image_size",
    "channels",
    "backbone",
    "backbone_input_size",
    "taps",
    "upscale",
    "local_average",
)


def bytes_per_image(arch: Any) -> int:
    """Bytes of one image's cached features (float16)."""
    return arch.grid_size**2 * arch.feature_channels * 2


def cache_key(records: Sequence[ImageRecord], arch: Any, with_masks: bool) -> str:
    """Digest of what the cached features depend on: every image file (path, size, mtime), its mask and
    label, and the feature knobs of ``arch``."""
    digest = hashlib.sha256()
    knobs = {k: getattr(arch, k) for k in FEATURE_KNOBS}
    digest.update(json.dumps({"knobs": knobs, "masks": with_masks}, sort_keys=True).encode())
    for record in records:
        for path in (record.path, record.mask_path if with_masks else None):
            if path:
                stat = os.stat(path)
                digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}|".encode())
        digest.update(f"{record.label}\n".encode())
    return digest.hexdigest()[:16]


class FeatureCache:
    """The cached features, grid masks and labels of one image list (memory-mapped)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.features = np.load(folder / "features.npy", mmap_mode="r")
        self.masks = np.load(folder / "masks.npy")
        self.labels = np.load(folder / "labels.npy")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def nbytes(self) -> int:
        """Bytes on disk of the features."""
        return int(self.features.nbytes)


def build_cache(
    records: Sequence[ImageRecord],
    networks: Any,
    config: Any,
    run_dir: Path,
    name: str,
    with_masks: bool,
    corrupt_counter: CorruptFileCounter | None = None,
    progress: bool = True,
) -> FeatureCache:
    """The cache of ``records`` under ``run_dir``, computed now unless a complete one is there.

    Written to a temporary folder and renamed when complete: an interrupted pass leaves no cache that a
    later run would trust. Corrupt images are skipped (``data.on_corrupt: skip``) or raise, as in training.
    """
    from tfad.families.supersimplenet.trainer import grid_masks

    arch = networks.arch
    key = cache_key(records, arch, with_masks)
    folder = run_dir / CACHE_DIR / f"{name}-{key}"
    if (folder / "labels.npy").is_file():
        return FeatureCache(folder)
    tmp = folder.with_name(folder.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    size = config.data.image_size
    g, d = arch.grid_size, arch.feature_channels
    features = np.lib.format.open_memmap(tmp / "features.npy", "w+", np.float16, (len(records), g, g, d))
    masks = np.zeros((len(records), g, g, 1), np.uint8)
    labels = np.zeros(len(records), np.float32)
    dataset = make_dataset(
        records, (size, size), channels=config.data.channels, batch_size=CACHE_BATCH,
        on_corrupt=config.data.on_corrupt, with_masks=with_masks, corrupt_counter=corrupt_counter, name=name,
    )  # fmt: skip
    extract = tf.function(networks.features, reduce_retracing=True)
    written = 0
    bar = _progress(len(records), f"caching {name} features", progress)
    for batch in dataset:
        n = int(batch["image"].shape[0])
        features[written : written + n] = extract(batch["image"]).numpy().astype(np.float16)
        if with_masks:
            masks[written : written + n] = grid_masks(batch["mask"], g).numpy().astype(np.uint8)
        labels[written : written + n] = (batch["label"].numpy() > 0).astype(np.float32)
        written += n
        bar.update(n)
    bar.close()
    features.flush()
    del features
    if written < len(records):  # skipped corrupt images: keep the rows that were written
        full = np.load(tmp / "features.npy", mmap_mode="r")
        np.save(tmp / "features.trimmed.npy", full[:written])
        del full
        os.replace(tmp / "features.trimmed.npy", tmp / "features.npy")
    np.save(tmp / "masks.npy", masks[:written])
    np.save(tmp / "labels.npy", labels[:written])  # last: its presence marks a complete cache
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    os.replace(tmp, folder)
    log.info("%s: cached %d images' features, %.1f MB (%d bytes per image) in %s", name, written,
             written * bytes_per_image(arch) / 1e6, bytes_per_image(arch), folder)  # fmt: skip
    return FeatureCache(folder)


def _progress(total: int, description: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="img", disable=not enabled, leave=False)


def _batches(cache: FeatureCache, batch_size: int, seed: int, start_sample: int, shuffle: bool, repeat: bool
             ) -> Iterator[dict[str, np.ndarray]]:  # fmt: skip
    # Epoch e visits the rows in the permutation drawn from (seed, e); sample k of the stream is position
    # k % n of epoch k // n, so a resumed run (start_sample = steps * batch) continues the same stream.
    n = len(cache)
    position = start_sample
    while True:
        epoch, offset = divmod(position, n)
        order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
        take = order[offset : offset + batch_size]
        while len(take) < batch_size and repeat:  # a batch spanning two epochs
            epoch += 1
            nxt = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
            take = np.concatenate([take, nxt[: batch_size - len(take)]])
        if len(take) == 0:
            return
        rows = np.sort(take)  # sequential reads of the memory map; the batch order does not matter
        yield {
            "features": np.asarray(cache.features[rows]),
            "mask": cache.masks[rows].astype(np.float32),
            "label": cache.labels[rows],
        }
        position += len(take)
        if not repeat and position >= n:
            return


def cached_dataset(
    cache: FeatureCache, batch_size: int, seed: int, start_sample: int = 0, training: bool = True
) -> tf.data.Dataset:
    """Batches ``{"features" float16 [B, g, g, D], "mask" [B, g, g, 1], "label" [B]}`` from ``cache``:
    endless and shuffled per epoch for training (from ``start_sample``), one ordered pass otherwise."""
    _, g, _, d = cache.features.shape
    signature = {
        "features": tf.TensorSpec([None, g, g, d], tf.float16),
        "mask": tf.TensorSpec([None, g, g, 1], tf.float32),
        "label": tf.TensorSpec([None], tf.float32),
    }
    return tf.data.Dataset.from_generator(
        lambda: _batches(cache, batch_size, seed, start_sample, shuffle=training, repeat=training),
        output_signature=signature,
    ).prefetch(2)


def cached_streams(trainer: Any, config: Any, data: Any, dist: Any, val_steps: int, global_step: int) -> Any:
    """``tfad fit``'s streams read from the feature cache (computed first if needed) as ``(train,
    validation, preview, corrupt counter)`` (:class:`tfad.training.streams.FitStreams`' fields), or None when
    the cache does not apply (``supersimplenet.cache_features`` off, a strategy, packed shards): the image
    streams."""
    import sys

    if not config.supersimplenet.cache_features or dist.distributed or data.shards is not None:
        return None
    batch_size, seed = config.training.batch_size, config.training.seed
    with_masks = config.supersimplenet.regime == "supervised"
    progress = sys.stderr.isatty()
    corrupt = CorruptFileCounter("train")
    networks = trainer.networks
    train_cache = build_cache(
        data.train, networks, config, config.run_dir, "train", with_masks, corrupt, progress
    )
    train = cached_dataset(train_cache, batch_size, seed, global_step * batch_size)
    validation = None
    if val_steps and data.val:
        val_cache = build_cache(
            data.val, networks, config, config.run_dir, "validation", with_masks, None, progress
        )
        validation = cached_dataset(val_cache, batch_size, seed, training=False).take(val_steps)
    size = config.data.image_size
    preview = make_dataset(
        (data.val or data.train)[:8],
        (size, size),
        channels=config.data.channels,
        batch_size=8,
        name="preview",
    )
    return train, validation, preview, corrupt
