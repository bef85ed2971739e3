"""``tfad fit --strategy``: choosing and building the ``tf.distribute`` strategy, and what the training loop
needs from it (docs/cluster.md).

Strategies:

- ``one-device``: no ``tf.distribute`` at all; the loop of :mod:`tfad.training.epoch_loop` as it always was.
- ``mirrored``: :class:`tf.distribute.MirroredStrategy` over the local GPUs (one replica on the CPU when
  there is none).
- ``multi-worker``: :class:`tf.distribute.MultiWorkerMirroredStrategy` over the workers that ``TF_CONFIG``
  (or ``--workers host:port,... --task-index N``, which builds it) names; one replica per worker on CPU
  hosts, one per local GPU otherwise.
- ``auto``: multi-worker when TF_CONFIG / --workers names more than one worker, else mirrored when there is
  more than one GPU, else one-device.

:func:`choose_strategy` is pure logic (no TensorFlow): the CLI validates its arguments with it before
anything heavy is imported. :func:`create_distribution` builds the strategy; for multi-worker it must run
before any other TensorFlow op in the process (collective ops are configured at start-up).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tfad.schema import ConfigError

STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker")
#: Task types of TF_CONFIG that train (MultiWorkerMirroredStrategy): an optional "chief" plus "worker"s.
TRAINING_TASK_TYPES = ("chief", "worker")
_HOST_RE = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class ClusterConfigError(ConfigError):
    """A strategy / cluster specification that cannot be used; the message names the problem (one line)."""


@dataclass(frozen=True)
class StrategyChoice:
    """What :func:`choose_strategy` decided: the strategy kind and, for multi-worker, the cluster.

    ``tf_config`` is the TF_CONFIG dict this process runs with (given or built from ``--workers``);
    ``task_type``/``task_index`` this process's task in it; ``workers`` the training tasks in rank order
    (chief first when there is a "chief" task).
    """

    kind: str  # one-device | mirrored | multi-worker
    requested: str
    tf_config: dict | None = None
    task_type: str = "worker"
    task_index: int = 0
    workers: tuple[str, ...] = ()
    source: str = ""  # "TF_CONFIG" | "--workers" | "" (single process)

    @property
    def num_workers(self) -> int:
        """Training processes in the cluster (1 for the single-process strategies)."""
        return max(1, len(self.workers))

    @property
    def worker_index(self) -> int:
        """This process's rank among the training tasks (0 = the chief)."""
        if self.kind != "multi-worker":
            return 0
        types = self.tf_config["cluster"]
        if "chief" in types:
            return 0 if self.task_type == "chief" else 1 + self.task_index
        return self.task_index

    @property
    def is_chief(self) -> bool:
        """The process that writes the run directory (checkpoints, run.json, logs, plots)."""
        return self.worker_index == 0


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) -> (host, port); ClusterConfigError naming what is wrong."""
    text = text.strip()
    match = re.fullmatch(r"\[(?P<v6>[^\]]+)\]:(?P<port>[^:]+)|(?P<host>[^:\[\]]+):(?P<port2>[^:]+)", text)
    if not match:
        raise ClusterConfigError(f"worker address {text!r} is not host:port")
    host = match.group("v6") or match.group("host")
    port_text = match.group("port") or match.group("port2")
    if match.group("v6"):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ClusterConfigError(f"worker address {text!r}: {host!r} is not an IPv6 address") from None
    elif not _HOST_RE.match(host):
        raise ClusterConfigError(f"worker address {text!r}: {host!r} is not a host name or IPv4 address")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ClusterConfigError(f"worker address {text!r}: port {port_text!r} is not in 1..65535")
    return host, int(port_text)


def parse_workers(text: str) -> list[str]:
    """``--workers host:port,host:port,...`` -> the addresses, validated (no duplicates, at least one)."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise ClusterConfigError(f"--workers {text!r}: expected host:port[,host:port...] without empty items")
    for item in items:
        parse_address(item)
    duplicates = sorted({item for item in items if items.count(item) > 1})
    if duplicates:
        raise ClusterConfigError(f"--workers lists {', '.join(duplicates)} more than once")
    return items


def tf_config_for(workers: Sequence[str], task_index: int) -> dict:
    """The TF_CONFIG of worker ``task_index`` of ``workers`` (worker 0 is the chief)."""
    if not 0 <= task_index < len(workers):
        raise ClusterConfigError(
            f"--task-index {task_index} is out of range for {len(workers)} worker(s) (0..{len(workers) - 1})"
        )
    return {"cluster": {"worker": list(workers)}, "task": {"type": "worker", "index": task_index}}


def parse_tf_config(text: str) -> dict:
    """Validate a TF_CONFIG JSON string for MultiWorkerMirroredStrategy; return it as a dict."""
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ClusterConfigError(f"TF_CONFIG is not valid JSON: {err}") from None
    if not isinstance(tf_config, dict) or not isinstance(tf_config.get("cluster"), dict):
        raise ClusterConfigError('TF_CONFIG must be {"cluster": {...}, "task": {...}}')
    cluster = tf_config["cluster"]
    other = sorted(set(cluster) - set(TRAINING_TASK_TYPES))
    if other:
        raise ClusterConfigError(
            f"TF_CONFIG names task type(s) {other}: only 'chief' and 'worker' are supported "
            "(MultiWorkerMirroredStrategy; no parameter servers or evaluators)"
        )
    if "worker" not in cluster and "chief" not in cluster:
        raise ClusterConfigError("TF_CONFIG cluster lists no 'worker' (or 'chief') tasks")
    seen: list[str] = []
    for task_type, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise ClusterConfigError(f"TF_CONFIG cluster.{task_type} must be a non-empty list of host:port")
        for address in addresses:
            if not isinstance(address, str):
                raise ClusterConfigError(
                    f"TF_CONFIG cluster.{task_type}: {address!r} is not a host:port string"
                )
            parse_address(address)
            seen.append(address)
    if len(cluster.get("chief", [])) > 1:
        raise ClusterConfigError("TF_CONFIG cluster.chief must list exactly one task")
    duplicates = sorted({a for a in seen if seen.count(a) > 1})
    if duplicates:
        raise ClusterConfigError(f"TF_CONFIG lists {', '.join(duplicates)} more than once")
    task = tf_config.get("task")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise ClusterConfigError(
            f"TF_CONFIG task must name this process's type (one of {sorted(cluster)}) and index, got {task!r}"
        )
    index = task.get("index")
    count = len(cluster[task["type"]])
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
        raise ClusterConfigError(
            f"TF_CONFIG task.index {index!r} is out of range for {count} {task['type']} task(s)"
        )
    return tf_config


def _training_tasks(tf_config: dict) -> tuple[str, ...]:
    cluster = tf_config["cluster"]
    return tuple(cluster.get("chief", [])) + tuple(cluster.get("worker", []))


def choose_strategy(
    requested: str = "auto",
    workers: str | None = None,
    task_index: int | None = None,
    environ: Mapping[str, str] | None = None,
    num_gpus: int | None = None,
) -> StrategyChoice:
    """Decide the strategy from ``--strategy``, ``--workers``/``--task-index`` and TF_CONFIG.

    Args:
        requested: one of :data:`STRATEGIES`.
        workers, task_index: the CLI's ``--workers``/``--task-index`` (both or neither).
        environ: where TF_CONFIG is read (default ``os.environ``).
        num_gpus: GPUs visible (default: asks TensorFlow, only when ``auto`` needs to know).

    Raises:
        ClusterConfigError: an unknown strategy, --workers with a single-process strategy, --workers and
            TF_CONFIG together, a malformed address or TF_CONFIG, a task index out of range,
            multi-worker without a cluster.
    """
    environ = os.environ if environ is None else environ
    if requested not in STRATEGIES:
        raise ClusterConfigError(f"--strategy {requested!r}: choose one of {', '.join(STRATEGIES)}")
    if (workers is None) != (task_index is None):
        raise ClusterConfigError("--workers and --task-index go together: give both or neither")
    raw_tf_config = environ.get("TF_CONFIG", "").strip()
    tf_config = None
    source = ""
    if workers is not None:
        if requested in ("one-device", "mirrored"):
            raise ClusterConfigError(
                f"--workers is for --strategy multi-worker (or auto), not --strategy {requested}"
            )
        if raw_tf_config:
            raise ClusterConfigError("TF_CONFIG is set and --workers is given: use one of them, not both")
        tf_config = tf_config_for(parse_workers(workers), task_index)
        source = "--workers"
    elif raw_tf_config:
        tf_config = parse_tf_config(raw_tf_config)
        source = "TF_CONFIG"
    tasks = _training_tasks(tf_config) if tf_config else ()
    if len(tasks) > 1 and requested in ("one-device", "mirrored"):
        # Every process of the cluster would train its own copy into the same run directory.
        raise ClusterConfigError(
            f"TF_CONFIG names {len(tasks)} workers but --strategy {requested} trains in one process: use "
            "--strategy multi-worker (or auto), or unset TF_CONFIG"
        )
    if requested == "multi-worker" and tf_config is None:
        raise ClusterConfigError(
            "--strategy multi-worker needs the cluster: set TF_CONFIG or give --workers host:port,... "
            "--task-index N"
        )
    kind = requested
    if requested == "auto":
        if len(tasks) > 1:
            kind = "multi-worker"
        else:
            if num_gpus is None:
                import tensorflow as tf

                num_gpus = len(tf.config.list_physical_devices("GPU"))
            kind = "mirrored" if num_gpus > 1 else "one-device"
    if kind != "multi-worker":
        return StrategyChoice(kind=kind, requested=requested)
    return StrategyChoice(
        kind="multi-worker",
        requested=requested,
        tf_config=tf_config,
        task_type=tf_config["task"]["type"],
        task_index=int(tf_config["task"]["index"]),
        workers=tasks,
        source=source,
    )


@dataclass
class Distribution:
    """The strategy a training run uses and this process's place in it.

    ``strategy`` is None for ``one-device`` (the loop then runs without ``tf.distribute``).
    """

    choice: StrategyChoice
    strategy: Any = None  # tf.distribute.Strategy | None
    devices: tuple[str, ...] = field(default_factory=tuple)

    @property
    def kind(self) -> str:
        """one-device | mirrored | multi-worker (| custom: a strategy object given by the caller)."""
        return self.choice.kind

    @property
    def distributed(self) -> bool:
        """Whether the loop goes through ``strategy.run``."""
        return self.strategy is not None

    @property
    def num_replicas(self) -> int:
        """Replicas in sync over the whole cluster (the global batch is split between them)."""
        return int(self.strategy.num_replicas_in_sync) if self.strategy is not None else 1

    @property
    def num_workers(self) -> int:
        """Processes, each with its own input pipeline."""
        return self.choice.num_workers

    @property
    def worker_index(self) -> int:
        """This process's input pipeline / rank (0 = chief)."""
        return self.choice.worker_index

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run directory."""
        return self.choice.is_chief

    def scope(self) -> contextlib.AbstractContextManager:
        """``strategy.scope()``, or a no-op for one-device: networks, trainers, optimizers, metrics and
        checkpointed variables are created inside it."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def describe(self) -> dict[str, Any]:
        """For run.json and the log: kind, replicas, workers, this worker."""
        out: dict[str, Any] = {"strategy": self.kind, "replicas": self.num_replicas}
        if self.kind == "multi-worker":
            out.update(workers=list(self.choice.workers), worker_index=self.worker_index,
                       cluster_from=self.choice.source)  # fmt: skip
        if self.devices:
            out["devices"] = list(self.devices)
        return out


def create_distribution(choice: StrategyChoice | str = "one-device", strategy: Any = None) -> Distribution:
    """Build the strategy of ``choice`` (a :class:`StrategyChoice` or a strategy name, resolved with
    :func:`choose_strategy` from the environment).

    ``strategy`` instead uses a ready ``tf.distribute.Strategy`` (single process, e.g. a
    MirroredStrategy over logical CPU devices in tests).

    For multi-worker this sets ``TF_CONFIG`` in the environment (MultiWorkerMirroredStrategy reads it) and
    must be called before any other TensorFlow op in the process.
    """
    import tensorflow as tf

    if strategy is not None:
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            raise ClusterConfigError(
                "pass multi-worker as a StrategyChoice (TF_CONFIG), not a strategy object"
            )
        devices = tuple(getattr(strategy.extended, "worker_devices", ()))
        return Distribution(StrategyChoice(kind="custom", requested="custom"), strategy, devices)
    if isinstance(choice, str):
        choice = choose_strategy(choice)
    if choice.kind == "one-device":
        return Distribution(choice)
    if choice.kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        built = tf.distribute.MirroredStrategy([d.name for d in gpus] or None)
        return Distribution(choice, built, tuple(built.extended.worker_devices))
    os.environ["TF_CONFIG"] = json.dumps(choice.tf_config)
    try:
        built = tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as err:  # e.g. "Collective ops must be configured at program startup"
        raise ClusterConfigError(
            f"cannot start MultiWorkerMirroredStrategy: {' '.join(str(err).split())}"
        ) from err
    resolver = built.cluster_resolver
    if (resolver.task_type, int(resolver.task_id)) != (choice.task_type, choice.task_index):
        raise ClusterConfigError(  # pragma: no cover - TF reads the TF_CONFIG set just above
            f"TensorFlow sees task {resolver.task_type}:{resolver.task_id}, expected "
            f"{choice.task_type}:{choice.task_index}"
        )
    if bool(built.extended.should_checkpoint) != choice.is_chief:  # pragma: no cover - same rule as TF's
        raise ClusterConfigError("this process's chief role differs from TensorFlow's")
    return Distribution(choice, built, tuple(built.extended.worker_devices))


def shard_records(records: Sequence[Any], num_shards: int, index: int) -> list[Any]:
    """Input pipeline ``index`` of ``num_shards``'s share of a record list: every ``num_shards``-th record
    starting at ``index`` (disjoint, union = all, sizes differ by at most one)."""
    if not 0 <= index < num_shards:
        raise ValueError(f"need 0 <= index < num_shards, got {index} and {num_shards}")
    return list(records[index::num_shards])


@contextlib.contextmanager
def temporary_directory(prefix: str) -> Iterator[str]:
    """A local temporary folder, removed afterwards (where non-chief workers write their checkpoints)."""
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------------- the training loop's
def synced_variables(networks: Any) -> list:
    """The float non-trainable variables of every network (BatchNorm moving statistics).

    Keras 3 creates them with ``aggregation="none"``, so under a strategy each replica updates its own copy
    from its local batch and the copies drift apart (measured: different moving means after one step).
    The distributed step all-reduces them (mean) after every update, so all replicas and workers stay
    identical and the chief's checkpoint is everyone's state.
    """
    out, seen = [], set()
    for part in networks.checkpoint_parts().values():
        for variable in getattr(part, "non_trainable_variables", []):
            if "float" in str(variable.dtype) and id(variable) not in seen:
                seen.add(id(variable))
                out.append(variable)
    return out


def distributed_step(strategy: Any, fn: Any, sync: Sequence[Any] = ()) -> Any:
    """``strategy.run(fn, batch)`` as a tf.function returning the logs averaged over all replicas.

    ``fn`` (a trainer's ``train_step``/``test_step``) returns rank-1 logs of one value each. The returned
    callable takes ``(distributed_batch, stop: bool)`` and returns ``(logs, stop_anywhere)``: ``stop`` is
    this worker's wish to stop (SIGTERM, a budget) and ``stop_anywhere`` whether any worker wished it, so
    that every worker stops after the same step (a worker leaving alone would block the others' next
    collective). Logs and the flag travel in one all-reduce; ``sync`` variables are averaged after ``fn``.
    """
    import tensorflow as tf

    names: list[str] = []
    mean = tf.distribute.ReduceOp.MEAN

    def replica_fn(batch: Any, stop: tf.Tensor) -> tf.Tensor:
        logs = fn(batch)
        if sync:
            context = tf.distribute.get_replica_context()
            # tf.identity places the reads on this replica's device (a bare variable read has no device,
            # which MultiWorkerMirroredStrategy's all-reduce refuses: "destinations can not be empty").
            averaged = context.all_reduce(mean, [tf.identity(tf.convert_to_tensor(v)) for v in sync])
            for variable, value in zip(sync, averaged, strict=True):
                variable.assign(value)
        names[:] = sorted(logs)
        parts = [tf.reshape(tf.cast(logs[k], tf.float32), [1]) for k in names]
        # A replica-context all-reduce: every replica gets the same mean, in one collective.
        return tf.distribute.get_replica_context().all_reduce(mean, tf.concat([*parts, stop], axis=0))

    @tf.function
    def step(batch: Any, stop: tf.Tensor) -> tf.Tensor:
        return strategy.experimental_local_results(strategy.run(replica_fn, args=(batch, stop)))[0]

    def run(batch: Any, stop: bool = False) -> tuple[dict, bool]:
        packed = step(batch, tf.constant([1.0 if stop else 0.0], tf.float32)).numpy()
        logs = {name: packed[i : i + 1] for i, name in enumerate(names)}
        return logs, bool(packed[-1] > 0)

    return run


def all_workers_mean(strategy: Any, values: Sequence[float]) -> list[float]:
    """The mean over all replicas (hence workers) of a float64 vector each worker gives: a collective, every
    worker must call it with the same length."""
    import tensorflow as tf

    local = tf.constant(list(values), tf.float64)

    def replica_fn() -> tf.Tensor:
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, local)

    @tf.function
    def reduce() -> tf.Tensor:
        return strategy.experimental_local_results(strategy.run(replica_fn))[0]

    return [float(v) for v in reduce().numpy()]


def replica_divergence(strategy: Any, variables: Sequence[Any]) -> float:
    """Mean over replicas of each replica's largest |own value - the all-replica mean| over ``variables``:
    0 when every replica (and worker) holds identical values. A collective."""
    import tensorflow as tf

    def replica_fn() -> tf.Tensor:
        context = tf.distribute.get_replica_context()
        local = [tf.identity(tf.cast(tf.convert_to_tensor(v), tf.float64)) for v in variables]
        means = context.all_reduce(tf.distribute.ReduceOp.MEAN, local)
        largest = tf.reduce_max(
            tf.stack([tf.reduce_max(tf.abs(a - b)) for a, b in zip(local, means, strict=True)])
        )
        return context.all_reduce(tf.distribute.ReduceOp.MEAN, largest)

    @tf.function
    def run() -> tf.Tensor:
        return strategy.experimental_local_results(strategy.run(replica_fn))[0]

    return float(run().numpy())


def wait_for_all_workers(barrier: str, timeout_s: float = 600.0) -> bool:
    """Block until every worker of the cluster has called this with the same ``barrier`` name.

    A barrier of TensorFlow's coordination service (RPCs to the chief's service), not a collective: a
    worker may leave right after it returns, while the last worker to leave a collective can strand a
    peer that still pulls its buffer (measured: the chief then waits ~70 s for missed heartbeats).
    Returns False (after logging) when it fails or times out, e.g. because a peer is gone.
    """
    import logging

    from tensorflow.python.eager import context  # no public API for coordination-service barriers

    try:
        context.context().wait_at_barrier(barrier, int(timeout_s * 1000))
        return True
    except Exception as err:  # a peer that is gone must not keep this worker alive
        reason = " ".join(str(err).split())
        logging.getLogger(__name__).warning("final barrier %r failed: %s", barrier, reason)
        return False
