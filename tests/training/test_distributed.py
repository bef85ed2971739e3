"""tfad fit under tf.distribute: loss scaling, two workers on loopback, a killed worker (the rules checked
without a cluster: test_strategy_and_shards.py).

The multi-worker tests start real ``tfad fit --strategy multi-worker`` processes (CUDA hidden, free loopback
ports). They run this module as a script (``python test_distributed.py worker ...``): a thin driver around
``tfad.cli.main`` that passes two test hooks through ``tfad.training.fit.fit``'s public arguments - every
worker dumps its final in-memory weights to an .npz (``on_train_end``), and one worker can SIGKILL itself,
or send itself a SIGTERM, right after a given step (``should_stop``), so the kill or the stop request lands
at a known point mid-epoch whatever the machine's speed. Every subprocess is killed in a ``finally`` if a
test fails.

Tested recovery procedure (docs/cluster.md): SIGKILL worker 1 after the chief's first backup (step 5), at
step 7; the chief's
next collective fails and it exits by itself with code 75 (no backup written after the failure); the whole
job is restarted with the same command lines (same TF_CONFIG) and both workers resume from the chief's
latest backup, logging the steps redone.

Tested stop on purpose: one worker gets a SIGTERM after step 12; its stop request travels in the next step's
all-reduce, both workers stop after the same step, the chief saves a checkpoint of it, both exit 130, and
``--resume`` continues there with nothing redone and ends with the uninterrupted run's weights.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
pytestmark = pytest.mark.slow

# Stated tolerances. Workers of one job: bitwise identical (all-reduced gradients and BatchNorm statistics).
# Restarted job vs an uninterrupted one: the same data order, seeds and steps, so equal up to float
# reassociation in threaded kernels (measured here: 0.0); these bounds are far below what one extra or
# one repeated step changes (~1e-3 with lr 2e-3).
RESUME_RTOL, RESUME_ATOL = 1e-4, 1e-5
# 2 replicas x half batch vs 1 replica x the whole batch, one SGD step: equal up to float reassociation.
SCALING_RTOL = 1e-3
JOB_TIMEOUT_S = 240


def free_ports(n: int) -> list[int]:
    """n free loopback ports (bound to port 0 together, so they are distinct)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def write_config(path: Path, data_root: Path, output_dir: Path) -> Path:
    """The tiny ResGANAD config of the training tests: 2 epochs x 10 steps, global batch 8 (4 per worker),
    a backup every 5 steps."""
    from conftest import tiny_config

    config = tiny_config(data_root, output_dir, epochs=2, steps_per_epoch=10, validation_steps=1)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path


class Job:
    """A multi-worker ``tfad fit`` job: one subprocess per worker, logs in files, killed on exit."""

    def __init__(
        self,
        config: Path,
        ports: list[int],
        work: Path,
        tag: str,
        kill_worker1_at: int = 0,
        term_at: int = 0,
        term_worker: int = 1,
        resume: bool = False,
    ) -> None:
        self.config, self.ports, self.work, self.tag = config, ports, work, tag
        self.kill_worker1_at = kill_worker1_at  # worker 1 SIGKILLs itself after this step (0: never)
        self.term_at, self.term_worker = term_at, term_worker  # that worker SIGTERMs itself (0: never)
        self.resume = resume  # --resume
        self.procs: list[subprocess.Popen] = []

    def npz(self, index: int) -> Path:
        return self.work / f"{self.tag}-worker{index}.npz"

    def log(self, index: int) -> Path:
        return self.work / f"{self.tag}-worker{index}.log"

    def start(self) -> Job:
        workers = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        for index in range(len(self.ports)):
            tmp = self.work / f"{self.tag}-tmp{index}"
            tmp.mkdir(exist_ok=True)
            env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
            env.pop("TF_CONFIG", None)
            die_at = self.kill_worker1_at if index == 1 else 0
            term_at = self.term_at if index == self.term_worker else 0
            command = [
                sys.executable, str(Path(__file__)), "worker", str(self.npz(index)), str(die_at),
                str(term_at), "--", "fit", str(self.config), "--strategy", "multi-worker",
                "--workers", workers, "--task-index", str(index), "--no-progress",
                *(["--resume"] if self.resume else []),
            ]  # fmt: skip
            with open(self.log(index), "a") as log:
                self.procs.append(
                    subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
                )
        return self

    def wait(self, timeout_s: float = JOB_TIMEOUT_S) -> list[int]:
        deadline = time.monotonic() + timeout_s
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"job {self.tag} did not finish in {timeout_s} s:\n{self.tail()}")
        return codes

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)

    def tail(self, lines: int = 25) -> str:
        out = []
        for index in range(len(self.ports)):
            text = self.log(index).read_text() if self.log(index).exists() else ""
            kept = [ln for ln in text.splitlines() if not ln.startswith(("W0000", "I0000"))]
            out.append(f"--- worker {index}:\n" + "\n".join(kept[-lines:]))
        return "\n".join(out)


@contextmanager
def running(job: Job):
    """Start ``job``; whatever happens in the block, no worker survives it."""
    try:
        yield job.start()
    finally:
        job.kill()


def network_weights(run_dir: Path) -> list[np.ndarray]:
    """The chief's latest checkpoint, as every variable of every network in the order the workers dump."""
    import tensorflow as tf

    from tfad.config import architecture, load_config
    from tfad.families import family

    config = load_config(run_dir / "config.yaml")
    networks = family(config.model.family).networks(architecture(config))
    parts = networks.checkpoint_parts()
    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    tf.train.Checkpoint(**parts).restore(latest).expect_partial().assert_existing_objects_matched()
    return [np.asarray(v.numpy()) for part in parts.values() for v in part.variables]


def load_npz(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def assert_both_workers_match(job: Job, reference: Job) -> float:
    """Both workers' final weights of ``job`` equal the reference job's chief's within the resume tolerances;
    the largest absolute difference."""
    reference_weights = load_npz(reference.npz(0))
    worst = 0.0
    for index in (0, 1):
        for a, b in zip(load_npz(job.npz(index)), reference_weights, strict=True):
            np.testing.assert_allclose(a, b, rtol=RESUME_RTOL, atol=RESUME_ATOL)
            worst = max(worst, float(np.max(np.abs(a - b))) if a.size else 0.0)
    return worst


@pytest.fixture(scope="module")
def reference_job(tiny_vials, tmp_path_factory):
    """An uninterrupted 2-worker run of the tiny config: (job, run_dir, seconds)."""
    work = tmp_path_factory.mktemp("mw_reference")
    config = write_config(work / "config.yaml", tiny_vials, work / "runs")
    job = Job(config, free_ports(2), work, "reference")
    started = time.monotonic()
    with running(job):
        codes = job.wait()
    assert codes == [0, 0], job.tail()
    return job, work / "runs" / "tiny", time.monotonic() - started


def test_two_workers_finish_with_identical_weights_and_the_chief_exports(reference_job, tmp_path) -> None:
    job, run_dir, _ = reference_job
    chief, other = load_npz(job.npz(0)), load_npz(job.npz(1))
    assert len(chief) == len(other) > 50
    for a, b in zip(chief, other, strict=True):
        np.testing.assert_array_equal(a, b)  # bitwise: identical updates on every replica
    # the chief's checkpoint is the other worker's in-memory state
    for a, b in zip(network_weights(run_dir), other, strict=True):
        np.testing.assert_array_equal(a, b)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["global_step"] == 20 and info["epochs_done"] == 2
    assert info["distribution"]["strategy"] == "multi-worker" and info["distribution"]["replicas"] == 2
    assert info["distribution"]["replica_divergence"] == 0.0
    assert [h["epoch"] for h in info["history"]] == [1, 2]
    # only the chief writes: one TensorBoard file, and the other worker's temporary backups are gone
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert not list((job.work / "reference-tmp1").glob("tfad-worker-backup-*"))
    assert "chief: False" in job.log(1).read_text() and "chief: True" in job.log(0).read_text()

    from tfad.cli import main

    models = tmp_path / "savedmodels"
    assert main(["export", str(run_dir), "--savedmodels", str(models), "--allow-uncalibrated"]) == 0
    version = models / "tiny" / "1"
    load = (
        "import sys, numpy as np, tensorflow as tf\n"
        "from tfad.scoring.native import register_ops_for\n"
        "register_ops_for(sys.argv[1])\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "out = m.signatures['serving_default'](images=tf.zeros([2, 32, 32, 1], tf.uint8))\n"
        "assert out['score'].shape == (2,) and np.isfinite(out['score'].numpy()).all()\n"
        "print('LOADED', sorted(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", load, str(version)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
    )
    assert done.returncode == 0 and "LOADED" in done.stdout, done.stderr[-2000:]


def test_killed_worker_job_restarts_from_the_last_backup_and_matches(
    reference_job, tiny_vials, tmp_path
) -> None:
    """Worker 1 SIGKILLs itself after step 7: after the first backup (step 5), mid-epoch 1. The chief exits by
    itself (75); the restarted job resumes at the backup, redoes steps 6-7 and ends with the uninterrupted
    reference run's weights."""
    reference, _, _ = reference_job
    config = write_config(tmp_path / "config.yaml", tiny_vials, tmp_path / "runs")
    run_dir = tmp_path / "runs" / "tiny"
    ports = free_ports(2)
    first = Job(config, ports, tmp_path, "first", kill_worker1_at=7)
    with running(first):
        try:
            worker_code = first.procs[1].wait(timeout=JOB_TIMEOUT_S)
            chief_code = first.procs[0].wait(timeout=120)  # its next collective fails: it stops by itself
        except subprocess.TimeoutExpired:
            pytest.fail(f"the first job did not end:\n{first.tail()}")
    assert worker_code == -signal.SIGKILL, first.tail()
    assert chief_code == 75, first.tail()
    assert "a worker of the multi-worker job was lost" in first.log(0).read_text()
    backup = json.loads((run_dir / "run.json").read_text())
    assert backup["status"] == "failed" and backup["backup_step"] == 5, backup
    reached = backup["global_step"]
    # Step 8 cannot complete without worker 1. Step 7 completed on the worker, but on the chief it may not
    # have: the worker can return from step 7's all-reduce before its last message reaches the chief, and that
    # message dies with it (seen once in a full run, 6 instead of 7). Either way the job resumes at step 5.
    assert reached in (6, 7), reached

    second = Job(config, ports, tmp_path, "second")
    with running(second):
        codes = second.wait()
    assert codes == [0, 0], second.tail()
    resumed = json.loads((run_dir / "run.json").read_text())
    assert resumed["status"] == "finished" and resumed["global_step"] == 20
    (resumption,) = resumed["resumptions"]
    assert resumption["from_step"] == backup["backup_step"] and resumption["reached_step"] >= reached
    assert resumption["steps_redone"] == resumption["reached_step"] - resumption["from_step"] > 0
    for index in (0, 1):
        log = second.log(index).read_text()
        assert f"from the backup at step {resumption['from_step']}" in log and "lost and redone" in log
    # no finished epoch lost or repeated: one history row per epoch
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    worst = assert_both_workers_match(second, reference)
    print(f"restarted vs uninterrupted: max |difference| {worst:.3g}")


TERM_AT = 12  # mid-epoch 2: after epoch 1's history row and the backup at step 10, before the one at 15


def test_sigterm_on_one_worker_stops_both_at_one_step_and_resume_matches(
    reference_job, tiny_vials, tmp_path
) -> None:
    """Worker 1 (not the chief, which writes everything) sends itself a SIGTERM right after step 12. Its stop
    wish travels in a following step's all-reduce: both workers stop after that same step (the final
    barrier is named by the step, so workers stopping apart would hang there), the chief saves a checkpoint
    of it, run.json says "interrupted", both exit 130 (tfad.cli.fit: an interrupted fit), and ``--resume``
    continues there with nothing redone and ends with the uninterrupted reference run's weights."""
    import tensorflow as tf

    reference, _, _ = reference_job
    config = write_config(tmp_path / "config.yaml", tiny_vials, tmp_path / "runs")
    run_dir = tmp_path / "runs" / "tiny"
    ports = free_ports(2)
    first = Job(config, ports, tmp_path, "first", term_at=TERM_AT, term_worker=1)
    with running(first):
        codes = first.wait()
    assert codes == [130, 130], first.tail()
    logs = [first.log(index).read_text() for index in (0, 1)]
    assert "SIGTERM: stopping after the current step" in logs[1], first.tail()
    assert "SIGTERM: stopping" not in logs[0], first.tail()  # the chief got no signal: only the shared wish
    # Each worker logs the step it stopped at and why; the same step for both
    steps = []
    for index, log in enumerate(logs):
        (line,) = [ln for ln in log.splitlines() if "interrupted at step" in ln]
        steps.append(int(line.split("interrupted at step ")[1].split()[0]))
        reason = "SIGTERM" if index == 1 else "another worker's request"
        assert f"({reason}): checkpoint saved" in line, line
        assert f"all 2 workers finished at step {steps[-1]}" in log, first.tail()  # the final barrier
    stopped = steps[0]
    assert steps == [stopped, stopped], steps
    # A wish is noted at a step boundary and shared in the next step's all-reduce. The hook's signal arrives
    # at step 12's boundary, after _stop_agreed read the flag (it calls should_stop second), so it is noted
    # at 13 and all stop after 14; a stop later than that is a lost step, earlier is impossible.
    assert TERM_AT + 1 <= stopped <= TERM_AT + 2, stopped
    assert stopped % 5, stopped  # not a regular backup step: the checkpoint is the stop's own
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted" and info["global_step"] == stopped, info
    (interruption,) = info["interruptions"]
    # the chief writes run.json: it only knows that another worker asked
    assert interruption["reason"] == "another worker's request" and not interruption["forced"], interruption
    assert interruption["step"] == stopped and interruption["checkpoint"] == f"ckpt-{stopped}", interruption
    assert Path(tf.train.latest_checkpoint(str(run_dir / "checkpoints"))).name == f"ckpt-{stopped}"
    assert [h["epoch"] for h in info["history"]] == [1]

    second = Job(config, ports, tmp_path, "second", resume=True)
    with running(second):
        codes = second.wait()
    assert codes == [0, 0], second.tail()
    resumed = json.loads((run_dir / "run.json").read_text())
    assert resumed["status"] == "finished" and resumed["global_step"] == 20 and resumed["epochs_done"] == 2
    (resumption,) = resumed["resumptions"]
    assert resumption["from_step"] == stopped and resumption["steps_redone"] == 0, resumption
    for index in (0, 1):
        assert f"from step {stopped} (ckpt-{stopped}); nothing was lost" in second.log(index).read_text()
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["interruptions"] == info["interruptions"]  # the interruption stays on record
    worst = assert_both_workers_match(second, reference)
    print(f"stopped at step {stopped}, SIGTERM after {TERM_AT}; resumed vs uninterrupted: {worst:.3g}")


def test_two_replica_step_equals_one_replica_step_on_the_global_batch(tiny_vials, tmp_path) -> None:
    """Loss scaling, every family with a train_step: one SGD step of 2 replicas on half batches equals one
    step of one device on the whole batch; without the 1/replicas scale it is twice as large. Then a whole
    segmentation fit (early stopping with its best-epoch backup) on the 2 replicas. (In a subprocess:
    logical CPU devices must be configured before TensorFlow starts.)"""
    out = tmp_path / "scaling.json"
    done = subprocess.run(
        [sys.executable, str(Path(__file__)), "loss-scaling", str(out), str(tiny_vials), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
        cwd=REPO,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    fitted = results.pop("fit")
    assert fitted["status"] == "finished" and fitted["global_step"] == 6 and fitted["replica_divergence"] == 0
    assert fitted["replicas"] == 2 and fitted["best_checkpoint"] and fitted["restored"]
    assert sorted(results) == ["classifier", "grdnet", "resganad", "segmentation"]
    for name, r in results.items():
        assert r["scaled_relative_error"] < SCALING_RTOL, (name, r)
        assert r["unscaled_ratio"] == pytest.approx(2.0, rel=1e-2), (name, r)
        assert r["replicas_identical"], (name, r)


# ------------------------------------------------------------------------------- subprocess entry points
def _worker_main(npz: str, die_at: int, term_at: int, cli_args: list[str]) -> int:
    """``tfad <cli_args>`` with the test hooks: dump the final weights to ``npz``; SIGKILL this process right
    after step ``die_at``, send it a SIGTERM right after step ``term_at`` (0: never)."""
    import tfad.training.fit as fit_module

    real_fit = fit_module.fit

    def dump(trainer) -> None:
        parts = trainer.networks.checkpoint_parts()
        np.savez(npz, *[np.asarray(v.numpy()) for part in parts.values() for v in part.variables])

    def after_step(step: int) -> bool:
        if step == die_at:
            os.kill(os.getpid(), signal.SIGKILL)  # a worker lost at a known step, mid-epoch
        if step == term_at:
            # a scheduler's stop request at a known step: the loop's handler turns it into a stop wish
            os.kill(os.getpid(), signal.SIGTERM)
        return False

    def fit_with_hooks(*args, **kwargs):
        kwargs["on_train_end"] = dump
        if die_at or term_at:
            kwargs["should_stop"] = after_step
        return real_fit(*args, **kwargs)

    fit_module.fit = fit_with_hooks  # tfad.cli.fit imports it at call time
    from tfad.cli import main

    return main(cli_args)


def _loss_scaling_main(out: str, data_root: str, work: str) -> int:
    """Compare one SGD step: one device on [h, h] vs MirroredStrategy over 2 logical CPUs on h each.

    Duplicating the half batch makes every batch statistic (BatchNorm, feature matching, the weighted
    cross-entropy's normalisation, Dice) equal on both sides, so what is compared is exactly the gradient
    aggregation: with ``gradient_scale = 1/2`` the updates must be equal, without it twice as large.
    """
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    import contextlib

    import keras
    from conftest import TINY_ARCH, TINY_GRDNET_ARCH

    from tfad.config import architecture, from_dict
    from tfad.families import family
    from tfad.training.distributed import synced_variables

    base = {"data": {"image_size": 32}, "training": {"batch_size": 8}}
    configs = {
        "resganad": from_dict({**base, "model": {"family": "resganad", "overrides": TINY_ARCH}}),
        "grdnet": from_dict({**base, "model": {"family": "grdnet", "overrides": TINY_GRDNET_ARCH},
                             "grdnet": {"score_filter_size": 5}}),
        "segmentation": from_dict({**base, "model": {"family": "segmentation",
                                   "overrides": {"stem_stride": 2, "base_width": 8, "depth": 3}},
                                   "supervised": {"score_filter_size": 5}}),
        # dropout 0: a random mask would differ between the two sides
        "classifier": from_dict({**base, "model": {"family": "classifier", "preset": "resnet18-small",
                                 "overrides": {"base_width": 8, "dropout": 0.0}},
                                 "supervised": {"classes": ["good", "defect"], "class_weighting": "none"}}),
    }  # fmt: skip
    rng = np.random.default_rng(0)

    def half_batch(name: str) -> dict:
        shape = (4, 32, 32, 1)
        if name in ("resganad", "grdnet"):
            target = rng.uniform(0, 1, shape).astype("float32")
            mask = (rng.uniform(0, 1, shape) > 0.8).astype("float32")
            noise = rng.uniform(0, 1, shape).astype("float32")
            perturbed = np.clip(target + 0.3 * mask * noise, 0, 1).astype("float32")
            batch = {"image": perturbed, "target": target, "noise_mask": mask, "noise": noise,
                     "beta": np.full((4, 1, 1, 1), 0.7, "float32")}  # fmt: skip
            if name == "grdnet":
                batch["roi"] = np.ones(shape, "float32")
            return batch
        mask = np.zeros(shape, "float32")
        mask[1, 8:16, 8:16] = mask[3, 2:9, 20:30] = 1.0
        return {"image": rng.uniform(0, 1, shape).astype("float32"), "class": np.array([0, 1, 0, 1], "int32"),
                "mask": mask, "synthetic": np.array([False, True, False, True])}  # fmt: skip

    def sgd_trainer(name: str, scope, initial=None):
        config = configs[name]
        entry = family(config.model.family)
        with scope:
            keras.utils.set_random_seed(0)
            networks = entry.networks(architecture(config), config)
            trainer = entry.trainer(networks, config, 10, [])
            sgd = lambda: keras.optimizers.SGD(0.01)  # noqa: E731 - SGD: the update is linear in the gradient
            if name == "resganad":
                trainer.compile(generator_optimizer=sgd(), critic_optimizer=sgd())
            elif name == "grdnet":
                trainer.critic_optimizer, trainer.generator_optimizer = sgd(), sgd()
                trainer.unet_optimizer = sgd()
                trainer.critic_optimizer.build(trainer.critic.trainable_variables)
                trainer.generator_optimizer.build(networks.generator_variables)
                trainer.unet_optimizer.build(trainer.unet.trainable_variables)
            else:
                trainer.optimizer_ = sgd()
                trainer.optimizer_.build(trainer.trainable_parameters)
        variables = [v for part in networks.checkpoint_parts().values() for v in part.trainable_variables]
        if initial is not None:
            for variable, value in zip(variables, initial, strict=True):
                variable.assign(value)
        return trainer, networks, variables

    def values(variables) -> list[np.ndarray]:
        return [np.asarray(v.numpy()) for v in variables]

    results = {}
    two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for name in configs:
        half = half_batch(name)
        whole = {k: np.concatenate([v, v]) for k, v in half.items()}
        trainer, _, variables = sgd_trainer(name, contextlib.nullcontext())
        initial = values(variables)
        trainer.train_step({k: tf.constant(v) for k, v in whole.items()})
        reference = [a - b for a, b in zip(values(variables), initial, strict=True)]
        deltas, identical = {}, True
        for scale in (0.5, 1.0):
            trainer, networks, variables = sgd_trainer(name, two.scope(), initial)
            trainer.gradient_scale = scale
            batch = two.experimental_distribute_values_from_function(
                lambda ctx: {k: tf.constant(v) for k, v in half.items()}  # noqa: B023
            )
            two.run(trainer.train_step, args=(batch,))
            deltas[scale] = [a - b for a, b in zip(values(variables), initial, strict=True)]
            replicas = [v for var in variables for v in two.experimental_local_results(var.value)]
            pairs = zip(replicas[0::2], replicas[1::2], strict=True)
            identical &= all(np.array_equal(a.numpy(), b.numpy()) for a, b in pairs)
        norm = max(float(np.max(np.abs(d))) for d in reference)
        error = max(float(np.max(np.abs(a - b))) for a, b in zip(deltas[0.5], reference, strict=True))
        ratio = sum(float(np.sum(np.abs(d))) for d in deltas[1.0]) / sum(
            float(np.sum(np.abs(d))) for d in reference
        )
        results[name] = {
            "scaled_relative_error": error / norm,
            "unscaled_ratio": ratio,
            "replicas_identical": bool(identical),
            "synced_variables": len(synced_variables(networks)),
        }
        print(name, results[name], flush=True)

    from tfad.training.fit import fit
    from tfad.training.runs import load_run

    segmentation = from_dict({
        "name": "seg", "output_dir": work,
        "model": {"family": "segmentation", "overrides": {"stem_stride": 2, "base_width": 8, "depth": 3}},
        "data": {"root": data_root, "image_size": 32, "validation_fraction": 0.34, "train_split": "calib"},
        "training": {"epochs": 2, "batch_size": 8, "steps_per_epoch": 3, "validation_steps": 1,
                     "early_stopping_patience": 1},
        "supervised": {"synthetic_probability": 0.3, "score_filter_size": 5},
    })  # fmt: skip
    result = fit(segmentation, progress=False, strategy=two)
    info = json.loads((result.run_dir / "run.json").read_text())
    restored = load_run(result.run_dir)  # the best epoch's checkpoint, as tfad export reads it
    results["fit"] = {
        "status": result.status,
        "global_step": result.global_step,
        "replicas": info["distribution"]["replicas"],
        "replica_divergence": info["distribution"]["replica_divergence"],
        "best_checkpoint": bool(tf.train.latest_checkpoint(str(result.run_dir / "checkpoints" / "best"))),
        "restored": restored.inference_model is not None,
    }
    Path(out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))  # conftest helpers
    if sys.argv[1] == "worker":
        npz_path, die_at, term_at, separator, *rest = sys.argv[2:]
        assert separator == "--"
        sys.exit(_worker_main(npz_path, int(die_at), int(term_at), rest))
    if sys.argv[1] == "loss-scaling":
        sys.exit(_loss_scaling_main(*sys.argv[2:5]))
    sys.exit(f"unknown entry point {sys.argv[1]!r}")
