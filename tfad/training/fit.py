"""``tfad fit``: train a configured model into a run directory, resumable after an interruption.

A run directory ``<output_dir>/<name>/`` holds::

    config.yaml       the full configuration (defaults filled in)
    run.json          architecture, data fingerprint and counts, progress, status, per-epoch history
    history.csv       one row per finished epoch (train and validation losses, learning rate, time)
    checkpoints/      tf.train checkpoints (networks + both optimizers + step), every N steps and per epoch
    tensorboard/      TensorBoard scalars (per 50 steps and per epoch)
    plots/            training curves and validation reconstructions, redrawn after every epoch

The loop is written out (instead of ``Model.fit``) because it must resume in the middle of an epoch: the
sample stream, the learning-rate schedule and the optimizer state all continue from the saved step, so at
most ``checkpoint_every_steps`` steps are redone and no finished epoch is lost. Ctrl-C / SIGTERM save a
checkpoint before stopping.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tfad import __version__
from tfad.config import Config, ConfigError, architecture, dump_config, load_config
from tfad.data.layouts import read_dataset
from tfad.data.records import LABEL_DEFECTIVE, LABEL_GOOD, ImageRecord, fingerprint
from tfad.rundir import (
    BEST_DIR,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    HISTORY_FILE,
    PLOTS_DIR,
    RUN_FILE,
    RUN_FORMAT,
    TENSORBOARD_DIR,
)

log = logging.getLogger(__name__)

SUMMARY_EVERY_STEPS = 50
# The chief notes the step reached in run.json at most this often (besides every checkpoint), so that a
# run resumed after a crash can log how many steps since the last backup it redoes.
PROGRESS_NOTE_SECONDS = 2.0
# Changing these between an interrupted run and its resumption is allowed (everything else must match).
RESUMABLE_CHANGES = (
    "training.epochs",
    "training.checkpoint_every_steps",
    "training.validation_steps",
    "data.root",
    "data.shards",
    "data.validation_shards",
    "output_dir",
)


class RunError(RuntimeError):
    """A run directory that cannot be used as asked (exists already, nothing to resume, config changed)."""


class StopTraining(Exception):
    """Raised inside the loop when SIGTERM asks the run to stop (after a checkpoint)."""


@dataclass
class FitResult:
    """What :func:`fit` did."""

    run_dir: Path
    global_step: int
    epochs_done: int
    status: str  # "finished" | "interrupted"
    history: list[dict[str, Any]]


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
    import dataclasses

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


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key != "overrides":
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _check_resumable(saved: Config, new: Config) -> None:
    a, b = _flatten(saved.to_dict()), _flatten(new.to_dict())
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        details = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in changed)
        raise RunError(
            f"cannot resume: the configuration changed ({details}); only "
            f"{', '.join(RESUMABLE_CHANGES)} may change between an interruption and --resume"
        )


class _History:
    """history.csv + run.json bookkeeping."""

    def __init__(self, run_dir: Path, info: dict, write: bool = True) -> None:
        self.run_dir = run_dir
        self.info = info
        self.write = write  # False on non-chief workers: they keep the bookkeeping in memory only

    def write_info(self, **changes: Any) -> None:
        self.info.update(changes)
        self.info["updated_utc"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if not self.write:
            return
        tmp = self.run_dir / (RUN_FILE + ".tmp")
        tmp.write_text(json.dumps(self.info, indent=2) + "\n")
        tmp.replace(self.run_dir / RUN_FILE)  # never a half-written run.json

    def add_epoch(self, row: dict[str, Any]) -> None:
        history = [h for h in self.info.get("history", []) if h["epoch"] != row["epoch"]] + [row]
        self.write_info(history=history)
        if not self.write:
            return
        columns = list(dict.fromkeys(k for h in history for k in h))
        with open(self.run_dir / HISTORY_FILE, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(history)


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


def training_data(config: Config, model_family: Any, with_fingerprint: bool = True) -> TrainingData:
    """The training and validation images of ``config``: ``data.shards`` / ``data.validation_shards``
    (packed folders; the split was made when packing) or ``data.root``'s training split, split by product
    with ``data.validation_fraction``. ``with_fingerprint=False`` skips fingerprinting the folder files
    (a stat per file; non-chief workers record nothing).

    Raises ConfigError / DataError naming the problem (e.g. a pack holding labelled defects for a family
    that trains on good images only).
    """
    if config.data.shards is None:
        records = training_records(config, supervised=model_family.supervised)
        train, val = split_by_product(
            records, config.data.validation_fraction, config.training.seed, stratify=model_family.supervised
        )
        description = {
            "root": str(Path(config.data.root).resolve()),
            "split": config.data.train_split,
            "fingerprint": fingerprint(records) if with_fingerprint else None,
            "train_images": len(train),
            "validation_images": len(val),
        }
        return TrainingData(records, train, val, len(train), len(val), description)

    from tfad.data.shards import read_index

    def pack(path: str, what: str) -> dict:
        index = read_index(path)
        labels = index.get("counts", {}).get("labels", {})
        if model_family.supervised:
            unknown = labels.get(str(-1), 0)
            if unknown:
                raise ConfigError(f"{what} {path}: {unknown} packed image(s) have no label (-1)")
        elif labels.get(str(LABEL_DEFECTIVE), 0):
            raise ConfigError(
                f"{what} {path} holds {labels[str(LABEL_DEFECTIVE)]} labelled defective image(s); the "
                f"{config.model.family} family trains on good images only: pack a record list without them "
                "(tfad.data.shards.pack_dataset), or train from the folders"
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
    if model_family.supervised:
        from tfad.training.inputs import packed_records

        data.train_records_by_index = packed_records(config.data.shards)
        data.records = data.train = [
            data.train_records_by_index[k] for k in sorted(data.train_records_by_index)
        ]
        if val_index:
            data.val_records_by_index = packed_records(config.data.validation_shards)
            data.val = [data.val_records_by_index[k] for k in sorted(data.val_records_by_index)]
    return data


class PeerLostError(RunError):
    """A multi-worker run lost a worker (killed, crashed, unreachable): restart the whole job; every worker
    resumes from the chief's latest backup."""


class _Backups:
    """Checkpoint writing: the chief into ``<run>/checkpoints`` (the run's backups); under multi-worker the
    other workers save too (a save is a step every worker takes) but into a local temporary folder that is
    emptied after every save and removed at the end (TensorFlow's pattern for MultiWorkerMirroredStrategy)."""

    def __init__(self, checkpoint: Any, ckpt_dir: Path, is_chief: bool) -> None:
        import tensorflow as tf

        self.temporary = None if is_chief else tempfile.mkdtemp(prefix="tfad-worker-backup-")
        root = ckpt_dir if is_chief else Path(self.temporary)
        self.manager = tf.train.CheckpointManager(checkpoint, str(root), max_to_keep=3)
        self.best = tf.train.CheckpointManager(checkpoint, str(root / BEST_DIR), max_to_keep=1)

    def save(self, step: int) -> None:
        """A backup at ``step``."""
        self.manager.save(checkpoint_number=step)
        self._discard()

    def save_best(self, step: int) -> None:
        """The best epoch so far (early stopping)."""
        self.best.save(checkpoint_number=step)
        self._discard()

    def _discard(self) -> None:
        if self.temporary is not None:
            shutil.rmtree(self.temporary, ignore_errors=True)
            os.makedirs(self.temporary, exist_ok=True)

    def close(self) -> None:
        """Remove a non-chief's temporary folder."""
        if self.temporary is not None:
            shutil.rmtree(self.temporary, ignore_errors=True)


def _resolve_distribution(strategy: Any, trainable: bool, family_name: str):
    """(Distribution) from ``fit``'s ``strategy`` argument; the family check comes before any TF op."""
    from tfad.training.distributed import (
        ClusterConfigError,
        StrategyChoice,
        choose_strategy,
        create_distribution,
    )

    if isinstance(strategy, str):
        choice = choose_strategy(strategy)
    elif isinstance(strategy, StrategyChoice):
        choice = strategy
    else:
        choice = None
    kind = choice.kind if choice is not None else "custom"
    if not trainable and kind != "one-device":
        if choice is None or choice.requested != "auto" or kind == "multi-worker":
            raise ClusterConfigError(
                f"model.family {family_name} has no gradient training: --strategy {kind} does not apply "
                "(fit it with --strategy one-device or auto, on one host)"
            )
        log.info("model.family %s has no gradient training: fitted in this process (one-device)", family_name)
        choice = StrategyChoice(kind="one-device", requested="auto")
    return create_distribution(choice) if choice is not None else create_distribution(strategy=strategy)


def fit(
    config: Config,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[dict], None] | None = None,
    should_stop: Callable[[int], bool] | None = None,
    strategy: Any = "one-device",
    on_train_end: Callable[[Any], None] | None = None,
) -> FitResult:
    """Train ``config``'s model into ``config.run_dir``.

    Args:
        resume: continue the interrupted run in ``config.run_dir`` from its latest checkpoint. Without it an
            existing run directory with checkpoints is an error (nothing is overwritten), except under
            ``multi-worker``, where a restarted job resumes from the chief's latest backup by itself.
        progress: show a progress bar (tqdm) per epoch (the chief only).
        on_epoch_end: called with each epoch's history row.
        should_stop: called with the global step after every step; True stops like Ctrl-C (checkpoint,
            status "interrupted"), e.g. for a wall-clock budget. Under a strategy every worker stops after
            the step following the first request anywhere, all at the same step.
        strategy: ``"one-device"`` (default: no tf.distribute), ``"mirrored"``, ``"multi-worker"``, ``"auto"``
            (:func:`tfad.training.distributed.choose_strategy`, cluster from TF_CONFIG), a
            :class:`~tfad.training.distributed.StrategyChoice`, or a ready single-process
            ``tf.distribute.Strategy`` (e.g. MirroredStrategy over logical CPUs).
        on_train_end: called with the trainer (every worker, in memory) when training finished.

    Raises:
        RunError (PeerLostError when a multi-worker job lost a worker), ConfigError (ClusterConfigError),
        DataError, FileNotFoundError: with a message naming the problem.
    """
    from tfad.families import family

    model_family = family(config.model.family)
    # First: MultiWorkerMirroredStrategy configures collective ops, which must precede any other TF op.
    dist = _resolve_distribution(strategy, model_family.trainable, config.model.family)

    import tensorflow as tf
    from tqdm import tqdm

    from tfad.networks.flops import count_flops
    from tfad.training.distributed import (
        all_workers_mean,
        distributed_step,
        replica_divergence,
        synced_variables,
        wait_for_all_workers,
    )

    chief = dist.is_chief
    multi_worker = dist.kind == "multi-worker"
    data = training_data(config, model_family, with_fingerprint=chief)
    if model_family.supervised:
        config = with_class_names(config, data.records)
    run_dir = config.run_dir
    ckpt_dir = run_dir / CHECKPOINT_DIR
    latest = tf.train.latest_checkpoint(str(ckpt_dir))
    earlier_attempt = (run_dir / RUN_FILE).exists()
    if resume and latest is None:
        raise RunError(f"--resume: {run_dir} holds no checkpoint to resume from")
    if not resume and not multi_worker and (latest is not None or earlier_attempt):
        raise RunError(
            f"{run_dir} already holds a training run; pass --resume to continue it, or choose "
            "another name/output_dir"
        )
    # Multi-worker: a restarted job resumes from the chief's latest backup by itself (BackupAndRestore
    # semantics); an attempt that died before its first backup starts again at step 0.
    resuming = latest is not None
    if resuming or (multi_worker and chief and earlier_attempt):
        _check_resumable(load_config(run_dir / CONFIG_FILE), config)
    if not resuming and multi_worker and chief and earlier_attempt:
        before = json.loads((run_dir / RUN_FILE).read_text())
        reached = max(int(before.get("progress_step") or 0), int(before.get("global_step") or 0))
        log.warning(
            "%s: an earlier attempt of this run left no backup (it had reached step %s): starting at step 0",
            run_dir,
            reached,
        )

    if not model_family.trainable:
        return _fit_without_training(config, model_family, data.records, data.train, data.val)
    t = config.training
    if data.train_count < t.batch_size:
        raise ConfigError(
            f"training.batch_size {t.batch_size} is larger than the {data.train_count} training images"
        )
    if t.batch_size % dist.num_replicas:
        raise ConfigError(
            f"training.batch_size {t.batch_size} must be divisible by the {dist.num_replicas} replicas of "
            f"--strategy {dist.kind} (the global batch is split evenly)"
        )
    if data.shards is None and dist.num_workers > 1:
        for what, count in (("training", len(data.train)), ("validation", len(data.val))):
            if 0 < count < dist.num_workers:
                raise ConfigError(f"{count} {what} images cannot be shared by {dist.num_workers} workers")
    steps_per_epoch = t.steps_per_epoch or max(1, data.train_count // t.batch_size)
    val_steps = 0
    if data.val_count:
        val_steps = t.validation_steps or max(1, math.ceil(data.val_count / t.batch_size))

    arch = architecture(config)
    import keras

    with dist.scope():  # networks, trainer, optimizers, metrics and the step counter: one copy per replica
        keras.utils.set_random_seed(t.seed)  # reproducible initial weights (auditable runs)
        networks = model_family.networks(arch, config)
        trainer = model_family.trainer(networks, config, steps_per_epoch, data.train)
        step_var = tf.Variable(0, dtype=tf.int64, name="global_step", trainable=False)
    if dist.distributed:
        trainer.gradient_scale = 1.0 / dist.num_replicas  # losses are local means: scale to the global batch
    checkpoint = tf.train.Checkpoint(**trainer.checkpoint_items(), step=step_var)
    backups = _Backups(checkpoint, ckpt_dir, chief)
    distribution = dist.describe()

    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
    if resuming:
        checkpoint.restore(latest).assert_existing_objects_matched()
        info = json.loads((run_dir / RUN_FILE).read_text())
        if info.get("steps_per_epoch") != steps_per_epoch:
            raise RunError(
                f"cannot resume: the training set now gives {steps_per_epoch} steps per epoch, the "
                f"run was started with {info.get('steps_per_epoch')} (did the data change?)"
            )
        _check_same_distribution(info, distribution)
    else:
        info = new_run_info(
            config,
            arch.to_dict(),
            data.description,
            inference_gflops_per_patch=count_flops(networks.build_inference_model()) / 1e9,
            parameters=networks.parameter_counts(),
            network_build=model_family.build_record(networks),
            steps_per_epoch=steps_per_epoch,
            **({"classes": config.supervised.classes} if model_family.supervised else {}),
        )
        if dist.distributed:
            info["distribution"] = distribution
    global_step = int(step_var.numpy())
    if multi_worker:
        # Every worker must continue from the same backup; differing steps mean the run directory is not
        # one shared folder (e.g. output_dir on local disks).
        mean, mean_square = all_workers_mean(dist.strategy, [global_step, global_step**2])
        if abs(mean_square - mean * mean) > 1e-6 * max(1.0, mean_square):
            raise RunError(
                f"the workers restored different steps (this one {global_step}, mean {mean:g}): output_dir "
                f"{config.output_dir} must be storage shared by all workers (the chief's checkpoints)"
            )
    if resuming:
        _log_resumption(info, global_step, latest, chief)
    if chief:
        dump_config(config, run_dir / CONFIG_FILE)
    history = _History(run_dir, info, write=chief)
    history.write_info(status="running", epochs_planned=t.epochs)

    total_steps = t.epochs * steps_per_epoch
    if global_step >= total_steps or info.get("early_stopping", {}).get("stopped"):
        log.info("%s already trained %d steps (%d epochs); nothing to do", run_dir, global_step, t.epochs)
        history.write_info(status="finished")
        backups.close()
        return FitResult(run_dir, global_step, global_step // steps_per_epoch, "finished", info["history"])

    from tfad.data.corrupt import CorruptFileCounter

    corrupt = CorruptFileCounter("train")
    classes = config.supervised.classes if trainer.supervised else None
    tables = {}
    if trainer.supervised and data.shards is not None:
        from tfad.training.inputs import class_table

        tables["train"] = class_table(data.train_records_by_index, classes)
        if data.val_records_by_index:
            tables["validation"] = class_table(data.val_records_by_index, classes)

    def make_input(
        validation: bool, batch_size: int, num_pipelines: int, pipeline_id: int, start: int = 0
    ) -> tf.data.Dataset:
        # One input pipeline: the training stream (from ``start``) or the validation stream of this worker.
        from tfad.training.inputs import supervised_dataset, training_dataset

        name = "validation" if validation else "train"
        shards = data.validation_shards if validation else data.shards
        common = dict(
            augment=not validation,
            corrupt_counter=None if validation else corrupt,
            name=name,
            shards=shards,
            batch_size=batch_size,
            num_pipelines=num_pipelines,
            pipeline_id=pipeline_id,
        )
        records = data.val if validation else data.train
        if trainer.supervised:
            return supervised_dataset(
                records, config, classes, start, classes_by_index=tables.get(name), **common
            )
        return training_dataset(records, config, start, with_roi=trainer.needs_roi, **common)

    if dist.distributed:
        per_replica = t.batch_size // dist.num_replicas

        # Each step takes a per-replica batch for every replica: batch_size / pipelines samples per pipeline.
        def train_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
            share = t.batch_size // ctx.num_input_pipelines
            return make_input(
                False, ctx.get_per_replica_batch_size(t.batch_size), ctx.num_input_pipelines,
                ctx.input_pipeline_id, global_step * share,
            )  # fmt: skip

        def val_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
            return make_input(
                True,
                ctx.get_per_replica_batch_size(t.batch_size),
                ctx.num_input_pipelines,
                ctx.input_pipeline_id,
            )

        train_ds = dist.strategy.distribute_datasets_from_function(train_fn)
        val_ds = dist.strategy.distribute_datasets_from_function(val_fn) if val_steps else None
        preview_ds = None
        if chief:  # the plots' samples: the chief's own share, outside tf.distribute
            preview_ds = make_input(bool(val_steps), per_replica, dist.num_workers, dist.worker_index)
        run_train_step = distributed_step(dist.strategy, trainer.train_step, synced_variables(networks))
        run_test_step = distributed_step(dist.strategy, trainer.test_step)
    else:
        train_ds = make_input(False, t.batch_size, 1, 0, global_step * t.batch_size)
        val_ds = make_input(True, t.batch_size, 1, 0).take(val_steps) if val_steps else None
        preview_ds = val_ds or train_ds
        train_fn_ = tf.function(trainer.train_step, reduce_retracing=True)
        test_fn_ = tf.function(trainer.test_step, reduce_retracing=True)

        def run_train_step(batch: Any, stop: bool = False) -> tuple[dict, bool]:
            return train_fn_(batch), stop

        def run_test_step(batch: Any, stop: bool = False) -> tuple[dict, bool]:
            return test_fn_(batch), stop

    writer = (
        tf.summary.create_file_writer(str(run_dir / TENSORBOARD_DIR))
        if chief
        else tf.summary.create_noop_writer()
    )
    iterator = iter(train_ds)
    log.info(
        "training %s: %d train / %d validation images, %d steps/epoch x %d epochs, batch %d, "
        "%.3f GFLOP/patch inference%s",
        config.name,
        data.train_count,
        data.val_count,
        steps_per_epoch,
        t.epochs,
        t.batch_size,
        info["inference_gflops_per_patch"],
        _describe_distribution(dist) if dist.distributed else "",
    )

    stop_requested = False

    def on_sigterm(signum, frame):  # a scheduler's SIGTERM: finish the step, checkpoint, stop
        nonlocal stop_requested
        stop_requested = True

    previous_handler = signal.signal(signal.SIGTERM, on_sigterm) if _main_thread() else None
    status = "interrupted"
    stopped_together = False
    last_note = time.monotonic()
    stop_wish = False  # this worker's request, shared with the others in the next step
    try:
        while global_step < total_steps:
            epoch = global_step // steps_per_epoch
            first = global_step % steps_per_epoch
            if first:
                log.info("epoch %d continues at step %d of %d", epoch + 1, first + 1, steps_per_epoch)
            trainer.reset_metrics()
            started = time.perf_counter()
            bar = tqdm(
                total=steps_per_epoch,
                initial=first,
                desc=f"epoch {epoch + 1}/{t.epochs}",
                disable=not (progress and chief),
                unit="step",
                dynamic_ncols=True,
                mininterval=0.5 if sys.stderr.isatty() else 30,
            )
            logs: dict[str, Any] = {}
            for _ in range(first, steps_per_epoch):
                logs, stop_everywhere = run_train_step(next(iterator), stop_wish)
                global_step += 1
                step_var.assign(global_step)
                bar.update(1)
                if global_step % SUMMARY_EVERY_STEPS == 0 or global_step == 1:
                    values = _scalars(logs)
                    bar.set_postfix({key: f"{values[key]:.4g}" for key in trainer.progress_keys})
                    with writer.as_default(step=global_step):
                        for name, value in values.items():
                            tf.summary.scalar(f"train/{name}", value)
                        tf.summary.scalar("learning_rate", trainer.learning_rate(global_step))
                if global_step % t.checkpoint_every_steps == 0:
                    backups.save(global_step)
                    history.write_info(global_step=global_step, progress_step=global_step)
                    last_note = time.monotonic()
                elif time.monotonic() - last_note > PROGRESS_NOTE_SECONDS:
                    # How far the run got: after a crash, the resumed run logs how many steps it redoes.
                    history.write_info(progress_step=global_step)
                    last_note = time.monotonic()
                wish = stop_requested or (should_stop is not None and should_stop(global_step))
                if dist.distributed:
                    if stop_everywhere:
                        raise StopTraining
                    stop_wish = stop_wish or wish
                elif wish:
                    raise StopTraining
            bar.close()
            row = {
                "epoch": epoch + 1,
                "step": global_step,
                "learning_rate": trainer.learning_rate(global_step),
                "seconds": round(time.perf_counter() - started, 1),
                "steps_this_session": steps_per_epoch - first,
            }
            row.update({f"train_{k}": v for k, v in _scalars(logs).items()})
            if val_ds is not None:
                trainer.reset_metrics()
                val_logs: dict[str, Any] = {}
                if dist.distributed:
                    val_iterator = iter(val_ds)  # the same validation batches every epoch
                    for _ in range(val_steps):
                        val_logs, _ = run_test_step(next(val_iterator))
                else:
                    for batch in val_ds:
                        val_logs, _ = run_test_step(batch)
                row.update({f"val_{k}": v for k, v in _scalars(val_logs).items()})
            trainer.end_epoch(row)  # e.g. GRD-Net's plateau rule; saved with the epoch's checkpoint
            backups.save(global_step)
            stop_early = False
            if t.early_stopping_patience:
                improved, stop_early = _early_stopping(info, row, t.early_stopping_patience)
                if improved:
                    backups.save_best(global_step)
                row["best_epoch"] = info["early_stopping"]["best_epoch"]
            with writer.as_default(step=global_step):
                for key, value in row.items():
                    if key.startswith(("train_", "val_")):
                        tf.summary.scalar(f"epoch/{key}", value)
            writer.flush()
            history.add_epoch(row)
            history.write_info(global_step=global_step, epochs_done=epoch + 1, progress_step=global_step)
            if chief:
                _write_plots(run_dir, history.info["history"], trainer, preview_ds)
            log.info("epoch %d/%d: %s", epoch + 1, t.epochs, _format_row(row))
            if on_epoch_end:
                on_epoch_end(row)
            if stop_early:
                state = info["early_stopping"]
                log.info(
                    "early stopping after epoch %d: no lower %s for %d epochs; the run's model is epoch %d's",
                    epoch + 1,
                    state["monitor"],
                    state["wait"],
                    state["best_epoch"],
                )
                break
        status = "finished"
        if dist.distributed:
            divergence = replica_divergence(dist.strategy, _network_variables(networks))
            history.info.setdefault("distribution", distribution)["replica_divergence"] = divergence
            if divergence:
                log.warning(
                    "the replicas' weights differ at the end (mean max |difference| %.3g)", divergence
                )
            else:
                log.info("all %d replicas hold identical weights", dist.num_replicas)
        if on_train_end:
            on_train_end(trainer)
    except (KeyboardInterrupt, StopTraining) as stop:
        stopped_together = isinstance(stop, StopTraining)  # under a strategy: every worker, same step
        backups.save(global_step)
        log.warning(
            "interrupted at step %d: checkpoint saved in %s; continue with `tfad fit %s --resume`",
            global_step,
            ckpt_dir,
            run_dir / CONFIG_FILE,
        )
    except tf.errors.OpError as err:
        if not (multi_worker and isinstance(err, _peer_errors())):
            raise
        status = "failed"
        saved = tf.train.latest_checkpoint(str(ckpt_dir))
        step_saved = int(saved.rsplit("-", 1)[-1]) if saved else 0
        message = (
            f"a worker of the multi-worker job was lost at step {global_step} ({type(err).__name__}: "
            f"{_error_reason(err)}); restart every worker with the same TF_CONFIG: "
            f"they resume from the chief's backup at step {step_saved} ({global_step - step_saved} step(s) "
            "redone)"
        )
        log.error("%s", message)
        history.info.update(backup_step=step_saved, failure=message)
        raise PeerLostError(message) from err
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        backups.close()
        writer.flush()
        history.write_info(
            status=status,
            global_step=global_step,
            epochs_done=global_step // steps_per_epoch,
            corrupt_files_skipped=_corrupt_summary(corrupt),
        )
    if multi_worker and (status == "finished" or stopped_together):
        # A last barrier: no worker leaves before the chief has written everything (run.json above).
        log.info("waiting for every worker to finish (chief: everything is written)")
        if wait_for_all_workers(f"tfad-fit-end-{global_step}"):
            log.info("all %d workers finished at step %d", dist.num_workers, global_step)
    return FitResult(run_dir, global_step, global_step // steps_per_epoch, status, history.info["history"])


def _error_reason(err: Exception) -> str:
    """The reason of a TensorFlow error in one short line, without the graph's Python stack."""
    lines = [line.strip() for line in str(getattr(err, "message", err)).splitlines()]
    keep = [
        line
        for line in lines
        if line
        and not line.startswith(("File ", "Detected at node", "Graph execution error", "[[", "[Op:"))
        and not line.startswith(("Traceback", "^"))
        and lines.count(line) < 3  # frames repeated per replica thread
    ]
    reason = " ".join(" ".join(keep).split())
    reason = re.sub(r"\s*\[\[\{\{node [^\]]*\]\]|\s*\[Op:[^\]]*\]", "", reason)
    return reason[:300] or type(err).__name__


def _peer_errors() -> tuple:
    import tensorflow as tf

    # What a collective raises when a peer is gone (aborted by the health check, or the connection failed).
    return (
        tf.errors.UnavailableError,
        tf.errors.AbortedError,
        tf.errors.CancelledError,
        tf.errors.DeadlineExceededError,
        tf.errors.FailedPreconditionError,
        tf.errors.InternalError,
    )


def _shape(distribution: dict | None) -> tuple[int, int]:
    d = distribution or {}
    return int(d.get("replicas", 1)), len(d.get("workers", [])) or 1


def _check_same_distribution(info: dict, distribution: dict) -> None:
    """A run resumes on as many replicas and workers as it was trained on: the per-replica batch, the
    per-worker data shares and their sample streams depend on them."""
    before, now = _shape(info.get("distribution")), _shape(distribution)
    if before != now:
        raise RunError(
            f"cannot resume: the run was trained on {before[0]} replica(s) in {before[1]} worker(s), this "
            f"job has {now[0]} in {now[1]}; resume with the same strategy and cluster size"
        )


def _log_resumption(info: dict, step: int, latest: str, chief: bool) -> None:
    """Log (and record in run.json) where the run continues and how many steps since the backup are redone."""
    reached = max(int(info.get("progress_step") or 0), int(info.get("global_step") or 0))
    redone = max(0, reached - step)
    if redone:
        log.warning(
            "resuming %s from the backup at step %d (%s); the interrupted attempt had reached at least step "
            "%d: %d step(s) since that backup are lost and redone (the sample stream continues at the "
            "backup; no finished epoch is lost)",
            info.get("name"),
            step,
            Path(latest).name,
            reached,
            redone,
        )
    else:
        log.info("resuming %s from step %d (%s); nothing was lost", info.get("name"), step, Path(latest).name)
    if chief:
        info.setdefault("resumptions", []).append(
            {
                "utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "from_step": step,
                "checkpoint": Path(latest).name,
                "reached_step": reached,
                "steps_redone": redone,
            }
        )


def _describe_distribution(dist) -> str:
    d = dist.describe()
    where = f", worker {d['worker_index']} of {len(d['workers'])}" if "workers" in d else ""
    return f"; --strategy {d['strategy']}: {d['replicas']} replica(s){where} (chief: {dist.is_chief})"


def _network_variables(networks) -> list:
    """Every variable of every network (weights and BatchNorm statistics), for the replica check."""
    out, seen = [], set()
    for part in networks.checkpoint_parts().values():
        for variable in part.variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                out.append(variable)
    return out


def _early_stopping(info: dict, row: dict, patience: int) -> tuple[bool, bool]:
    """Update the early-stopping state in ``info`` (run.json) with an epoch's ``row``; (improved, stop)."""
    monitor = "val_total_loss" if "val_total_loss" in row else "train_total_loss"
    state = info.setdefault(
        "early_stopping", {"monitor": monitor, "best": None, "best_epoch": None, "wait": 0, "stopped": False}
    )
    value = row[monitor]
    improved = state["best"] is None or value < state["best"]
    if improved:
        state.update(best=value, best_epoch=row["epoch"], wait=0)
    else:
        state["wait"] += 1
    state["stopped"] = state["wait"] >= patience
    state["patience"] = patience
    return improved, state["stopped"]


def new_run_info(config: Config, architecture_dict: dict, training_data: dict, **fields: Any) -> dict:
    """A new run's run.json content (status "running", no history yet) with family-specific ``fields``."""
    return {
        "format": RUN_FORMAT,
        "name": config.name,
        "model_family": config.model.family,
        "preset": config.model.preset,
        "architecture": architecture_dict,
        **fields,
        "training_data": training_data,
        "global_step": 0,
        "epochs_done": 0,
        "status": "running",
        "tfad_version": __version__,
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "history": [],
    }


def _fit_without_training(
    config: Config,
    model_family,
    records: Sequence[ImageRecord],
    train_records: Sequence[ImageRecord],
    val_records: Sequence[ImageRecord],
) -> FitResult:
    """``tfad fit`` of a family without gradient training (blob analysis, the embedding family): the family
    fits on the training images (one streaming pass) into the run directory."""
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / CONFIG_FILE)
    started = time.perf_counter()
    training_data = {
        "root": str(Path(config.data.root).resolve()),
        "split": config.data.train_split,
        "fingerprint": fingerprint(records),
        "train_images": len(train_records),
        "validation_images": len(val_records),
    }
    info = new_run_info(
        config, architecture(config).to_dict(), training_data, inference_gflops_per_patch=None
    )
    history = _History(run_dir, info)
    history.write_info()
    try:
        summary = model_family.fit_without_training(
            config, list(records), list(train_records), list(val_records), run_dir
        )
    except BaseException:
        history.write_info(status="failed")
        raise
    top_level = {k: summary.pop(k) for k in ("network_build", "inference_gflops_per_patch") if k in summary}
    row = {"epoch": 1, "step": 0, "seconds": round(time.perf_counter() - started, 1)}
    history.add_epoch(row)
    history.write_info(status="finished", epochs_done=1, analyzer=summary, **top_level)
    log.info("fitted %s (%s) in %.1f s: %s", config.name, model_family.title, row["seconds"], summary)
    return FitResult(run_dir, 0, 1, "finished", info["history"])


def _corrupt_summary(counter) -> dict:
    return {"count": counter.count, "paths": counter.paths[:50]}


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _scalars(logs: dict) -> dict[str, float]:
    return {k: float(np.asarray(v).reshape(-1)[0]) for k, v in logs.items()}


def _format_row(row: dict) -> str:
    keys = (
        "train_total_loss",
        "train_generator_loss",
        "train_critic_loss",
        "val_total_loss",
        "val_generator_loss",
        "val_score",
        "train_accuracy",
        "val_accuracy",
        "val_defect_recall",
        "val_dice",
        "seconds",
    )
    return ", ".join(f"{k}={row[k]:.4g}" for k in keys if k in row)


def _write_plots(run_dir: Path, history: list[dict], trainer, dataset) -> None:
    """Loss curves and a few validation samples (input X*, clean X, reconstruction, heatmap)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = run_dir / PLOTS_DIR
    plots.mkdir(exist_ok=True)
    epochs = [h["epoch"] for h in history]
    panels = trainer.plot_panels
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6))
    for ax, (keys, title) in zip(axes, panels, strict=True):
        for i, key in enumerate(keys):
            for split, style in (("train", "-"), ("val", "--")):  # one colour per quantity
                values = [h.get(f"{split}_{key}") for h in history]
                if any(v is not None for v in values):
                    ax.plot(epochs, values, style, color=f"C{i}", marker="o", label=f"{split} {key}")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(plots / "training_curves.png", dpi=90)
    plt.close(fig)

    batch = next(iter(dataset.take(1)))
    n = min(4, int(batch["image"].shape[0]))
    columns, labels = trainer.preview_panels(batch, n)
    fig, axes = plt.subplots(n, len(columns), figsize=(2 * len(columns), 2.1 * n), squeeze=False)
    for i in range(n):
        for j, (title, images, cmap) in enumerate(columns):
            ax = axes[i, j]
            arr = np.asarray(images[i])
            ax.imshow(arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr, cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=8)
        axes[i, 0].set_ylabel(labels[i], fontsize=7)
    fig.suptitle(f"validation samples after epoch {history[-1]['epoch']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(plots / "reconstructions.png", dpi=90)
    plt.close(fig)
