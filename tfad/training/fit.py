"""``tfad fit``: train a configured model into a run directory (:mod:`tfad.rundir`), resumable after an
interruption.

:func:`fit` is a short driver over named parts, each in its own module:

- the strategy a family may use and its step functions (:mod:`tfad.training.strategy`);
- the data selection: which images train and validate (:mod:`tfad.training.data_selection`);
- the run directory: new, resumed or restarted, and its run.json / history.csv
  (:mod:`tfad.training.run_directory`);
- the session built here (:func:`plan_steps`, :func:`build_session`, :func:`restore_session`,
  :func:`new_session_info`) and its input streams (:mod:`tfad.training.streams`);
- the epoch loop with its callbacks: backups, early stopping, history, plots
  (:mod:`tfad.training.epoch_loop`, :mod:`tfad.training.callbacks`, :mod:`tfad.training.plots`);
- or, for a family without gradient training, its one fitting pass (:mod:`tfad.training.fitted`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from tfad.families import family
from tfad.families.base import ModelFamily
from tfad.networks.flops import count_flops
from tfad.rundir import CHECKPOINT_DIR, CONFIG_FILE, RUN_FILE
from tfad.schema import Config, ConfigError, TrainingConfig, check_paths, dump_config
from tfad.training.callbacks import Backups
from tfad.training.data_selection import TrainingData, training_data, with_class_names
from tfad.training.distributed import Distribution, all_workers_mean
from tfad.training.epoch_loop import (
    Callbacks,
    EpochLoop,
    Session,
    SetupInterrupted,
    interruption_record,
    stop_signals_abort_setup,
)
from tfad.training.fitted import fit_without_training
from tfad.training.run_directory import (
    FitResult,
    RunError,
    RunHistory,
    check_run_directory,
    check_same_distribution,
    log_resumption,
    new_run_info,
)
from tfad.training.strategy import describe_distribution, resolve_distribution
from tfad.training.streams import fit_streams

log = logging.getLogger(__name__)


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
        DataError, FileNotFoundError: with a message naming the problem. A config error (a value, or a
        file or folder it names) is raised before anything is written.
    """
    # Before anything is written or built: a missing file or folder (a texture folder, a mask, weights)
    # is reported now, not half-way through with the run directory left "running".
    check_paths(config)
    model_family = family(config.model.family)
    # Then: MultiWorkerMirroredStrategy configures collective ops, which must precede any other TF op
    # (importing TensorFlow runs none).
    dist = resolve_distribution(strategy, model_family.trainable, config.model.family)
    data = training_data(config, model_family, with_fingerprint=dist.is_chief)
    if model_family.uses_labels(config):
        config = with_class_names(config, data.records)
    latest = check_run_directory(
        config, resume, dist.kind == "multi-worker", dist.is_chief, fitted=not model_family.trainable
    )
    if not model_family.trainable:
        return fit_without_training(config, model_family, data, progress=progress)

    steps_per_epoch, val_steps = plan_steps(config.training, data, dist)
    session = build_session(config, model_family, dist, data, steps_per_epoch, val_steps)
    if dist.is_chief:
        config.run_dir.mkdir(parents=True, exist_ok=True)
    if latest:
        info = restore_session(session, latest, config, dist)
    else:
        info = new_session_info(config, model_family, session, data, dist)
    global_step = int(session.step.numpy())
    if dist.kind == "multi-worker":
        check_same_step(dist, global_step, config)
    if latest:
        log_resumption(info, global_step, latest, dist.is_chief)
    if dist.is_chief:
        dump_config(config, config.run_dir / CONFIG_FILE)
    history = RunHistory(config.run_dir, info, write=dist.is_chief)
    # From "running" to the loop's own signal handling (streams, a feature cache: minutes), a stop signal
    # ends the session with a checkpoint --resume continues from. Multi-worker: a restarted job resumes
    # from the chief's backup by itself, and a save here would be a collective the others never join.
    guard = stop_signals_abort_setup() if dist.kind != "multi-worker" else contextlib.nullcontext()
    try:
        with guard:
            history.write_info(status="running", epochs_planned=config.training.epochs)
            epochs = config.training.epochs
            if global_step >= epochs * steps_per_epoch or info.get("early_stopping", {}).get("stopped"):
                log.info(
                    "%s already trained %d steps (%d epochs); nothing to do",
                    config.run_dir,
                    global_step,
                    epochs,
                )
                history.write_info(status="finished")
                session.backups.close()
                epochs_done = global_step // steps_per_epoch
                return FitResult(config.run_dir, global_step, epochs_done, "finished", info["history"])
            streams = fit_streams(config, data, session.trainer, dist, val_steps, global_step)
            loop = EpochLoop(
                config,
                dist,
                session,
                streams,
                history,
                Callbacks(progress, on_epoch_end, should_stop, on_train_end),
            )
    except SetupInterrupted as stop:
        return _interrupted_in_setup(config, session, history, global_step, latest, stop.reason)
    log.info(
        "training %s: %d train / %d validation images, %d steps/epoch x %d epochs, batch %d, "
        "%.3f GFLOP/patch inference%s",
        config.name,
        data.train_count,
        data.val_count,
        steps_per_epoch,
        epochs,
        config.training.batch_size,
        info["inference_gflops_per_patch"],
        describe_distribution(dist) if dist.distributed else "",
    )
    return loop.run(global_step)


def _interrupted_in_setup(
    config: Config, session: Session, history: RunHistory, step: int, latest: str | None, reason: str
) -> FitResult:
    """End a session stopped by a signal before its first step: a checkpoint to resume from (the restored
    one, or a new one at step 0), the interruption and status "interrupted" in run.json."""
    if latest is None:
        session.backups.save(step)
    session.backups.close()
    checkpoint = tf.train.latest_checkpoint(str(config.run_dir / CHECKPOINT_DIR))
    name = checkpoint.rsplit("/", 1)[-1] if checkpoint else None
    history.info.setdefault("interruptions", []).append(interruption_record(reason, step, name, False))
    history.write_info(status="interrupted", global_step=step)
    log.warning(
        "%s before training began (step %d): checkpoint %s saved; continue with `tfad fit %s --resume`",
        reason,
        step,
        name,
        config.run_dir / CONFIG_FILE,
    )
    return FitResult(
        config.run_dir, step, step // session.steps_per_epoch, "interrupted", history.info["history"]
    )


def plan_steps(training: TrainingConfig, data: TrainingData, dist: Distribution) -> tuple[int, int]:
    """(Steps per epoch, validation steps per epoch); ConfigError when the batch cannot be filled from the
    data or split evenly over the replicas and workers."""
    batch_size = training.batch_size
    if data.train_count < batch_size:
        raise ConfigError(
            f"training.batch_size {batch_size} is larger than the {data.train_count} training images"
        )
    if batch_size % dist.num_replicas:
        raise ConfigError(
            f"training.batch_size {batch_size} must be divisible by the {dist.num_replicas} replicas of "
            f"--strategy {dist.kind} (the global batch is split evenly)"
        )
    if data.shards is None and dist.num_workers > 1:
        for what, count in (("training", len(data.train)), ("validation", len(data.val))):
            if 0 < count < dist.num_workers:
                raise ConfigError(f"{count} {what} images cannot be shared by {dist.num_workers} workers")
    steps_per_epoch = training.steps_per_epoch or max(1, data.train_count // batch_size)
    val_steps = 0
    if data.val_count:
        val_steps = training.validation_steps or max(1, math.ceil(data.val_count / batch_size))
    return steps_per_epoch, val_steps


def build_session(
    config: Config,
    model_family: ModelFamily,
    dist: Distribution,
    data: TrainingData,
    steps_per_epoch: int,
    val_steps: int,
) -> Session:
    """The family's networks and compiled trainer and the step counter (one copy per replica), with the
    backups of all of them."""
    arch = model_family.architecture(config)
    with dist.scope():  # networks, trainer, optimizers, metrics and the step counter: one copy per replica
        keras.utils.set_random_seed(config.training.seed)  # reproducible initial weights (auditable runs)
        networks = model_family.networks(arch, config)
        trainer = model_family.trainer(networks, config, steps_per_epoch, data.train)
        step = tf.Variable(0, dtype=tf.int64, name="global_step", trainable=False)
    if dist.distributed:
        trainer.gradient_scale = 1.0 / dist.num_replicas  # losses are local means: scale to the global batch
    checkpoint = tf.train.Checkpoint(**trainer.checkpoint_items(), step=step)
    backups = Backups(checkpoint, config.run_dir / CHECKPOINT_DIR, dist.is_chief)
    return Session(networks, trainer, step, checkpoint, backups, steps_per_epoch, val_steps)


def restore_session(session: Session, latest: str, config: Config, dist: Distribution) -> dict:
    """Restore the ``latest`` checkpoint into ``session``; the run's run.json. RunError when the data or the
    strategy no longer match the run's."""
    session.checkpoint.restore(latest).assert_existing_objects_matched()
    info = json.loads((config.run_dir / RUN_FILE).read_text())
    if info.get("steps_per_epoch") != session.steps_per_epoch:
        raise RunError(
            f"cannot resume: the training set now gives {session.steps_per_epoch} steps per epoch, the "
            f"run was started with {info.get('steps_per_epoch')} (did the data change?)"
        )
    check_same_distribution(info, dist.describe())
    return info


def new_session_info(
    config: Config, model_family: ModelFamily, session: Session, data: TrainingData, dist: Distribution
) -> dict:
    """run.json of a new trained run: architecture, inference cost, parameters, data, steps, strategy."""
    networks = session.networks
    info = new_run_info(
        config,
        model_family.architecture(config).to_dict(),
        data.description,
        inference_gflops_per_patch=inference_gflops(networks),
        parameters=networks.parameter_counts(),
        network_build=model_family.build_record(networks),
        steps_per_epoch=session.steps_per_epoch,
        **({"classes": config.supervised.classes} if model_family.uses_labels(config) else {}),
    )
    if dist.distributed:
        info["distribution"] = dist.describe()
    return info


def inference_gflops(networks: Any) -> float:
    """GFLOP per patch of the inference path: the networks' own analytic count where they have one, else
    :func:`count_flops` of the inference model."""
    if hasattr(networks, "inference_gflops"):
        return float(networks.inference_gflops())
    return count_flops(networks.build_inference_model()) / 1e9


def check_same_step(dist: Distribution, global_step: int, config: Config) -> None:
    """Multi-worker: every worker must continue from the same backup; differing steps mean the run directory
    is not one shared folder (e.g. output_dir on local disks). RunError naming it."""
    mean, mean_square = all_workers_mean(dist.strategy, [global_step, global_step**2])
    if abs(mean_square - mean * mean) > 1e-6 * max(1.0, mean_square):
        raise RunError(
            f"the workers restored different steps (this one {global_step}, mean {mean:g}): output_dir "
            f"{config.output_dir} must be storage shared by all workers (the chief's checkpoints)"
        )
