"""A ``tfad fit`` run directory (names: :mod:`tfad.rundir`): may it be used as asked (a new run, a
resumption, a restarted multi-worker job), what run.json starts with, and its bookkeeping while training
(run.json, history.csv), and what the fit did (:class:`FitResult`).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tensorflow as tf

from tfad import __version__
from tfad.config import Config, load_config
from tfad.rundir import CHECKPOINT_DIR, CONFIG_FILE, HISTORY_FILE, RUN_FILE, RUN_FORMAT

log = logging.getLogger(__name__)

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


@dataclass
class FitResult:
    """What ``tfad fit`` did in the run directory."""

    run_dir: Path
    global_step: int
    epochs_done: int
    status: str  # "finished" | "interrupted"
    history: list[dict[str, Any]]


def check_run_directory(
    config: Config, resume: bool, multi_worker: bool, chief: bool, fitted: bool = False
) -> str | None:
    """The checkpoint a run continues from (None: it starts at step 0), after checking that the run
    directory may be used as asked.

    Without ``resume`` an existing run directory (run.json or checkpoints) is an error, nothing is
    overwritten; with it, a run directory without a checkpoint is. Under multi-worker a restarted job
    resumes from the chief's latest backup by itself (BackupAndRestore semantics); an attempt that died
    before its first backup starts again at step 0. A run that continues must have the same config but
    for :data:`RESUMABLE_CHANGES`. A ``fitted`` family (one pass, no checkpoints) resumes an unfinished run
    by fitting it again.

    Raises:
        RunError: the message says what to do.
    """
    run_dir = config.run_dir
    latest = tf.train.latest_checkpoint(str(run_dir / CHECKPOINT_DIR))
    earlier_attempt = (run_dir / RUN_FILE).exists()
    if fitted and resume:
        status = json.loads((run_dir / RUN_FILE).read_text()).get("status") if earlier_attempt else None
        if status is None:
            raise RunError(f"--resume: {run_dir} holds no earlier fit to resume")
        if status == "finished":
            raise RunError(f"--resume: {run_dir} is already fitted (status finished); nothing to resume")
        check_resumable(load_config(run_dir / CONFIG_FILE), config)
        log.info("%s: fitting again the run that ended %r", run_dir, status)
        return None
    if resume and latest is None:
        raise RunError(f"--resume: {run_dir} holds no checkpoint to resume from")
    if not resume and not multi_worker and (latest is not None or earlier_attempt):
        raise RunError(
            f"{run_dir} already holds a training run; pass --resume to continue it, or choose "
            "another name/output_dir"
        )
    if latest is not None or (multi_worker and chief and earlier_attempt):
        check_resumable(load_config(run_dir / CONFIG_FILE), config)
    if latest is None and multi_worker and chief and earlier_attempt:
        before = json.loads((run_dir / RUN_FILE).read_text())
        reached = max(int(before.get("progress_step") or 0), int(before.get("global_step") or 0))
        log.warning(
            "%s: an earlier attempt of this run left no backup (it had reached step %s): starting at step 0",
            run_dir,
            reached,
        )
    return latest


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key != "overrides":
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def check_resumable(saved: Config, new: Config) -> None:
    """RunError naming every changed key of the config, but those of :data:`RESUMABLE_CHANGES`."""
    a, b = _flatten(saved.to_dict()), _flatten(new.to_dict())
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        details = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in changed)
        raise RunError(
            f"cannot resume: the configuration changed ({details}); only "
            f"{', '.join(RESUMABLE_CHANGES)} may change between an interruption and --resume"
        )


def _shape(distribution: dict | None) -> tuple[int, int]:
    d = distribution or {}
    return int(d.get("replicas", 1)), len(d.get("workers", [])) or 1


def check_same_distribution(info: dict, distribution: dict) -> None:
    """A run resumes on as many replicas and workers as it was trained on: the per-replica batch, the
    per-worker data shares and their sample streams depend on them."""
    before, now = _shape(info.get("distribution")), _shape(distribution)
    if before != now:
        raise RunError(
            f"cannot resume: the run was trained on {before[0]} replica(s) in {before[1]} worker(s), this "
            f"job has {now[0]} in {now[1]}; resume with the same strategy and cluster size"
        )


def log_resumption(info: dict, step: int, latest: str, chief: bool) -> None:
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


class RunHistory:
    """The run's bookkeeping: run.json (``info``, rewritten atomically on every change) and history.csv (one
    row per finished epoch)."""

    def __init__(self, run_dir: Path, info: dict, write: bool = True) -> None:
        self.run_dir = run_dir
        self.info = info
        self.write = write  # False on non-chief workers: they keep the bookkeeping in memory only

    def write_info(self, **changes: Any) -> None:
        """Update run.json with ``changes`` (and the time)."""
        self.info.update(changes)
        self.info["updated_utc"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if not self.write:
            return
        tmp = self.run_dir / (RUN_FILE + ".tmp")
        tmp.write_text(json.dumps(self.info, indent=2) + "\n")
        tmp.replace(self.run_dir / RUN_FILE)  # never a half-written run.json

    def add_epoch(self, row: dict[str, Any]) -> None:
        """Record an epoch's row (replacing an earlier row of the same epoch: a redone epoch) in run.json's
        ``history`` and history.csv (columns: every key of any row, first seen first)."""
        history = [h for h in self.info.get("history", []) if h["epoch"] != row["epoch"]] + [row]
        self.write_info(history=history)
        if not self.write:
            return
        columns = list(dict.fromkeys(k for h in history for k in h))
        with open(self.run_dir / HISTORY_FILE, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(history)
