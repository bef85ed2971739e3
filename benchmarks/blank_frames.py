"""What a model says about a failed acquisition: the score of patches whose pixels all have one value (a black
frame, a zero-filled buffer after a failed grab, a saturated sensor) and of noise frames (a lamp failure: dark
noise; a saturated sensor: bright noise; a covered or defocused lens: flat grey noise), against the model's
calibrated thresholds, and what the line answers.

A model learns what normal images look like; nothing teaches it that an empty one is not a product. A
reconstruction model can reconstruct a flat patch perfectly and score it as normal, so the servers do not ask
the model: an export's manifest says ``preprocessing.blank_patches: "reject"`` and a blank patch is answered
REJECT_INCOMPLETE / BLANK_PATCH (docs/serving.md, fail-safe rule 7); its ``acquisition_check`` stops a patch
whose mean grey or contrast is outside the good calibration images' (rule 8). This script shows what the model
alone would have answered, per frame and per model, and what the line answers with the model's own rules (the
acquisition check's default limits, those of all good images):

    .venv/bin/python benchmarks/blank_frames.py savedmodels/vials/3 runs/mt-ssn --values 0,128,255 \
        --noise 4:1.5,250:2,128:2

Each MODEL is a run directory or an exported model (as ``tfad eval`` takes). A patch "would be accepted" when
its score is at or below the lowest region threshold, so in every region (rejected when above the highest).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def _frames(
    size: int, channels: int, values: list[int], noise: list[tuple[float, float]]
) -> tuple[list, list]:
    """Uniform frames of each value, then seeded noise frames of each (mean, std), clipped to 0-255."""
    rng = np.random.default_rng(0)
    names = [f"blank {v}" for v in values] + [f"noise {m:g}+-{s:g}" for m, s in noise]
    frames = [np.full((size, size, channels), v, np.uint8) for v in values] + [
        rng.normal(m, s, (size, size, channels)).clip(0, 255).round().astype(np.uint8) for m, s in noise
    ]
    return names, frames


def blank_frame_verdicts(
    model: str, values: list[int], noise: list[tuple[float, float]] | None = None
) -> dict:
    """Scores of uniform and noise patches, the verdict the thresholds alone would give, and what the line
    answers: REJECT_INCOMPLETE when the model's gate (blank-patch rule, acquisition check) stops the patch."""
    from tfad.data.decode import blank_images, pixel_statistics
    from tfad.evaluation.scorer import load_scorer

    scorer = load_scorer(model)
    if scorer.thresholds is None:
        raise SystemExit(f"blank_frames: {model} is not calibrated (no thresholds to compare with)")
    table = scorer.thresholds
    limits = [*table.regions.values(), *([] if table.default is None else [table.default])]
    low, high = min(limits), max(limits)
    names, frames = _frames(scorer.image_size, scorer.channels, values, noise or [])
    images = np.stack(frames)
    scores = scorer(images)["score"]
    means, stds = pixel_statistics(images)
    regions = [""] * len(frames)  # no region: the default limits (all good images; a region's may be tighter)
    gate = scorer.gate.reasons(regions, blank_images(images), means, stds)
    rows = []
    for name, score, mean, std, reason in zip(names, scores, means, stds, gate, strict=True):
        verdict = "accepted" if score <= low else "rejected" if score > high else "depends on the region"
        line = verdict if reason is None else "REJECT_INCOMPLETE (" + reason.split(":")[0] + ")"
        rows.append(
            {
                "frame": name,
                "mean": float(mean),
                "std": float(std),
                "score": float(score),
                "model_alone": verdict,
                "line": line,
            }
        )
    return {"model": model, "name": scorer.name, "thresholds": [low, high], "blank_patches": rows}


def _noise(text: str) -> list[tuple[float, float]]:
    pairs = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        mean, _, std = item.partition(":")
        pairs.append((float(mean), float(std)))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", help="run directories or exported models")
    parser.add_argument(
        "--values", default="0,128,255", help="comma-separated gray values of the blank patches"
    )
    parser.add_argument(
        "--noise",
        default="4:1.5,250:2,128:2",
        help="comma-separated mean:std of noise frames: a lamp failure, a saturated sensor, a flat grey "
        "(default: 4:1.5,250:2,128:2; '' for none)",
    )
    parser.add_argument("--json-out", help="write the results here too")
    args = parser.parse_args(argv)
    try:
        values = [int(v) for v in args.values.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--values must be integers 0-255, got {args.values!r}")
    if any(not 0 <= v <= 255 for v in values):
        parser.error(f"--values must be integers 0-255, got {args.values!r}")
    try:
        noise = _noise(args.noise)
    except ValueError:
        parser.error(f"--noise must be mean:std pairs, e.g. 4:1.5,250:2, got {args.noise!r}")
    if not values and not noise:
        parser.error("nothing to score: give --values or --noise")
    results = [blank_frame_verdicts(m, values, noise) for m in args.models]
    names = [row["frame"] for row in results[0]["blank_patches"]]
    print("| model | thresholds | " + " | ".join(f"{n}: score, model alone, line" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for r in results:
        cells = " | ".join(
            f"{row['score']:.4g}, {row['model_alone']}, {row['line']}" for row in r["blank_patches"]
        )
        print(f"| {r['name']} | {r['thresholds'][0]:.4g}-{r['thresholds'][1]:.4g} | {cells} |")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
