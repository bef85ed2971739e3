"""The acquisition check on real images: what it costs (good images it stops) and what it catches (failed
acquisitions it stops), with the limits ``tfad calibrate`` would fit (:mod:`tfad.scoring.acquisition`).

The limits are fitted on the good images of ``--fit-split`` and applied to every image of ``--eval-split``
(never the same images), at the model's input size, then to:

- the evaluation split under each domain shift of ``tfad eval --shift`` at full strength (lighting drift,
  lost focus, noise, a moved camera: drift the line should survive, so a good image stopped here is a cost);
- simulated failed acquisitions of each good evaluation image (what the check is for, so one not stopped is a
  miss): the lamp off (1 % of the light, sensor noise sigma 1.5), the lamp at a quarter, a saturated sensor
  (gain x4), a covered lens (the image's mean grey with sensor noise sigma 2), a frame dropped to zeros.

    .venv/bin/python benchmarks/acquisition_check.py --data ../shared/datasets/magnetic_tile \\
        --fit-split train --eval-split test --json-out bench_out/acquisition_check.json

No model is run: the check does not depend on one. Prints one table; ``--json-out`` keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

FAILURES = {
    "lamp off": "1 % of the light, sensor noise sigma 1.5",
    "lamp at a quarter": "25 % of the light, sensor noise sigma 1.5",
    "saturated sensor": "gain x4, clipped at 255",
    "covered lens": "the image's mean grey, sensor noise sigma 2",
    "frame of zeros": "every byte 0",
}


def simulate_failure(images: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """``images`` (uint8 ``[N, H, W, C]``) as the failed acquisition ``kind`` of :data:`FAILURES` delivers
    them (seeded sensor noise)."""
    rng = np.random.default_rng(seed)
    x = images.astype(np.float64)
    if kind == "lamp off":
        x = 0.01 * x + rng.normal(0.0, 1.5, x.shape)
    elif kind == "lamp at a quarter":
        x = 0.25 * x + rng.normal(0.0, 1.5, x.shape)
    elif kind == "saturated sensor":
        x = 4.0 * x
    elif kind == "covered lens":
        x = x.mean(axis=(1, 2, 3), keepdims=True) + rng.normal(0.0, 2.0, x.shape)
    elif kind == "frame of zeros":
        x = np.zeros_like(x)
    else:
        raise ValueError(f"unknown failure {kind!r}; choose from {', '.join(FAILURES)}")
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def measure(data: str, fit_split: str, eval_split: str, image_size: int, channels: int, seed: int) -> dict:
    """The figures of the table: per condition, how many good and defective images the check stops."""
    from tfad.data.decode import blank_images, load_images, pixel_statistics
    from tfad.data.layouts import read_dataset
    from tfad.data.shift import KINDS, Shift, apply_shift
    from tfad.scoring.acquisition import PatchGate, fit_acquisition_check, stopped

    fit_records = [r for r in read_dataset(data, fit_split) if r.label == 0]
    eval_records = [r for r in read_dataset(data, eval_split) if r.label in (0, 1)]
    if not fit_records or not eval_records:
        raise SystemExit(f"acquisition_check: {data} needs good images in {fit_split!r} and labelled ones in "
                         f"{eval_split!r}")  # fmt: skip
    overlap = {r.path for r in fit_records} & {r.path for r in eval_records}
    if overlap:
        raise SystemExit(f"acquisition_check: {len(overlap)} images are in both splits")
    started = time.perf_counter()
    fit_images = load_images(fit_records, (image_size, image_size), channels)
    eval_images = load_images(eval_records, (image_size, image_size), channels)
    load_s = time.perf_counter() - started
    means, stds = pixel_statistics(fit_images)
    check = fit_acquisition_check(
        [r.region for r in fit_records], [0] * len(fit_records), means, stds, blank_images(fit_images)
    )
    gate = PatchGate(reject_blank_patches=True, acquisition_check=check)
    regions = [r.region for r in eval_records]
    labels = np.asarray([r.label for r in eval_records])
    good = labels == 0

    def row(condition: str, what: str, images: np.ndarray) -> dict:
        stop = stopped(gate.image_reasons(regions, images))
        return {
            "condition": condition,
            "what": what,
            "good": int(good.sum()),
            "good_stopped": int((stop & good).sum()),
            "defective": int((~good).sum()),
            "defective_stopped": int((stop & ~good).sum()),
        }

    rows = [row("as acquired", "the evaluation split", eval_images)]
    indices = np.arange(len(eval_images))
    for kind in KINDS:
        shifted, _ = apply_shift(eval_images, None, indices, Shift(kind, 1.0), seed)
        rows.append(row(f"shift {kind}@1", "domain shift at full strength (tfad eval --shift)", shifted))
    good_images = eval_images[good]
    for kind, what in FAILURES.items():
        failed = simulate_failure(good_images, kind, seed)
        stop = stopped(gate.image_reasons([r for r, g in zip(regions, good, strict=True) if g], failed))
        rows.append(
            {
                "condition": kind,
                "what": what,
                "failed_acquisitions": len(failed),
                "stopped": int(stop.sum()),
            }
        )
    return {
        "data": data,
        "fit_split": fit_split,
        "eval_split": eval_split,
        "image_size": image_size,
        "fitted_on_good_images": len(fit_records),
        "limits": check.to_manifest(),
        "load_seconds": round(load_s, 1),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="a data set in the MVTec or line layout")
    parser.add_argument("--fit-split", default="train", help="the good images the limits are fitted on")
    parser.add_argument("--eval-split", default="test", help="the labelled images the check is applied to")
    parser.add_argument("--image-size", type=int, default=256, help="the model's input size (default 256)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", help="write the results here too")
    args = parser.parse_args(argv)
    if args.fit_split == args.eval_split:
        parser.error("--fit-split and --eval-split must differ (never evaluate on the images fitted on)")
    result = measure(args.data, args.fit_split, args.eval_split, args.image_size, args.channels, args.seed)
    default = result["limits"]["default"]
    print(
        f"limits fitted on {result['fitted_on_good_images']} good images of {args.fit_split!r} "
        f"(default: mean grey {default['mean_min']:.1f}-{default['mean_max']:.1f}, std >= "
        f"{default['std_min']:.2f}); applied to {args.eval_split!r} at {args.image_size} x {args.image_size}"
    )
    print("| condition | good stopped | defective stopped | failed acquisitions stopped |")
    print("|---|---|---|---|")
    for r in result["rows"]:
        if "stopped" in r:
            print(f"| {r['condition']} ({r['what']}) | | | {r['stopped']} of {r['failed_acquisitions']} |")
        else:
            print(
                f"| {r['condition']} | {r['good_stopped']} of {r['good']} | "
                f"{r['defective_stopped']} of {r['defective']} | |"
            )
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
