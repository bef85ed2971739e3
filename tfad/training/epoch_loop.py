"""``tfad fit``'s epoch loop: training steps from the step reached, and at the end of every epoch the
validation pass and the callbacks (the trainer's own, backups, early stopping, TensorBoard, history, plots).

The loop is written out (instead of ``Model.fit``) because it must resume in the middle of an epoch: the
sample stream, the learning-rate schedule and the optimizer state all continue from the saved step, so at
most ``checkpoint_every_steps`` steps are redone and no finished epoch is lost.

Stopping: SIGTERM, Ctrl-C (SIGINT) and the caller's ``should_stop`` are requests, acted on at the next step
boundary (never inside a step, a checkpoint write or an epoch's end): the loop saves a checkpoint of that
step, notes the interruption in run.json (status "interrupted", ``interruptions``) and returns, and
``tfad fit --resume`` continues from that step. A request on an epoch's last step (or during its validation)
first ends the epoch, so its history row, early stopping and plateau rule are never skipped. A second Ctrl-C
stops at once without a checkpoint (the resumed run redoes the steps since the last backup). Under a
strategy every worker stops at the same step.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from tfad.rundir import CHECKPOINT_DIR, CONFIG_FILE, TENSORBOARD_DIR
from tfad.schema import Config
from tfad.training.callbacks import Backups, update_early_stopping
from tfad.training.distributed import Distribution, replica_divergence, wait_for_all_workers
from tfad.training.plots import write_plots
from tfad.training.run_directory import FitResult, RunHistory
from tfad.training.strategy import PeerLostError, error_reason, network_variables, peer_errors, step_functions
from tfad.training.streams import FitStreams

log = logging.getLogger(__name__)

SUMMARY_EVERY_STEPS = 50
# The chief notes the step reached in run.json at most this often (besides every checkpoint), so that a
# run resumed after a crash can log how many steps since the last backup it redoes.
PROGRESS_NOTE_SECONDS = 2.0
# Signals turned into a stop request while the loop runs (a scheduler's SIGTERM, Ctrl-C).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopTraining(Exception):
    """Raised inside the loop at a step boundary when a stop was requested (signal, ``should_stop``)."""


class SetupInterrupted(Exception):
    """A stop signal (SIGTERM, SIGINT) arrived while ``tfad fit`` was setting up, before the first step or
    during a fitted family's pass; ``reason`` names the signal."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{reason} during set-up")
        self.reason = reason


@contextlib.contextmanager
def stop_signals_abort_setup() -> Iterator[None]:
    """While set-up work runs (input streams, a feature cache, a fitted family's pass), SIGTERM and SIGINT
    raise :class:`SetupInterrupted` at once: there is no step to finish, and the default handlers would
    kill the process with run.json still saying "running". Main thread only (where Python runs signal
    handlers); the previous handlers are restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: Any) -> None:
        raise SetupInterrupted(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def interruption_record(reason: str | None, step: int, checkpoint: str | None, forced: bool) -> dict:
    """One entry of run.json's ``interruptions``: when, what asked, the step reached, the checkpoint
    ``--resume`` continues from (None: a fitted family's pass, which --resume redoes)."""
    return {
        "utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "reason": reason,
        "step": step,
        "checkpoint": checkpoint,
        "forced": forced,
    }


@dataclass
class Session:
    """What one ``tfad fit`` session trains (built under the strategy's scope) and where it saves it."""

    networks: Any  # the family's networks
    trainer: Any  # the family's training wrapper (``train_step``, ``test_step``, ``end_epoch``, ...)
    step: tf.Variable  # the global step, checkpointed with the networks and optimizers
    checkpoint: tf.train.Checkpoint  # all of the above (the trainer's checkpoint_items and the step)
    backups: Backups
    steps_per_epoch: int
    val_steps: int  # validation batches per epoch (0: no validation)


@dataclass
class Callbacks:
    """The caller's hooks (``fit``'s arguments of the same names)."""

    progress: bool = True
    on_epoch_end: Callable[[dict], None] | None = None
    should_stop: Callable[[int], bool] | None = None
    on_train_end: Callable[[Any], None] | None = None


class EpochLoop:
    """Trains ``session`` on ``streams`` from ``global_step`` to ``training.epochs``, writing ``history``."""

    def __init__(
        self,
        config: Config,
        dist: Distribution,
        session: Session,
        streams: FitStreams,
        history: RunHistory,
        callbacks: Callbacks,
    ) -> None:
        self.config, self.dist, self.session, self.streams = config, dist, session, streams
        self.history, self.callbacks = history, callbacks
        self.trainer = session.trainer
        self.run_train_step, self.run_test_step = step_functions(dist, session.trainer, session.networks)
        self.writer = (
            tf.summary.create_file_writer(str(config.run_dir / TENSORBOARD_DIR))
            if dist.is_chief
            else tf.summary.create_noop_writer()
        )
        self.global_step = 0  # steps done (restored: the step of the checkpoint)
        self.stop_requested = False  # a stop signal arrived: finish the step, checkpoint, stop
        self.stop_reason: str | None = None  # what asked first: "SIGTERM", "SIGINT", "should_stop", ...
        self.stop_wish = False  # this worker's request, shared with the others in the next step
        self.stop_at_epoch_end = False  # a stop agreed on an epoch's last step: end that epoch first
        self.last_note = time.monotonic()

    def run(self, global_step: int) -> FitResult:
        """Train until the last epoch (or early stopping, or a stop request); the run's final status."""
        self.global_step = global_step
        multi_worker = self.dist.kind == "multi-worker"
        iterator = iter(self.streams.train)
        previous_handlers = self._catch_stop_signals()
        status = "interrupted"
        stopped_together = False
        total_steps = self.config.training.epochs * self.session.steps_per_epoch
        try:
            while self.global_step < total_steps:
                if self._epoch(iterator):  # early stopping
                    break
                if self.global_step < total_steps and self._stop_at_epoch_boundary():
                    raise StopTraining
            status = "finished"
            if self.dist.distributed:
                self._check_replicas()
            if self.callbacks.on_train_end:
                self.callbacks.on_train_end(self.trainer)
        except StopTraining:
            stopped_together = True  # at a step boundary; under a strategy: every worker, the same step
            self.session.backups.save(self.global_step)
            self._note_interruption(self._checkpoint_name(), forced=False)
            log.warning(
                "interrupted at step %d (%s): checkpoint saved in %s; continue with `tfad fit %s --resume`",
                self.global_step,
                self.stop_reason,
                self.config.run_dir / CHECKPOINT_DIR,
                self.config.run_dir / CONFIG_FILE,
            )
        except KeyboardInterrupt:
            # A second Ctrl-C, in the middle of anything: the weights, the step counter and a checkpoint
            # being written may disagree, so nothing is saved; --resume continues from the last backup.
            self.stop_reason = self.stop_reason or "SIGINT"
            backup = self._checkpoint_name()
            self._note_interruption(backup, forced=True)
            log.warning(
                "stopped at once at step %d without a checkpoint: `tfad fit %s --resume` continues from the "
                "last backup (%s) and redoes the steps since",
                self.global_step,
                self.config.run_dir / CONFIG_FILE,
                backup,
            )
        except tf.errors.OpError as err:
            if not (multi_worker and isinstance(err, peer_errors())):
                raise
            status = "failed"
            raise self._peer_lost(err, self.global_step) from err
        finally:
            for signum, handler in previous_handlers.items():
                # None: the handler was not installed from Python; the default is the closest to it
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)
            self.session.backups.close()
            self.writer.flush()
            corrupt = self.streams.corrupt
            self.history.write_info(
                status=status,
                global_step=self.global_step,
                epochs_done=self.global_step // self.session.steps_per_epoch,
                corrupt_files_skipped={"count": corrupt.count, "paths": corrupt.paths[:50]},
            )
        global_step = self.global_step
        if multi_worker and (status == "finished" or stopped_together):
            # A last barrier: no worker leaves before the chief has written everything (run.json above).
            log.info("waiting for every worker to finish (chief: everything is written)")
            if wait_for_all_workers(f"tfad-fit-end-{global_step}"):
                log.info("all %d workers finished at step %d", self.dist.num_workers, global_step)
        epochs_done = global_step // self.session.steps_per_epoch
        return FitResult(self.config.run_dir, global_step, epochs_done, status, self.history.info["history"])

    def _catch_stop_signals(self) -> dict[int, Any]:
        """Turn SIGTERM and SIGINT into a stop request at the next step boundary; a second SIGINT (Ctrl-C
        pressed again) raises KeyboardInterrupt at once. Only in the main thread (where Python runs signal
        handlers); returns the handlers replaced, to restore."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, frame: Any) -> None:
            name = signal.Signals(signum).name
            if self.stop_requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            if not self.stop_requested:
                log.warning(
                    "%s: stopping after the current step (a checkpoint is saved; Ctrl-C again stops at once "
                    "without one)",
                    name,
                )
            self.stop_requested = True
            self.stop_reason = self.stop_reason or name

        return {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}

    def _checkpoint_name(self) -> str | None:
        """The name of the run's latest backup (e.g. "ckpt-20"), None before the first."""
        latest = tf.train.latest_checkpoint(str(self.config.run_dir / CHECKPOINT_DIR))
        return latest.rsplit("/", 1)[-1] if latest else None

    def _note_interruption(self, checkpoint: str | None, forced: bool) -> None:
        """Append the interruption to run.json's ``interruptions`` (written with the status at the end):
        what asked, the step reached, the checkpoint --resume continues from."""
        record = interruption_record(self.stop_reason, self.global_step, checkpoint, forced)
        self.history.info.setdefault("interruptions", []).append(record)

    def _epoch(self, iterator: Any) -> bool:
        """The rest of the epoch the global step is in, then its end; whether early stopping ends training."""
        steps_per_epoch, epochs = self.session.steps_per_epoch, self.config.training.epochs
        epoch, first = divmod(self.global_step, steps_per_epoch)
        if first:
            log.info("epoch %d continues at step %d of %d", epoch + 1, first + 1, steps_per_epoch)
        self.trainer.reset_metrics()
        started = time.perf_counter()
        bar = tqdm(
            total=steps_per_epoch,
            initial=first,
            desc=f"epoch {epoch + 1}/{epochs}",
            disable=not (self.callbacks.progress and self.dist.is_chief),
            unit="step",
            dynamic_ncols=True,
            mininterval=0.5 if sys.stderr.isatty() else 30,
        )
        logs: dict[str, Any] = {}
        for index in range(first, steps_per_epoch):
            logs, stop_everywhere = self.run_train_step(next(iterator), self.stop_wish)
            self.global_step += 1
            self.session.step.assign(self.global_step)
            bar.update(1)
            self._after_step(self.global_step, logs, bar)
            if self._stop_agreed(self.global_step, stop_everywhere):
                if index < steps_per_epoch - 1:
                    bar.close()
                    raise StopTraining
                # The epoch's last step: its validation, history row and callbacks come first (a resumed run
                # starts with the next epoch and would never write them), then the loop stops.
                self.stop_at_epoch_end = True
        bar.close()
        row = {
            "epoch": epoch + 1,
            "step": self.global_step,
            "learning_rate": self.trainer.learning_rate(self.global_step),
            "seconds": round(time.perf_counter() - started, 1),
            "steps_this_session": steps_per_epoch - first,
        }
        row.update({f"train_{k}": v for k, v in scalars(logs).items()})
        row.update({f"val_{k}": v for k, v in scalars(self._validate()).items()})
        return self._end_epoch(row, self.global_step)

    def _after_step(self, global_step: int, logs: dict, bar: Any) -> None:
        """Summaries every SUMMARY_EVERY_STEPS steps, backups every ``checkpoint_every_steps``, progress
        notes in between."""
        if global_step % SUMMARY_EVERY_STEPS == 0 or global_step == 1:
            values = scalars(logs)
            bar.set_postfix({key: f"{values[key]:.4g}" for key in self.trainer.progress_keys})
            with self.writer.as_default(step=global_step):
                for name, value in values.items():
                    tf.summary.scalar(f"train/{name}", value)
                tf.summary.scalar("learning_rate", self.trainer.learning_rate(global_step))
        if global_step % self.config.training.checkpoint_every_steps == 0:
            self.session.backups.save(global_step)
            self.history.write_info(global_step=global_step, progress_step=global_step)
            self.last_note = time.monotonic()
        elif time.monotonic() - self.last_note > PROGRESS_NOTE_SECONDS:
            # How far the run got: after a crash, the resumed run logs how many steps it redoes.
            self.history.write_info(progress_step=global_step)
            self.last_note = time.monotonic()

    def _stop_agreed(self, global_step: int, stop_everywhere: bool) -> bool:
        """Whether to stop after this step: on one device when a stop was requested; under a strategy
        after the next step, which shares this worker's wish with the others (``stop_everywhere``), so all
        stop together."""
        should_stop = self.callbacks.should_stop
        wish = self.stop_requested or (should_stop is not None and should_stop(global_step))
        if wish and self.stop_reason is None:
            self.stop_reason = "should_stop"
        if self.dist.distributed:
            if stop_everywhere and self.stop_reason is None:
                self.stop_reason = "another worker's request"
            self.stop_wish = self.stop_wish or wish
            return bool(stop_everywhere)
        return wish

    def _stop_at_epoch_boundary(self) -> bool:
        """After an epoch's end: stop when a stop was agreed on its last step, or (one device) when a signal
        arrived during its validation or callbacks."""
        return self.stop_at_epoch_end or (not self.dist.distributed and self.stop_requested)

    def _validate(self) -> dict[str, Any]:
        """The validation logs of one pass (empty without validation)."""
        if self.streams.validation is None:
            return {}
        self.trainer.reset_metrics()
        val_logs: dict[str, Any] = {}
        if self.dist.distributed:
            val_iterator = iter(self.streams.validation)  # the same validation batches every epoch
            for _ in range(self.session.val_steps):
                val_logs, _ = self.run_test_step(next(val_iterator))
        else:
            for batch in self.streams.validation:
                val_logs, _ = self.run_test_step(batch)
        return val_logs

    def _end_epoch(self, row: dict[str, Any], global_step: int) -> bool:
        """The epoch's callbacks; whether early stopping ends the training."""
        info, backups, patience = (
            self.history.info,
            self.session.backups,
            self.config.training.early_stopping_patience,
        )
        self.trainer.end_epoch(row)  # e.g. GRD-Net's plateau rule; saved with the epoch's checkpoint
        backups.save(global_step)
        stop_early = False
        if patience:
            improved, stop_early = update_early_stopping(info, row, patience)
            if improved:
                backups.save_best(global_step)
            row["best_epoch"] = info["early_stopping"]["best_epoch"]
        with self.writer.as_default(step=global_step):
            for key, value in row.items():
                if key.startswith(("train_", "val_")):
                    tf.summary.scalar(f"epoch/{key}", value)
        self.writer.flush()
        self.history.add_epoch(row)
        self.history.write_info(global_step=global_step, epochs_done=row["epoch"], progress_step=global_step)
        if self.dist.is_chief:
            write_plots(self.config.run_dir, info["history"], self.trainer, self.streams.preview)
        log.info("epoch %d/%d: %s", row["epoch"], self.config.training.epochs, format_row(row))
        if self.callbacks.on_epoch_end:
            self.callbacks.on_epoch_end(row)
        if stop_early:
            state = info["early_stopping"]
            log.info(
                "early stopping after epoch %d: no lower %s for %d epochs; the run's model is epoch %d's",
                row["epoch"],
                state["monitor"],
                state["wait"],
                state["best_epoch"],
            )
        return stop_early

    def _check_replicas(self) -> None:
        """Record (and log) whether the replicas end with the same weights."""
        divergence = replica_divergence(self.dist.strategy, network_variables(self.session.networks))
        self.history.info.setdefault("distribution", self.dist.describe())["replica_divergence"] = divergence
        if divergence:
            log.warning("the replicas' weights differ at the end (mean max |difference| %.3g)", divergence)
        else:
            log.info("all %d replicas hold identical weights", self.dist.num_replicas)

    def _peer_lost(self, err: Exception, global_step: int) -> PeerLostError:
        """The error (logged, and noted in run.json) of a multi-worker job that lost a worker."""
        saved = tf.train.latest_checkpoint(str(self.config.run_dir / CHECKPOINT_DIR))
        step_saved = int(saved.rsplit("-", 1)[-1]) if saved else 0
        message = (
            f"a worker of the multi-worker job was lost at step {global_step} ({type(err).__name__}: "
            f"{error_reason(err)}); restart every worker with the same TF_CONFIG: "
            f"they resume from the chief's backup at step {step_saved} ({global_step - step_saved} step(s) "
            "redone)"
        )
        log.error("%s", message)
        self.history.info.update(backup_step=step_saved, failure=message)
        return PeerLostError(message)


def scalars(logs: dict) -> dict[str, float]:
    """Step logs (rank-1 tensors) as floats."""
    return {k: float(np.asarray(v).reshape(-1)[0]) for k, v in logs.items()}


def format_row(row: dict) -> str:
    """The log line of an epoch's history row (its main losses and metrics)."""
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
