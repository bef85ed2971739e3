"""Inference cost of the ResGANAD presets on this CPU: FLOPs per patch, bare TensorFlow time, FLOP/s.

    .venv/bin/python benchmarks/preset_cost.py                                   # all presets
    .venv/bin/python benchmarks/preset_cost.py --presets line-cpu --patches 60 --repeats 10

For each preset the inference path (E1 + decoder + 1-SSIM score + heatmap, i.e. exactly the exported
serving function) is traced once with random weights (cost does not depend on training) and timed on a
batch of ``--patches`` 256x256 grayscale patches, median over ``--repeats`` runs after one warm-up. The
``thesis`` preset (~1 TFLOP per patch) is timed on ``--thesis-patches`` patches (default 1) and its
60-patch product time is extrapolated linearly: the table says so. Achieved GFLOP/s is compared with the
machine's peak (``--peak-gflops``, 2 cores x AVX2 FMA ~ 128).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def measure(preset_name: str, patches: int, repeats: int) -> dict:
    import numpy as np
    import tensorflow as tf

    from tfad.models.flops import count_flops
    from tfad.models.resganad import ResGANADNetworks, preset
    from tfad.scoring.reconstruction import score_images

    reconstructor = ResGANADNetworks(preset(preset_name)).build_reconstructor()
    gflops = count_flops(reconstructor) / 1e9
    fn = tf.function(lambda x: score_images(reconstructor, x))
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (patches, 256, 256, 1), dtype=np.uint8))
    fn(images)["score"].numpy()  # trace + warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn(images)["score"].numpy()
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return {
        "preset": preset_name,
        "gflops_per_patch": gflops,
        "parameters_inference": int(reconstructor.count_params()),
        "patches_timed": patches,
        "repeats": repeats,
        "median_ms": median * 1000,
        "ms_per_patch": median * 1000 / patches,
        "product_60_ms": median * 1000 / patches * 60,
        "extrapolated": patches != 60,
        "achieved_gflops_per_s": gflops * patches / median,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="line-cpu,line-cpu-wide,thesis")
    parser.add_argument("--patches", type=int, default=60)
    parser.add_argument("--thesis-patches", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--thesis-repeats", type=int, default=3)
    parser.add_argument("--peak-gflops", type=float, default=128.0)
    parser.add_argument("--json-out", default="")
    args = parser.parse_args()
    rows = []
    for name in (p.strip() for p in args.presets.split(",") if p.strip()):
        thesis = name == "thesis"
        rows.append(
            measure(
                name,
                args.thesis_patches if thesis else args.patches,
                args.thesis_repeats if thesis else args.repeats,
            )
        )
    print(
        "| preset | GFLOP/patch | params | patches timed x repeats | ms/patch (median) | 60-patch product ms "
        "| GFLOP/s | % of peak |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        product = f"{r['product_60_ms']:.0f}" + (" (extrapolated)" if r["extrapolated"] else "")
        print(
            f"| {r['preset']} | {r['gflops_per_patch']:.3f} | {r['parameters_inference'] / 1e6:.2f} M | "
            f"{r['patches_timed']} x {r['repeats']} | {r['ms_per_patch']:.1f} | {product} | "
            f"{r['achieved_gflops_per_s']:.1f} | {100 * r['achieved_gflops_per_s'] / args.peak_gflops:.1f} |"
        )
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
