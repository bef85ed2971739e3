"""How ``tfad fit`` runs under its ``--strategy`` (the strategies: :mod:`tfad.training.distributed`): the
strategy a family may use, the train and test step functions, and a lost multi-worker peer."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from tfad.training.distributed import (
    ClusterConfigError,
    Distribution,
    StrategyChoice,
    choose_strategy,
    create_distribution,
    distributed_step,
    synced_variables,
)
from tfad.training.run_directory import RunError

log = logging.getLogger(__name__)

#: A step function: (batch, this worker's stop wish) -> (logs, stop everywhere).
StepFunction = Callable[[Any, bool], tuple[dict, bool]]


class PeerLostError(RunError):
    """A multi-worker run lost a worker (killed, crashed, unreachable): restart the whole job; every worker
    resumes from the chief's latest backup."""


def resolve_distribution(strategy: Any, trainable: bool, family_name: str) -> Distribution:
    """The :class:`Distribution` of ``fit``'s ``strategy`` argument for a family (``trainable``: with gradient
    training); ClusterConfigError for a strategy that does not apply to it, before any TensorFlow op."""
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


def step_functions(dist: Distribution, trainer: Any, networks: Any) -> tuple[StepFunction, StepFunction]:
    """The trainer's ``train_step`` and ``test_step`` as :data:`StepFunction` s: under a strategy one step on
    every replica, the stop wishes of all workers combined (:func:`distributed_step`); on one device a
    ``tf.function`` and the wish returned as is."""
    if dist.distributed:
        return (
            distributed_step(dist.strategy, trainer.train_step, synced_variables(networks)),
            distributed_step(dist.strategy, trainer.test_step),
        )
    train_fn = tf.function(trainer.train_step, reduce_retracing=True)
    test_fn = tf.function(trainer.test_step, reduce_retracing=True)

    def run_train_step(batch: Any, stop: bool = False) -> tuple[dict, bool]:
        return train_fn(batch), stop

    def run_test_step(batch: Any, stop: bool = False) -> tuple[dict, bool]:
        return test_fn(batch), stop

    return run_train_step, run_test_step


def describe_distribution(dist: Distribution) -> str:
    """The log line's description of the strategy (replicas, this worker, chief)."""
    d = dist.describe()
    where = f", worker {d['worker_index']} of {len(d['workers'])}" if "workers" in d else ""
    return f"; --strategy {d['strategy']}: {d['replicas']} replica(s){where} (chief: {dist.is_chief})"


def network_variables(networks: Any) -> list:
    """Every variable of every network (weights and BatchNorm statistics), for the replica check."""
    out, seen = [], set()
    for part in networks.checkpoint_parts().values():
        for variable in part.variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                out.append(variable)
    return out


def error_reason(err: Exception) -> str:
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


def peer_errors() -> tuple:
    """What a collective raises when a peer is gone (aborted by the health check, or the connection
    failed)."""
    return (
        tf.errors.UnavailableError,
        tf.errors.AbortedError,
        tf.errors.CancelledError,
        tf.errors.DeadlineExceededError,
        tf.errors.FailedPreconditionError,
        tf.errors.InternalError,
    )
