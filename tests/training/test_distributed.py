"""tfad fit under tf.distribute: loss scaling, CLI validation, two workers on loopback, a killed worker.

The multi-worker tests start real ``tfad fit --strategy multi-worker`` processes (CUDA hidden, free loopback
ports). They run this module as a script (``python test_distributed.py worker ...``): a thin driver around
``tfad.cli.main`` that passes two test hooks through ``tfad.training.fit.fit``'s public arguments - every
worker dumps its final in-memory weights to an .npz (``on_train_end``), and one worker can SIGKILL itself
right after a given step (``should_stop``), so the kill lands at a known point mid-epoch whatever the
machine's speed. Every subprocess is killed in a ``finally`` if a test fails.

Tested recovery procedure (docs/cluster.md): SIGKILL worker 1 after the chief's first backup (step 5), at
step 7; the chief's
next collective fails and it exits by itself with code 75 (no backup written after the failure); the whole
job is restarted with the same command lines (same TF_CONFIG) and both workers resume from the chief's
latest backup, logging the steps redone.
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
    ) -> None:
        self.config, self.ports, self.work, self.tag = config, ports, work, tag
        self.kill_worker1_at = kill_worker1_at  # worker 1 SIGKILLs itself after this step (0: never)
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
            command = [
                sys.executable, str(Path(__file__)), "worker", str(self.npz(index)), str(die_at), "--",
                "fit", str(self.config), "--strategy", "multi-worker", "--workers", workers,
                "--task-index", str(index), "--no-progress",
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
    assert reached == 7, reached  # step 8 cannot complete without worker 1

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
    reference_weights = load_npz(reference.npz(0))
    worst = 0.0
    for index in (0, 1):
        for a, b in zip(load_npz(second.npz(index)), reference_weights, strict=True):
            np.testing.assert_allclose(a, b, rtol=RESUME_RTOL, atol=RESUME_ATOL)
            worst = max(worst, float(np.max(np.abs(a - b))) if a.size else 0.0)
    print(f"restarted vs uninterrupted: max |difference| {worst:.3g}")


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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "127.0.0.1:1234"], "--workers and --task-index go together"),
        (["--workers", "127.0.0.1", "--task-index", "0"], "is not host:port"),
        (["--workers", "127.0.0.1:99999,127.0.0.1:2", "--task-index", "0"], "not in 1..65535"),
        (["--workers", "a:1,a:1", "--task-index", "0"], "more than once"),
        (["--workers", "bad_host!:1", "--task-index", "0"], "not a host name"),
        (["--workers", "a:1,b:2", "--task-index", "2"], "out of range for 2 worker(s)"),
        (["--strategy", "one-device", "--workers", "a:1,b:2", "--task-index", "0"], "--workers is for"),
        (["--strategy", "mirrored", "--workers", "a:1,b:2", "--task-index", "1"], "--workers is for"),
        (["--strategy", "multi-worker"], "needs the cluster"),
    ],
)
def test_cli_rejects_bad_cluster_arguments(argv, message, tmp_path, capsys, monkeypatch) -> None:
    from tfad.cli import main

    monkeypatch.delenv("TF_CONFIG", raising=False)
    config = tmp_path / "config.yaml"
    config.write_text("name: x\n")
    assert main(["fit", str(config), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("tfad fit: error:") and "\n" not in err, err


@pytest.mark.parametrize(
    ("tf_config", "argv", "message"),
    [
        ("{not json", [], "TF_CONFIG is not valid JSON"),
        ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}', [],
         "no parameter servers"),
        ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 5}}', [],
         "out of range"),
        ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}}', [],
         "task must name"),
        ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}',
         ["--workers", "a:1,b:2", "--task-index", "0"], "use one of them"),
        ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}',
         ["--strategy", "one-device"], "trains in one process"),
    ],
)  # fmt: skip
def test_cli_rejects_bad_tf_config(tf_config, argv, message, tmp_path, capsys, monkeypatch) -> None:
    from tfad.cli import main

    monkeypatch.setenv("TF_CONFIG", tf_config)
    config = tmp_path / "config.yaml"
    config.write_text("name: x\n")
    assert main(["fit", str(config), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err


def test_strategy_choice() -> None:
    from tfad.training.distributed import choose_strategy, tf_config_for

    assert choose_strategy("auto", environ={}, num_gpus=0).kind == "one-device"
    assert choose_strategy("auto", environ={}, num_gpus=2).kind == "mirrored"
    two = json.dumps(tf_config_for(["h0:1", "h1:2"], 1))
    choice = choose_strategy("auto", environ={"TF_CONFIG": two})
    assert choice.kind == "multi-worker" and choice.worker_index == 1 and not choice.is_chief
    assert choice.workers == ("h0:1", "h1:2") and choice.source == "TF_CONFIG"
    # one worker named: auto stays single-process; a "chief" task is rank 0, workers follow
    one = json.dumps(tf_config_for(["h0:1"], 0))
    assert choose_strategy("auto", environ={"TF_CONFIG": one}, num_gpus=0).kind == "one-device"
    chief = {"cluster": {"chief": ["c:1"], "worker": ["w:2", "w:3"]}, "task": {"type": "worker", "index": 1}}
    choice = choose_strategy("multi-worker", environ={"TF_CONFIG": json.dumps(chief)})
    assert choice.worker_index == 2 and choice.workers == ("c:1", "w:2", "w:3")
    built = choose_strategy("auto", "[::1]:5000,10.0.0.2:5000", 0, environ={})
    assert built.is_chief and built.tf_config["cluster"]["worker"] == ["[::1]:5000", "10.0.0.2:5000"]


def test_config_rules_for_shards_and_strategies(tiny_vials, tmp_path) -> None:
    from tfad.config import ConfigError, from_dict
    from tfad.training.fit import fit

    with pytest.raises(ConfigError, match="validation_fraction: 0"):
        from_dict({"data": {"shards": "packed/train"}})
    with pytest.raises(ConfigError, match="validation_shards needs data.shards"):
        from_dict({"data": {"validation_shards": "packed/val"}})
    with pytest.raises(ConfigError, match="blob family fits from image folders"):
        from_dict({"model": {"family": "blob"}, "data": {"shards": "p", "validation_fraction": 0}})
    blob = from_dict({"name": "b", "output_dir": str(tmp_path), "model": {"family": "blob"},
                      "data": {"root": str(tiny_vials), "image_size": 32}})  # fmt: skip
    with pytest.raises(ConfigError, match="no gradient training: --strategy mirrored"):
        fit(blob, progress=False, strategy="mirrored")


@pytest.fixture(scope="module")
def packed_vials(tiny_vials, tmp_path_factory):
    """The tiny vials' train split split by product (as tfad fit would) and packed: (train, validation)
    packs of the good images, 3 shard files each, and the records of each."""
    from tfad.data.layouts import read_dataset
    from tfad.data.shards import pack_dataset
    from tfad.training.data_selection import split_by_product

    records = read_dataset(str(tiny_vials), "train")
    train, val = split_by_product(records, 0.34, seed=0)
    out = tmp_path_factory.mktemp("packed")
    for name, part in (("train", train), ("validation", val)):
        pack_dataset(part, out / name, None, shard_size=-(-len(part) // 3), progress=False, split=name,
                     source_root=tiny_vials, shuffle_seed=0)  # fmt: skip
    return out / "train", out / "validation", train, val


def test_input_pipelines_share_the_data_between_workers(tiny_vials, packed_vials) -> None:
    """Two input pipelines (workers) read disjoint halves of the folder records / of the shard files whose
    union is everything, and draw different augmentation / P_q for the same stream position."""
    import hashlib

    from conftest import tiny_config

    from tfad.training.inputs import training_dataset

    train_pack, _, train, _ = packed_vials
    config = tiny_config(tiny_vials, Path("unused"), batch_size=4)

    def pass_of(pipeline: int, **source) -> tuple[set, np.ndarray]:
        ds = training_dataset(train, config, augment=False, num_pipelines=2, pipeline_id=pipeline, **source)
        # folders: one pass (a permutation per pass); shards: the shuffle buffer mixes passes, so read
        # about 12 passes' worth to see every image of the share
        share = len(train[pipeline::2]) if "shards" not in source else 12 * ds_records(pipeline)
        batches = list(ds.take(-(-share // 4)).as_numpy_iterator())
        targets = np.concatenate([b["target"] for b in batches])
        return {hashlib.sha1(t.tobytes()).hexdigest() for t in targets}, batches[0]["noise_mask"]

    def ds_records(pipeline: int) -> int:
        from tfad.data.shards import read_index

        return sum(e["records"] for e in read_index(train_pack)["shards"][pipeline::2])

    for source in ({}, {"shards": str(train_pack)}):
        (a, mask_a), (b, mask_b) = pass_of(0, **source), pass_of(1, **source)
        assert not a & b and len(a | b) == len(train), source  # disjoint shares, union = the training set
        assert not np.array_equal(mask_a, mask_b), source  # sample k of each worker: its own P_q draw


def test_fit_reads_packed_shards(tiny_vials, packed_vials, tmp_path) -> None:
    """data.shards / data.validation_shards instead of the folders: trains, records the pack in run.json;
    a pack holding labelled defects is refused for a family that trains on good images."""
    from conftest import tiny_config

    from tfad.config import ConfigError, from_dict
    from tfad.data.shards import pack_dataset, read_index
    from tfad.training.fit import fit

    train_pack, val_pack, train, val = packed_vials
    base = tiny_config(tiny_vials, tmp_path, epochs=1, steps_per_epoch=4).to_dict()
    base["data"].update(
        root="", shards=str(train_pack), validation_shards=str(val_pack), validation_fraction=0
    )
    result = fit(from_dict(base), progress=False)
    assert result.status == "finished" and result.global_step == 4
    assert np.isfinite(result.history[0]["val_generator_loss"])
    info = json.loads((result.run_dir / "run.json").read_text())["training_data"]
    assert info["shards"] == str(train_pack) and info["validation_shards"] == str(val_pack)
    assert (info["train_images"], info["validation_images"]) == (len(train), len(val))
    assert info["fingerprint"] == read_index(train_pack)["source"]["fingerprint"]

    from tfad.data.layouts import read_dataset

    labelled = pack_dataset(read_dataset(str(tiny_vials), "test"), tmp_path / "test-pack", None,
                            progress=False, split="test")  # fmt: skip
    base["data"].update(shards=labelled.out_dir, validation_shards=None)
    base["name"] = "defects"
    with pytest.raises(ConfigError, match="labelled defective image"):
        fit(from_dict(base), progress=False)


def test_supervised_classes_from_packed_shards(tiny_vials, tmp_path) -> None:
    """The supervised families read each example's class from the pack's metadata (packed_records):
    the same classes, per stored index, as from the folders."""
    from tfad.config import from_dict
    from tfad.data.layouts import read_dataset
    from tfad.data.records import class_indices
    from tfad.data.shards import pack_dataset
    from tfad.training.data_selection import with_class_names
    from tfad.training.inputs import class_table, packed_records, supervised_dataset

    records = read_dataset(str(tiny_vials), "calib")
    pack_dataset(records, tmp_path / "calib", None, shard_size=16, progress=False, split="calib",
                 source_root=tiny_vials, shuffle_seed=1)  # fmt: skip
    by_index = packed_records(str(tmp_path / "calib"))
    assert sorted(by_index) == list(range(len(records)))
    assert [(r.label, r.defect_type, r.product_id) for r in (by_index[i] for i in range(len(records)))] == [
        (r.label, r.defect_type, r.product_id) for r in records
    ]
    config = from_dict({"model": {"family": "segmentation"}, "data": {"image_size": 32}})
    config = with_class_names(config, records)
    table = class_table(by_index, config.supervised.classes)
    np.testing.assert_array_equal(table, class_indices(records, config.supervised.classes))
    ds = supervised_dataset(None, config, config.supervised.classes, augment=False,
                            shards=str(tmp_path / "calib"), classes_by_index=table)  # fmt: skip
    batch = next(iter(ds))
    assert batch["class"].shape == (config.training.batch_size,) and batch["mask"].shape[1:] == (32, 32, 1)


# ------------------------------------------------------------------------------- subprocess entry points
def _worker_main(npz: str, die_at: int, cli_args: list[str]) -> int:
    """``tfad <cli_args>`` with the test hooks: dump the final weights to ``npz``; SIGKILL this process right
    after step ``die_at`` (0: never)."""
    import tfad.training.fit as fit_module

    real_fit = fit_module.fit

    def dump(trainer) -> None:
        parts = trainer.networks.checkpoint_parts()
        np.savez(npz, *[np.asarray(v.numpy()) for part in parts.values() for v in part.variables])

    def die_after(step: int) -> bool:
        if step == die_at:
            os.kill(os.getpid(), signal.SIGKILL)  # a worker lost at a known step, mid-epoch
        return False

    def fit_with_hooks(*args, **kwargs):
        kwargs["on_train_end"] = dump
        if die_at:
            kwargs["should_stop"] = die_after
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
        npz_path, die_at, separator, *rest = sys.argv[2:]
        assert separator == "--"
        sys.exit(_worker_main(npz_path, int(die_at), rest))
    if sys.argv[1] == "loss-scaling":
        sys.exit(_loss_scaling_main(*sys.argv[2:5]))
    sys.exit(f"unknown entry point {sys.argv[1]!r}")
