"""Time the pretrained backbone (EfficientNet-Lite0 feature extractor) on a 60-patch product, side by side.

For each backbone input size and tap set: the extractor as a plain ``tf.function`` and, with ``--xla``,
compiled with XLA (``jit_compile=True``), called alternately (A B A B ...) after a warm-up, median and
min/max over ``--repeats`` calls, the XLA/plain ratio per pair, and the achieved GFLOP/s against the
machine's float32 peak (benchmarks/machine.py). Random weights: the cost does not depend on them.

    .venv/bin/python benchmarks/backbone_speed.py --sizes 64,96,128,256 --xla
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="96,128,256", help="backbone input sizes")
    parser.add_argument("--taps", default="stride8,stride16;stride8", help="';'-separated tap sets")
    parser.add_argument("--patches", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--xla", action="store_true", help="also time the XLA-compiled extractor")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    from tfad.backbones import build_feature_extractor, flops_per_image

    machine = describe_machine()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, peak {machine['peak_gflops']} GFLOP/s "
          f"({machine['peak_formula']})")  # fmt: skip
    print(
        "| input | taps | GFLOP/product | plain median ms (min-max) | GFLOP/s (% peak) | XLA median ms "
        "| XLA/plain |"
    )
    print("|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        images = tf.constant(np.random.default_rng(0).random((args.patches, size, size, 1), np.float32))
        for taps in (tuple(t.split(",")) for t in args.taps.split(";")):
            model = build_feature_extractor(size, 1, taps, weights=None)
            variants = {"plain": tf.function(lambda x, m=model: m(x, training=False))}
            if args.xla:
                variants["xla"] = tf.function(lambda x, m=model: m(x, training=False), jit_compile=True)
            times: dict[str, list[float]] = {k: [] for k in variants}
            for function in variants.values():  # trace + warm-up
                tf.nest.flatten(function(images))[0].numpy()
            for _ in range(args.repeats):
                for name, function in variants.items():
                    started = time.perf_counter()
                    tf.nest.flatten(function(images))[0].numpy()
                    times[name].append(time.perf_counter() - started)
            gflop = flops_per_image(size, taps) * args.patches / 1e9
            plain = statistics.median(times["plain"])
            rate = gflop / plain
            xla = ratio = "-"
            if args.xla:
                xla = f"{1000 * statistics.median(times['xla']):.0f}"
                pairs = zip(times["xla"], times["plain"], strict=True)
                ratio = f"{statistics.median(x / p for x, p in pairs):.2f}"
            spread = f"{1000 * min(times['plain']):.0f}-{1000 * max(times['plain']):.0f}"
            share = 100 * rate / machine["peak_gflops"]
            print(
                f"| {size} | {'+'.join(taps)} | {gflop:.2f} | {1000 * plain:.0f} ({spread}) | "
                f"{rate:.1f} ({share:.1f} %) | {xla} | {ratio} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
