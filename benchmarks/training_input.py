"""The full training input pipeline (decode + augment + P_q) per core, next to what training consumes.

    .venv/bin/python benchmarks/training_input.py                       # 20 products -> 1200 patches
    .venv/bin/python benchmarks/training_input.py --products 40 --repeats 7 --train-steps 4

Generates a synthetic vial line (``generate_synth_vials``, seed 0, 1 run, 3 frames, 256x256) into a
temporary folder and packs its train split (``pack_dataset``, as decoded). Then, in one run and
alternating so that all see the same machine load:

- ``tfad.training.inputs.training_dataset`` of the default config (ResGANAD ``line-cpu``, 256x256, batch
  32: decode, resize, rotation/flip, P_q synthetic anomalies) from the folders and from the shards, with
  tf.data restricted to one thread (``threading.private_threadpool_size = 1``,
  ``max_intra_op_parallelism = 1``: images/s **per core**) and with all cores;
- training consumption: ``train_step`` of the default ``line-cpu`` ResGANAD at batch 32 on an in-memory
  batch (no input pipeline in the loop), all cores, after two warm-up steps (tracing).

Prints the median (min, max) over ``--repeats`` timed runs and the headroom: per-core pipeline rate /
training consumption. Files are in the page cache after the warm-up passes: this measures CPU cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def time_batches(ds, batches: int) -> float:
    """images/s of ``batches`` batches from a fresh iterator of ``ds``."""
    start = time.perf_counter()
    count = 0
    for batch in ds.take(batches):
        count += int(batch["image"].shape[0])
    return count / (time.perf_counter() - start)


def restricted(ds, threads: int | None):
    """``ds`` with tf.data limited to ``threads`` threads (None: TensorFlow's default, all cores)."""
    import tensorflow as tf

    if threads is None:
        return ds
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options)


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):7.1f} images/s (min {min(values):.1f}, max {max(values):.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=20, help="train products (20 -> 1200 patches)")
    parser.add_argument("--batch", type=int, default=32, help="batch size (the default config's 32)")
    parser.add_argument("--batches", type=int, default=0, help="batches per timed pass (0 = one pass)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each (median reported; >= 3)")
    parser.add_argument("--train-steps", type=int, default=3, help="training steps per timed run")
    parser.add_argument("--skip-training", action="store_true", help="only the input pipeline")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from tfad.config import architecture, from_dict
    from tfad.data.layouts import read_dataset
    from tfad.data.packing import pack_dataset
    from tfad.data.synth_vials import generate_synth_vials
    from tfad.families import family
    from tfad.training.inputs import training_dataset

    repeats = max(3, args.repeats)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="tfad_training_input_") as tmp:
        root, packed = os.path.join(tmp, "vials"), os.path.join(tmp, "packed")
        generate_synth_vials(root, n_products=args.products, n_runs=1, frames=3, seed=0, image_size=256,
                             n_eval_products=4)  # fmt: skip
        records = read_dataset(root, "train")
        pack_dataset(records, packed, None, shard_size=256, progress=False, split="train", shuffle_seed=0)
        config = from_dict({"data": {"root": root}, "training": {"batch_size": args.batch}})
        batches = args.batches or max(1, len(records) // args.batch)
        load = os.getloadavg()
        print(
            f"{len(records)} synth-vials train patches 256x256 -> model {config.data.image_size}x"
            f"{config.data.image_size}x{config.data.channels}, batch {args.batch}, {batches} batches per "
            f"pass; preset {config.model.preset}; {cores} CPUs visible; load average {load[0]:.1f} at start; "
            f"TF {tf.__version__}"
        )
        pipelines = {
            "folders": lambda: training_dataset(records, config, name="bench"),
            "shards": lambda: training_dataset(None, config, shards=packed, name="bench"),
        }
        threads = {"1 core": 1, f"{cores} cores": None}
        built = {(p, t): restricted(make(), n) for p, make in pipelines.items() for t, n in threads.items()}
        rates: dict[tuple[str, str], list[float]] = {key: [] for key in built}
        for ds in built.values():  # warm-up: page cache, tracing, autotuning
            time_batches(ds, batches)
        for _ in range(repeats):
            for key, ds in built.items():
                rates[key].append(time_batches(ds, batches))
        for (pipeline, thread), values in rates.items():
            print(f"input pipeline, {pipeline:7s}, {thread:8s}: {summary(values)}")

        if args.skip_training:
            return 0
        arch = architecture(config)
        entry = family(config.model.family)
        trainer = entry.trainer(entry.networks(arch, config), config, batches, records)
        batch = next(iter(training_dataset(records, config, name="bench")))  # one real batch, in memory
        step = tf.function(trainer.train_step, reduce_retracing=True)
        for _ in range(2):  # tracing + warm-up
            float(step(batch)["generator_loss"][0])
        consumption = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(args.train_steps):
                logs = step(batch)
            float(logs["generator_loss"][0])  # wait for the last step
            consumption.append(args.train_steps * args.batch / (time.perf_counter() - start))
        print(f"training consumption, {config.model.preset}, {cores} cores: {summary(consumption)}")
        trained = statistics.median(consumption)
        for pipeline in pipelines:
            per_core = statistics.median(rates[(pipeline, "1 core")])
            print(
                f"headroom, {pipeline}: one core of input pipeline feeds {per_core / trained:.1f}x what "
                f"training on {cores} cores consumes"
            )
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
