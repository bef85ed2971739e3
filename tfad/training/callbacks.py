"""What ``tfad fit``'s epoch loop does besides training steps: backups (checkpoints) and early stopping.

The loop itself is :mod:`tfad.training.epoch_loop`; run.json and history.csv are
:class:`tfad.training.run_directory.RunHistory`'s, the plots :mod:`tfad.training.plots`'.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import tensorflow as tf

from tfad.rundir import BEST_DIR


class Backups:
    """Checkpoint writing: the chief into ``<run>/checkpoints`` (the run's backups); under multi-worker the
    other workers save too (a save is a step every worker takes) but into a local temporary folder that is
    emptied after every save and removed at the end (TensorFlow's pattern for MultiWorkerMirroredStrategy)."""

    def __init__(self, checkpoint: Any, ckpt_dir: Path, is_chief: bool) -> None:
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


def update_early_stopping(info: dict, row: dict, patience: int) -> tuple[bool, bool]:
    """Update the early-stopping state in ``info`` (run.json's ``early_stopping``) with an epoch's ``row``;
    returns (improved, stop).

    The monitored value is the validation total loss, or the training one when there is no validation;
    ``stop`` once it has not improved for ``patience`` epochs. The state is part of run.json, so a resumed
    run continues counting.
    """
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
