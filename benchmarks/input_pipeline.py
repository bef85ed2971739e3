"""Throughput of the tfad input pipeline (decode + resize + batch), in images per second.

    .venv/bin/python benchmarks/input_pipeline.py          # magnetic_tile train, 256x256, batch 32
    .venv/bin/python benchmarks/input_pipeline.py --decoder both --repeats 5
    .venv/bin/python benchmarks/input_pipeline.py --root demo_out/data --split train

Each repeat is one full pass over the split (a fresh iterator; files are in the page cache after the
warm-up pass, so this measures decoding, not the disk). Prints the median over the repeats.
``--decoder tf`` times a TensorFlow-native baseline (``tf.io.decode_image`` + ``tf.image.resize``) for
comparison; it cannot read TIFF and has no corrupt-file accounting, which is why tfad uses OpenCV.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "magnetic_tile"


def tf_native_dataset(records, image_size, channels, batch_size):
    """Baseline: TensorFlow's own decoders (PNG/JPEG/BMP/GIF only)."""
    import tensorflow as tf

    paths = tf.constant([r.path for r in records])

    def load(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
        image = tf.image.resize(image, image_size, method="bilinear")
        return tf.cast(tf.round(image), tf.uint8)

    ds = tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size).map(lambda x: tf.cast(x, tf.float32) / 255.0).prefetch(tf.data.AUTOTUNE)
    return ds


def time_pass(ds) -> tuple[float, int]:
    start = time.perf_counter()
    count = 0
    for batch in ds:
        image = batch["image"] if isinstance(batch, dict) else batch
        count += int(image.shape[0])
    return time.perf_counter() - start, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="data set root (default: magnetic_tile)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--size", type=int, default=256, help="square output size (default 256)")
    parser.add_argument("--channels", type=int, default=1, choices=(1, 3))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (median reported; >= 3)")
    parser.add_argument("--decoder", choices=("cv2", "tf", "both"), default="cv2")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.root):
        print(f"data set not found: {args.root}", file=sys.stderr)
        return 2

    import tensorflow as tf

    from tfad.data.layouts import read_dataset
    from tfad.data.pipeline import make_dataset

    records = read_dataset(args.root, args.split)
    size = (args.size, args.size)
    builders = {
        "cv2": lambda: make_dataset(records, size, args.channels, args.batch),
        "tf": lambda: tf_native_dataset(records, size, args.channels, args.batch),
    }
    decoders = ["cv2", "tf"] if args.decoder == "both" else [args.decoder]
    print(
        f"{len(records)} images from {args.root}/{args.split} -> {args.size}x{args.size}x{args.channels}, "
        f"batch {args.batch}, {os.cpu_count()} CPUs visible, TF {tf.__version__}"
    )
    for name in decoders:
        ds = builders[name]()
        warm_seconds, _ = time_pass(ds)  # warm-up: page cache, tf.data autotuning, graph tracing
        rates = []
        for _ in range(max(3, args.repeats)):
            seconds, count = time_pass(ds)
            if count != len(records):
                print(f"{name}: pass yielded {count} images, expected {len(records)}", file=sys.stderr)
                return 1
            rates.append(count / seconds)
        print(
            f"{name:4s}: median {statistics.median(rates):7.1f} images/s over {len(rates)} passes "
            f"(min {min(rates):.1f}, max {max(rates):.1f}; warm-up pass {len(records) / warm_seconds:.1f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
