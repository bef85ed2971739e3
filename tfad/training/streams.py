"""The input streams of one ``tfad fit`` session: endless training batches continuing at the step reached,
one pass of validation batches, and the samples of the training plots. Under a strategy every worker runs
its own pipelines (:mod:`tfad.training.inputs`), each yielding its replicas' share of the global batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from tfad.data.corrupt import CorruptFileCounter
from tfad.schema import Config
from tfad.training.data_selection import TrainingData
from tfad.training.distributed import Distribution
from tfad.training.inputs import class_table, supervised_dataset, training_dataset


@dataclass
class FitStreams:
    """What :func:`fit_streams` builds."""

    train: Any  # endless training batches (a distributed dataset under a strategy)
    validation: Any | None  # the validation batches (None without validation)
    preview: Any | None  # the plots' samples: the chief's own share, outside tf.distribute (None elsewhere)
    corrupt: CorruptFileCounter  # the unreadable training images skipped


def fit_streams(
    config: Config, data: TrainingData, trainer: Any, dist: Distribution, val_steps: int, global_step: int
) -> FitStreams:
    """The streams of ``trainer`` (P_q batches, or labelled ones for a supervised trainer) on ``data``; the
    training stream starts at sample ``global_step * batch_size`` (a resumed run continues it)."""
    # A trainer with streams of its own (e.g. SuperSimpleNet's feature cache): (train, validation, preview,
    # corrupt counter), or None for the streams below
    own = getattr(trainer, "fit_streams", None)
    if own is not None:
        streams = own(config, data, dist, val_steps, global_step)
        if streams is not None:
            return FitStreams(*streams)
    batch_size = config.training.batch_size
    corrupt = CorruptFileCounter("train")
    classes = config.supervised.classes if trainer.supervised else None
    tables = {}
    if trainer.supervised and data.shards is not None:
        tables["train"] = class_table(data.train_records_by_index, classes)
        if data.val_records_by_index:
            tables["validation"] = class_table(data.val_records_by_index, classes)

    def make_input(
        validation: bool, batch: int, num_pipelines: int, pipeline_id: int, start: int = 0
    ) -> tf.data.Dataset:
        # One input pipeline: the training stream (from ``start``) or the validation stream of this worker.
        name = "validation" if validation else "train"
        common = dict(
            augment=not validation,
            corrupt_counter=None if validation else corrupt,
            name=name,
            shards=data.validation_shards if validation else data.shards,
            batch_size=batch,
            num_pipelines=num_pipelines,
            pipeline_id=pipeline_id,
        )
        records = data.val if validation else data.train
        if trainer.supervised:
            return supervised_dataset(
                records, config, classes, start, classes_by_index=tables.get(name), **common
            )
        return training_dataset(records, config, start, with_roi=trainer.needs_roi, **common)

    if not dist.distributed:
        train = make_input(False, batch_size, 1, 0, global_step * batch_size)
        validation = make_input(True, batch_size, 1, 0).take(val_steps) if val_steps else None
        return FitStreams(train, validation, validation or train, corrupt)

    # Each step takes a per-replica batch for every replica: batch_size / pipelines samples per pipeline.
    def train_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        share = batch_size // ctx.num_input_pipelines
        return make_input(
            False, ctx.get_per_replica_batch_size(batch_size), ctx.num_input_pipelines,
            ctx.input_pipeline_id, global_step * share,
        )  # fmt: skip

    def val_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        return make_input(
            True, ctx.get_per_replica_batch_size(batch_size), ctx.num_input_pipelines, ctx.input_pipeline_id
        )

    train = dist.strategy.distribute_datasets_from_function(train_fn)
    validation = dist.strategy.distribute_datasets_from_function(val_fn) if val_steps else None
    preview = None
    if dist.is_chief:
        per_replica = batch_size // dist.num_replicas
        preview = make_input(bool(val_steps), per_replica, dist.num_workers, dist.worker_index)
    return FitStreams(train, validation, preview, corrupt)
