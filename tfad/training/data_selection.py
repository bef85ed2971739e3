"""What ``tfad fit`` trains and validates on: the training split's images (folders) split by product, or
packed shards; the class names of the supervised families.

Every function here reads and checks data only (no TensorFlow model); :func:`training_data` is the one
``fit`` calls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfad.data.layouts import read_dataset
from tfad.data.records import LABEL_DEFECTIVE, LABEL_GOOD, ImageRecord, fingerprint
from tfad.data.shards import read_index
from tfad.families.base import ModelFamily
from tfad.schema import Config, ConfigError
from tfad.training.inputs import packed_records

log = logging.getLogger(__name__)


def split_by_product(
    records: Sequence[ImageRecord], fraction: float, seed: int, stratify: bool = False
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Train/validation split keeping every product (all its runs, frames, vials, regions) on one side.

    Records without a product id (e.g. MVTec) are their own group. Deterministic in ``seed``. With
    ``stratify`` the groups are split per kind (all good / holding a defect of type T), each kind with the
    same fraction, so a small defect library is represented on both sides.
    """
    groups: dict[str, list[ImageRecord]] = {}
    for record in records:
        groups.setdefault(record.product_id or record.path, []).append(record)
    keys = sorted(groups)
    if fraction <= 0 or len(keys) < 2:
        return list(records), []

    def kind(key: str) -> str:
        defects = sorted({r.defect_type for r in groups[key] if r.label == LABEL_DEFECTIVE})
        return "|".join(defects) if stratify else ""

    strata: dict[str, list[str]] = {}
    for key in keys:
        strata.setdefault(kind(key), []).append(key)
    rng = np.random.default_rng(seed)
    val_keys: set[str] = set()
    for stratum in sorted(strata):
        members = strata[stratum]
        if len(members) < 2:
            continue  # a single product stays in training
        order = rng.permutation(len(members))
        n_val = min(len(members) - 1, max(1, round(fraction * len(members))))
        val_keys.update(members[i] for i in order[:n_val])
    train = [r for k in keys if k not in val_keys for r in groups[k]]
    val = [r for k in keys if k in val_keys for r in groups[k]]
    return train, val


def training_records(config: Config, supervised: bool = False) -> list[ImageRecord]:
    """The images of the training split: every labelled image for the supervised families, else the good
    ones (labelled defects there are left out, with a log line)."""
    if not config.data.root:
        raise ConfigError("data.root is empty: set it to the data set folder")
    records = read_dataset(config.data.root, config.data.train_split, config.data.layout)
    if supervised:
        labelled = [r for r in records if r.label in (LABEL_GOOD, LABEL_DEFECTIVE)]
        if not labelled:
            raise ConfigError(
                f"split {config.data.train_split!r} of {config.data.root} has no labelled images"
            )
        return labelled
    good = [r for r in records if r.label != LABEL_DEFECTIVE]
    if len(good) < len(records):
        log.info(
            "left out %d labelled defective images of split %r (training uses good images only)",
            len(records) - len(good),
            config.data.train_split,
        )
    if not good:
        raise ConfigError(
            f"split {config.data.train_split!r} of {config.data.root} has no good images to train on"
        )
    return good


def with_class_names(config: Config, records: Sequence[ImageRecord]) -> Config:
    """``config`` with ``supervised.classes`` filled in from the training records when it is None: "good",
    the sorted defect types, and "synthetic" when synthetic defects are made. Raises ConfigError when that
    leaves a single class."""
    sv = config.supervised
    names = sv.classes
    if names is None:
        defects = sorted({r.defect_type for r in records if r.label == LABEL_DEFECTIVE} - {"good"})
        names = ["good", *defects] + (["synthetic"] if sv.synthetic_probability > 0 else [])
    if len(names) < 2:
        raise ConfigError(
            f"split {config.data.train_split!r} of {config.data.root} has only good images: a supervised "
            "model needs labelled defects (MVTec: train/<defect>/ folders; line layout: labels.csv) or "
            "synthetic ones (supervised.synthetic_probability > 0)"
        )
    if sv.synthetic_probability > 0 and names[-1] != "synthetic":
        raise ConfigError(
            f"supervised.classes {names}: with synthetic_probability > 0 the last class must be 'synthetic'"
        )
    return dataclasses.replace(config, supervised=dataclasses.replace(sv, classes=list(names)))


@dataclass
class TrainingData:
    """What :func:`fit` trains and validates on: image folders (records) or packed shards.

    ``records`` are all usable images of the training split (folders), or the labelling of every packed
    example (supervised families reading shards, :func:`tfad.training.inputs.packed_records`; empty
    otherwise: the unsupervised families need no per-image labels from a pack).
    """

    records: list[ImageRecord]
    train: list[ImageRecord]
    val: list[ImageRecord]
    train_count: int
    val_count: int
    description: dict[str, Any]  # run.json "training_data"
    shards: str | None = None
    validation_shards: str | None = None
    val_records_by_index: dict[int, ImageRecord] | None = None  # supervised validation pack
    train_records_by_index: dict[int, ImageRecord] | None = None


def training_data(config: Config, model_family: ModelFamily, with_fingerprint: bool = True) -> TrainingData:
    """The training and validation images of ``config``: ``data.shards`` / ``data.validation_shards``
    (packed folders; the split was made when packing) or ``data.root``'s training split, split by product
    with ``data.validation_fraction``. ``with_fingerprint=False`` skips fingerprinting the folder files
    (a stat per file; non-chief workers record nothing).

    Raises ConfigError / DataError naming the problem (e.g. a pack holding labelled defects for a family
    that trains on good images only).
    """
    if config.data.shards is None:
        records = training_records(config, supervised=model_family.uses_labels(config))
        train, val = split_by_product(
            records,
            config.data.validation_fraction,
            config.training.seed,
            stratify=model_family.uses_labels(config),
        )
        description = {
            "root": str(Path(config.data.root).resolve()),
            "split": config.data.train_split,
            "fingerprint": fingerprint(records) if with_fingerprint else None,
            "train_images": len(train),
            "validation_images": len(val),
        }
        return TrainingData(records, train, val, len(train), len(val), description)

    def pack(path: str, what: str) -> dict:
        index = read_index(path)
        labels = index.get("counts", {}).get("labels", {})
        if model_family.uses_labels(config):
            unknown = labels.get(str(-1), 0)
            if unknown:
                raise ConfigError(f"{what} {path}: {unknown} packed image(s) have no label (-1)")
        elif labels.get(str(LABEL_DEFECTIVE), 0):
            raise ConfigError(
                f"{what} {path} holds {labels[str(LABEL_DEFECTIVE)]} labelled defective image(s); the "
                f"{config.model.family} family trains on good images only: pack a record list without them "
                "(tfad.data.packing.pack_dataset), or train from the folders"
            )
        return index

    if config.data.root:
        log.info("data.shards is set: training reads %s, data.root is not read", config.data.shards)
    index = pack(config.data.shards, "data.shards")
    val_index = (
        pack(config.data.validation_shards, "data.validation_shards")
        if config.data.validation_shards
        else None
    )
    source = index.get("source") or {}
    shard_fingerprint = source.get("fingerprint")
    if not shard_fingerprint:  # the pack's own identity when the source could not be fingerprinted
        digest = hashlib.sha256("".join(e["sha256"] for e in index["shards"]).encode()).hexdigest()
        shard_fingerprint = f"sha256:{digest}"
    description = {
        "root": source.get("root"),
        "split": index.get("split"),
        "shards": str(Path(config.data.shards).resolve()),
        "validation_shards": str(Path(config.data.validation_shards).resolve()) if val_index else None,
        "fingerprint": shard_fingerprint,
        "train_images": index["records"],
        "validation_images": val_index["records"] if val_index else 0,
    }
    data = TrainingData(
        records=[],
        train=[],
        val=[],
        train_count=index["records"],
        val_count=val_index["records"] if val_index else 0,
        description=description,
        shards=config.data.shards,
        validation_shards=config.data.validation_shards,
    )
    if model_family.uses_labels(config):
        data.train_records_by_index = packed_records(config.data.shards)
        data.records = data.train = [
            data.train_records_by_index[k] for k in sorted(data.train_records_by_index)
        ]
        if val_index:
            data.val_records_by_index = packed_records(config.data.validation_shards)
            data.val = [data.val_records_by_index[k] for k in sorted(data.val_records_by_index)]
    return data
