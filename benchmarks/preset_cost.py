"""Inference cost of the model presets on this CPU: FLOPs per patch, bare TensorFlow time, FLOP/s.

    .venv/bin/python benchmarks/preset_cost.py                                   # all presets
    .venv/bin/python benchmarks/preset_cost.py --presets line-cpu --patches 60 --repeats 10

For each preset the inference path (networks + score + heatmap, i.e. exactly the exported
serving function) is traced once with random weights (cost does not depend on training) and timed on a
batch of ``--patches`` 256x256 grayscale patches, median over ``--repeats`` runs after one warm-up; the
networks alone (no score, no heatmap) are timed the same way right after, to show the scoring's share. The
``thesis`` presets (~0.1-1 TFLOP per patch) are timed on ``--thesis-patches`` patches (default 1) and their
60-patch product time is extrapolated linearly: the table says so. Achieved GFLOP/s is compared with the
machine's float32 peak (``--peak-gflops``, default derived from /proc/cpuinfo by ``benchmarks/machine.py``).
GRD-Net presets are given as ``grdnet:crae`` / ``grdnet:drae``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine  # noqa: E402


def measure(spec: str, patches: int, repeats: int) -> dict:
    """Time ``spec`` = ``[family:]preset`` (family ``resganad`` when omitted)."""
    import numpy as np
    import tensorflow as tf

    from tfad.config import architecture, from_dict
    from tfad.families import family
    from tfad.networks.flops import count_flops

    family_name, _, preset_name = spec.rpartition(":")
    config = from_dict({"model": {"family": family_name or "resganad", "preset": preset_name}})
    model_family = family(config.model.family)
    inference_model = model_family.networks(architecture(config)).build_inference_model()
    gflops = count_flops(inference_model) / 1e9
    fn = tf.function(model_family.score_function(inference_model, config))
    network = tf.function(lambda x: inference_model(tf.cast(x, tf.float32) / 255.0, training=False))
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (patches, 256, 256, 1), dtype=np.uint8))

    def median_seconds(function) -> float:
        tf.nest.flatten(function(images))[0].numpy()  # trace + warm-up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            tf.nest.flatten(function(images))[0].numpy()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    # interleaved in one run, so both see the same machine load
    median = median_seconds(fn)
    network_median = median_seconds(network)
    return {
        "preset": spec,
        "gflops_per_patch": gflops,
        "parameters_inference": int(inference_model.count_params()),
        "patches_timed": patches,
        "repeats": repeats,
        "median_ms": median * 1000,
        "network_only_median_ms": network_median * 1000,
        "ms_per_patch": median * 1000 / patches,
        "product_60_ms": median * 1000 / patches * 60,
        "extrapolated": patches != 60,
        "achieved_gflops_per_s": gflops * patches / median,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--presets",
        default="line-cpu,line-cpu-wide,thesis,grdnet:crae,grdnet:drae",
        help="comma-separated [family:]preset (family resganad when omitted)",
    )
    parser.add_argument("--patches", type=int, default=60)
    parser.add_argument("--thesis-patches", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--thesis-repeats", type=int, default=3)
    parser.add_argument("--peak-gflops", type=float, default=None, help="default: this machine's")
    parser.add_argument("--json-out", default="")
    args = parser.parse_args()
    machine = describe_machine()
    if args.peak_gflops is None:
        args.peak_gflops = machine["peak_gflops"]
    print(f"machine: {machine['cpu']}, peak {args.peak_gflops} GFLOP/s ({machine['peak_formula']})")
    rows = []
    for name in (p.strip() for p in args.presets.split(",") if p.strip()):
        thesis = name.rpartition(":")[2].startswith("thesis")
        rows.append(
            measure(
                name,
                args.thesis_patches if thesis else args.patches,
                args.thesis_repeats if thesis else args.repeats,
            )
        )
    print(
        "| preset | GFLOP/patch | params | patches timed x repeats | ms/patch (median) | 60-patch product ms "
        "| of which networks ms | GFLOP/s | % of peak |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        product = f"{r['product_60_ms']:.0f}" + (" (extrapolated)" if r["extrapolated"] else "")
        print(
            f"| {r['preset']} | {r['gflops_per_patch']:.3f} | {r['parameters_inference'] / 1e6:.2f} M | "
            f"{r['patches_timed']} x {r['repeats']} | {r['ms_per_patch']:.1f} | {product} | "
            f"{r['network_only_median_ms'] / r['patches_timed'] * 60:.0f} | "
            f"{r['achieved_gflops_per_s']:.1f} | {100 * r['achieved_gflops_per_s'] / args.peak_gflops:.1f} |"
        )
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
