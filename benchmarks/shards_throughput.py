"""Images/s read from packed TFRecord shards vs from the image folders, side by side in one run.

    .venv/bin/python benchmarks/shards_throughput.py                     # 60 products -> 3600 train patches
    .venv/bin/python benchmarks/shards_throughput.py --products 20 --repeats 3

Generates a synthetic vial line (``generate_synth_vials``, seed 0, 1 run, 3 frames) into a temporary
folder, packs its train split (``pack_dataset``, stored as decoded), then times full passes of
``make_dataset`` (folders) and ``make_shard_dataset`` (shards), alternating so that both see the same
machine load, and prints the median, min and max images/s of each. Both decode, resize to
``--image-size`` and batch the same way; both shuffle (as training does) unless ``--no-shuffle``.
Files are in the page cache after the warm-up passes, so this measures CPU cost (decoding, per-file
overhead), not a shared file system, where the shards' advantage (few large sequential reads instead
of one open per image) is the point. Also prints the time of packing and of the SHA-256 check.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def time_pass(ds) -> tuple[float, int]:
    start = time.perf_counter()
    count = 0
    for batch in ds:
        count += int(batch["image"].shape[0])
    return time.perf_counter() - start, count


def folder_bytes(records) -> int:
    return sum(os.path.getsize(r.path) for r in records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=60, help="train products (60 -> 3600 patches)")
    parser.add_argument("--size", type=int, default=256, help="generated patch size (default 256)")
    parser.add_argument("--image-size", type=int, default=256, help="size read at (default 256)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes of each reader (>= 3)")
    parser.add_argument("--no-shuffle", action="store_true", help="read in order instead of shuffled")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from tfad.data.layouts import read_dataset
    from tfad.data.packing import pack_dataset
    from tfad.data.pipeline import make_dataset
    from tfad.data.shards import make_shard_dataset, verify_shards
    from tfad.data.synth_vials import generate_synth_vials

    shuffle = not args.no_shuffle
    size = (args.image_size, args.image_size)
    with tempfile.TemporaryDirectory(prefix="tfad_shards_bench_") as tmp:
        root, out = os.path.join(tmp, "vials"), os.path.join(tmp, "packed")
        started = time.perf_counter()
        generate_synth_vials(root, n_products=args.products, n_runs=1, frames=3, seed=0,
                             image_size=args.size, n_eval_products=4)  # fmt: skip
        generated = time.perf_counter() - started
        records = read_dataset(root, "train")
        packed = pack_dataset(records, out, None, shard_size=args.shard_size, progress=False, split="train")
        verified = verify_shards(out)
        started = time.perf_counter()
        ds_shards = make_shard_dataset(out, size, batch_size=args.batch, shuffle=shuffle, seed=0)
        build_seconds = time.perf_counter() - started  # includes the SHA-256 check of every shard
        ds_folder = make_dataset(records, size, batch_size=args.batch, shuffle=shuffle, seed=0)
        print(
            f"{len(records)} train patches {args.size}x{args.size} from synth-vials "
            f"({args.products} products, "
            f"generated in {generated:.1f} s) -> {args.image_size}x{args.image_size}x1, batch {args.batch}, "
            f"shuffle {shuffle}, {os.cpu_count()} CPUs visible, TF {tf.__version__}"
        )
        print(
            f"folder: {folder_bytes(records) / 1e6:.1f} MB in {len(records)} files; shards: "
            f"{packed.bytes / 1e6:.1f} MB in {len(packed.shards)} files, packed in {packed.seconds:.1f} s "
            f"({packed.records / packed.seconds:.0f} images/s); verify_shards {verified.seconds:.2f} s; "
            f"make_shard_dataset (SHA-256 check) {build_seconds:.2f} s"
        )
        readers = {"folder": ds_folder, "shards": ds_shards}
        rates: dict[str, list[float]] = {name: [] for name in readers}
        warm = {}
        for name, ds in readers.items():  # warm-up: page cache, tf.data autotuning, tracing
            seconds, _ = time_pass(ds)
            warm[name] = len(records) / seconds
        for _ in range(max(3, args.repeats)):
            for name, ds in readers.items():
                seconds, count = time_pass(ds)
                if count != len(records):
                    print(f"{name}: pass yielded {count} images, expected {len(records)}", file=sys.stderr)
                    return 1
                rates[name].append(count / seconds)
        for name, values in rates.items():
            print(
                f"{name:6s}: median {statistics.median(values):7.1f} images/s over {len(values)} passes "
                f"(min {min(values):.1f}, max {max(values):.1f}; warm-up pass {warm[name]:.1f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
