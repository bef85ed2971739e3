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
import json
import logging
import math
import signal
import sys
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

log = logging.getLogger(__name__)

RUN_FORMAT = "tfad-run/1"
RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
HISTORY_FILE = "history.csv"
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"  # under CHECKPOINT_DIR: the best epoch's checkpoint when early stopping is on
SUMMARY_EVERY_STEPS = 50
# Changing these between an interrupted run and its resumption is allowed (everything else must match).
RESUMABLE_CHANGES = (
    "training.epochs",
    "training.checkpoint_every_steps",
    "training.validation_steps",
    "data.root",
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


def class_counts(config: Config, records: Sequence[ImageRecord]) -> list[float]:
    """Expected samples per class in one pass over ``records`` (synthetic defects taken from the good
    images at ``supervised.synthetic_probability``), for class weighting."""
    from tfad.training.inputs import class_indices

    names = config.supervised.classes
    counts = np.bincount(class_indices(records, names), minlength=len(names)).astype(np.float64)
    p = config.supervised.synthetic_probability
    if p > 0:
        counts[-1] += p * counts[0]
        counts[0] *= 1 - p
    return counts.tolist()


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

    def __init__(self, run_dir: Path, info: dict) -> None:
        self.run_dir = run_dir
        self.info = info

    def write_info(self, **changes: Any) -> None:
        self.info.update(changes)
        self.info["updated_utc"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        tmp = self.run_dir / (RUN_FILE + ".tmp")
        tmp.write_text(json.dumps(self.info, indent=2) + "\n")
        tmp.replace(self.run_dir / RUN_FILE)  # never a half-written run.json

    def add_epoch(self, row: dict[str, Any]) -> None:
        history = [h for h in self.info.get("history", []) if h["epoch"] != row["epoch"]] + [row]
        self.write_info(history=history)
        columns = list(dict.fromkeys(k for h in history for k in h))
        with open(self.run_dir / HISTORY_FILE, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(history)


def fit(
    config: Config,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[dict], None] | None = None,
    should_stop: Callable[[int], bool] | None = None,
) -> FitResult:
    """Train ``config``'s model into ``config.run_dir``.

    Args:
        resume: continue the interrupted run in ``config.run_dir`` from its latest checkpoint. Without it an
            existing run directory with checkpoints is an error (nothing is overwritten).
        progress: show a progress bar (tqdm) per epoch.
        on_epoch_end: called with each epoch's history row.
        should_stop: called with the global step after every step; True stops like Ctrl-C (checkpoint,
            status "interrupted"), e.g. for a wall-clock budget.

    Raises:
        RunError, ConfigError, DataError, FileNotFoundError: with a message naming the problem.
    """
    import tensorflow as tf
    from tqdm import tqdm

    from tfad.families import family
    from tfad.models.flops import count_flops
    from tfad.training.inputs import supervised_dataset, training_dataset

    model_family = family(config.model.family)
    records = training_records(config, supervised=model_family.supervised)
    if model_family.supervised:
        config = with_class_names(config, records)
    run_dir = config.run_dir
    ckpt_dir = run_dir / CHECKPOINT_DIR
    has_checkpoint = tf.train.latest_checkpoint(str(ckpt_dir)) is not None
    if resume:
        if not has_checkpoint:
            raise RunError(f"--resume: {run_dir} holds no checkpoint to resume from")
        _check_resumable(load_config(run_dir / CONFIG_FILE), config)
    elif has_checkpoint or (run_dir / RUN_FILE).exists():
        raise RunError(
            f"{run_dir} already holds a training run; pass --resume to continue it, or choose "
            "another name/output_dir"
        )

    train_records, val_records = split_by_product(
        records, config.data.validation_fraction, config.training.seed, stratify=model_family.supervised
    )
    if not model_family.trainable:
        return _fit_without_training(config, model_family, records, train_records, val_records)
    t = config.training
    if len(train_records) < t.batch_size:
        raise ConfigError(
            f"training.batch_size {t.batch_size} is larger than the {len(train_records)} training images"
        )
    steps_per_epoch = t.steps_per_epoch or max(1, len(train_records) // t.batch_size)
    val_steps = 0
    if val_records:
        val_steps = t.validation_steps or max(1, math.ceil(len(val_records) / t.batch_size))

    arch = architecture(config)
    import keras

    keras.utils.set_random_seed(t.seed)  # reproducible initial weights (auditable runs)
    networks = model_family.networks(arch, config)
    trainer = model_family.trainer(networks, config, steps_per_epoch, train_records)
    step_var = tf.Variable(0, dtype=tf.int64, name="global_step", trainable=False)
    checkpoint = tf.train.Checkpoint(**trainer.checkpoint_items(), step=step_var)
    manager = tf.train.CheckpointManager(checkpoint, str(ckpt_dir), max_to_keep=3)

    run_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        info = json.loads((run_dir / RUN_FILE).read_text())
        if info.get("steps_per_epoch") != steps_per_epoch:
            raise RunError(
                f"cannot resume: the training set now gives {steps_per_epoch} steps per epoch, the "
                f"run was started with {info.get('steps_per_epoch')} (did the data change?)"
            )
        log.info(
            "resuming %s from step %d (checkpoint %s)",
            run_dir,
            int(step_var.numpy()),
            manager.latest_checkpoint,
        )
    else:
        info = {
            "format": RUN_FORMAT,
            "name": config.name,
            "model_family": config.model.family,
            "preset": config.model.preset,
            "architecture": arch.to_dict(),
            "inference_gflops_per_patch": count_flops(networks.build_inference_model()) / 1e9,
            "parameters": networks.parameter_counts(),
            "network_build": model_family.build_record(networks),
            "training_data": {
                "root": str(Path(config.data.root).resolve()),
                "split": config.data.train_split,
                "fingerprint": fingerprint(records),
                "train_images": len(train_records),
                "validation_images": len(val_records),
            },
            "steps_per_epoch": steps_per_epoch,
            **({"classes": config.supervised.classes} if model_family.supervised else {}),
            "global_step": 0,
            "epochs_done": 0,
            "status": "running",
            "tfad_version": __version__,
            "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "history": [],
        }
    dump_config(config, run_dir / CONFIG_FILE)
    history = _History(run_dir, info)
    history.write_info(status="running", epochs_planned=t.epochs)

    global_step = int(step_var.numpy())
    total_steps = t.epochs * steps_per_epoch
    if global_step >= total_steps or info.get("early_stopping", {}).get("stopped"):
        log.info("%s already trained %d steps (%d epochs); nothing to do", run_dir, global_step, t.epochs)
        history.write_info(status="finished")
        return FitResult(run_dir, global_step, global_step // steps_per_epoch, "finished", info["history"])
    best_manager = tf.train.CheckpointManager(checkpoint, str(ckpt_dir / BEST_DIR), max_to_keep=1)

    from tfad.data.corrupt import CorruptFileCounter

    corrupt = CorruptFileCounter("train")
    if trainer.supervised:
        classes = config.supervised.classes
        train_ds = supervised_dataset(
            train_records, config, classes, global_step * t.batch_size, corrupt_counter=corrupt
        )
        val_ds = (
            supervised_dataset(val_records, config, classes, augment=False, name="validation").take(val_steps)
            if val_steps
            else None
        )
    else:
        train_ds = training_dataset(
            train_records,
            config,
            start_sample=global_step * t.batch_size,
            corrupt_counter=corrupt,
            name="train",
            with_roi=trainer.needs_roi,
        )
        val_ds = (
            training_dataset(
                val_records, config, augment=False, name="validation", with_roi=trainer.needs_roi
            ).take(val_steps)
            if val_steps
            else None
        )
    train_step = tf.function(trainer.train_step, reduce_retracing=True)
    test_step = tf.function(trainer.test_step, reduce_retracing=True)
    writer = tf.summary.create_file_writer(str(run_dir / "tensorboard"))
    iterator = iter(train_ds)
    log.info(
        "training %s: %d train / %d validation images, %d steps/epoch x %d epochs, batch %d, "
        "%.3f GFLOP/patch inference",
        config.name,
        len(train_records),
        len(val_records),
        steps_per_epoch,
        t.epochs,
        t.batch_size,
        info["inference_gflops_per_patch"],
    )

    stop_requested = False

    def on_sigterm(signum, frame):  # a scheduler's SIGTERM: finish the step, checkpoint, stop
        nonlocal stop_requested
        stop_requested = True

    previous_handler = signal.signal(signal.SIGTERM, on_sigterm) if _main_thread() else None
    status = "interrupted"
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
                disable=not progress,
                unit="step",
                dynamic_ncols=True,
                mininterval=0.5 if sys.stderr.isatty() else 30,
            )
            logs: dict[str, Any] = {}
            for _ in range(first, steps_per_epoch):
                logs = train_step(next(iterator))
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
                    manager.save(checkpoint_number=global_step)
                    history.write_info(global_step=global_step)
                if stop_requested or (should_stop is not None and should_stop(global_step)):
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
                for batch in val_ds:
                    val_logs = test_step(batch)
                row.update({f"val_{k}": v for k, v in _scalars(val_logs).items()})
            trainer.end_epoch(row)  # e.g. GRD-Net's plateau rule; saved with the epoch's checkpoint
            manager.save(checkpoint_number=global_step)
            stop_early = False
            if t.early_stopping_patience:
                improved, stop_early = _early_stopping(info, row, t.early_stopping_patience)
                if improved:
                    best_manager.save(checkpoint_number=global_step)
                row["best_epoch"] = info["early_stopping"]["best_epoch"]
            with writer.as_default(step=global_step):
                for key, value in row.items():
                    if key.startswith(("train_", "val_")):
                        tf.summary.scalar(f"epoch/{key}", value)
            writer.flush()
            history.add_epoch(row)
            history.write_info(global_step=global_step, epochs_done=epoch + 1)
            _write_plots(run_dir, history.info["history"], trainer, val_ds or train_ds)
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
    except (KeyboardInterrupt, StopTraining):
        manager.save(checkpoint_number=global_step)
        log.warning(
            "interrupted at step %d: checkpoint saved in %s; continue with `tfad fit %s --resume`",
            global_step,
            ckpt_dir,
            run_dir / CONFIG_FILE,
        )
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        history.write_info(
            status=status,
            global_step=global_step,
            epochs_done=global_step // steps_per_epoch,
            corrupt_files_skipped=_corrupt_summary(corrupt),
        )
    return FitResult(run_dir, global_step, global_step // steps_per_epoch, status, history.info["history"])


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


def _fit_without_training(
    config: Config,
    model_family,
    records: Sequence[ImageRecord],
    train_records: Sequence[ImageRecord],
    val_records: Sequence[ImageRecord],
) -> FitResult:
    """``tfad fit`` of a family without gradient training (blob analysis): the family fits its analyzer on
    the training images (e.g. a reference image) into the run directory."""
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / CONFIG_FILE)
    started = time.perf_counter()
    info = {
        "format": RUN_FORMAT,
        "name": config.name,
        "model_family": config.model.family,
        "preset": config.model.preset,
        "architecture": architecture(config).to_dict(),
        "inference_gflops_per_patch": None,
        "training_data": {
            "root": str(Path(config.data.root).resolve()),
            "split": config.data.train_split,
            "fingerprint": fingerprint(records),
            "train_images": len(train_records),
            "validation_images": len(val_records),
        },
        "global_step": 0,
        "epochs_done": 0,
        "status": "running",
        "tfad_version": __version__,
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "history": [],
    }
    history = _History(run_dir, info)
    history.write_info()
    summary = model_family.fit_without_training(config, list(records), run_dir)
    row = {"epoch": 1, "step": 0, "seconds": round(time.perf_counter() - started, 1)}
    history.add_epoch(row)
    history.write_info(status="finished", epochs_done=1, analyzer=summary)
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

    plots = run_dir / "plots"
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
