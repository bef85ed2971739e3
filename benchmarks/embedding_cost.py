"""Analytic inference cost of every embedding preset: backbone and distance GFLOP per patch, normal-model MB.

    .venv/bin/python benchmarks/embedding_cost.py                       # PatchCore banks for 608 images
    .venv/bin/python benchmarks/embedding_cost.py --train-images 20000

The count is ``tfad.families.embedding.fitter.inference_cost`` (multiply-add = 2; the backbone up to its
deepest tap, the distance to the normal model); a PatchCore bank holds ``coreset_fraction`` of
``train images x grid cells`` features, so its cost grows with the training set (``--train-images``). Also
prints what a 60-patch product costs and the bank size at which PatchCore's exact 1-NN costs as much as
the backbone. Served times: ``benchmarks/latency.py``.
"""

from __future__ import annotations

import argparse
import math


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-images", type=int, default=608, help="training images (PatchCore bank size)")
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args()

    from tfad.families.embedding.fitter import feature_dim, inference_cost
    from tfad.families.embedding.presets import PRESETS

    print(
        f"| preset | method | backbone input | feature dim | bank rows ({args.train_images} images) | "
        "backbone GFLOP/patch | distance GFLOP/patch | 60-patch product GFLOP | normal model MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, preset in PRESETS.items():
        arch = preset.__class__(**{**preset.to_dict(), "image_size": args.image_size})
        rows = (
            math.ceil(arch.coreset_fraction * args.train_images * arch.grid_size**2)
            if arch.method == "patchcore"
            else None
        )
        cost = inference_cost(arch, rows)
        print(
            f"| {name} | {arch.method} | {arch.backbone_input_size} | {feature_dim(arch)} | {rows or '-'} | "
            f"{cost['backbone_gflops']:.3f} | {cost['distance_gflops']:.3f} | {60 * cost['gflops']:.1f} | "
            f"{cost['normal_model_mb']:.1f} |"
        )
        if arch.method == "patchcore" and not arch.pq_subspaces:
            even = cost["backbone_gflops"] * 1e9 / (2 * arch.grid_size**2 * feature_dim(arch))
            print(f"|  | (exact 1-NN costs as much as the backbone at {even:.0f} bank rows) |||||||")


if __name__ == "__main__":
    main()
