"""What a model says about a blank frame: the score of patches whose pixels all have one value (a black frame,
a zero-filled buffer after a failed grab, a saturated sensor), against the model's calibrated thresholds.

A model learns what normal images look like; nothing teaches it that an empty one is not a product. A
reconstruction model can reconstruct a flat patch perfectly and score it as normal, so the servers do not ask
the model: an export's manifest says ``preprocessing.blank_patches: "reject"`` and a blank patch is answered
REJECT_INCOMPLETE / BLANK_PATCH (docs/serving.md, fail-safe rule 7). This script shows what the model alone
would have answered, per value and per model:

    .venv/bin/python benchmarks/blank_frames.py savedmodels/vials/3 runs/mt-ssn --values 0,128,255

Each MODEL is a run directory or an exported model (as ``tfad eval`` takes). A patch "would be accepted" when
its score is at or below the lowest region threshold, so in every region (rejected when above the highest).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def blank_frame_verdicts(model: str, values: list[int]) -> dict:
    """Scores of uniform patches of each value, and the verdict the thresholds would give."""
    from tfad.evaluation.scorer import load_scorer

    scorer = load_scorer(model)
    if scorer.thresholds is None:
        raise SystemExit(f"blank_frames: {model} is not calibrated (no thresholds to compare with)")
    table = scorer.thresholds
    limits = [*table.regions.values(), *([] if table.default is None else [table.default])]
    low, high = min(limits), max(limits)
    images = np.stack(
        [np.full((scorer.image_size, scorer.image_size, scorer.channels), v, np.uint8) for v in values]
    )
    scores = scorer(images)["score"]
    rows = []
    for value, score in zip(values, scores, strict=True):
        verdict = "accepted" if score <= low else "rejected" if score > high else "depends on the region"
        rows.append({"value": value, "score": float(score), "model_alone": verdict})
    return {"model": model, "name": scorer.name, "thresholds": [low, high], "blank_patches": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", help="run directories or exported models")
    parser.add_argument(
        "--values", default="0,128,255", help="comma-separated gray values of the blank patches"
    )
    parser.add_argument("--json-out", help="write the results here too")
    args = parser.parse_args(argv)
    try:
        values = [int(v) for v in args.values.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--values must be integers 0-255, got {args.values!r}")
    if not values or any(not 0 <= v <= 255 for v in values):
        parser.error(f"--values must be integers 0-255, got {args.values!r}")
    results = [blank_frame_verdicts(m, values) for m in args.models]
    print("| model | thresholds | " + " | ".join(f"blank {v}: score, model alone" for v in values) + " |")
    print("|---|---|" + "---|" * len(values))
    for r in results:
        cells = " | ".join(f"{row['score']:.4g}, {row['model_alone']}" for row in r["blank_patches"])
        print(f"| {r['name']} | {r['thresholds'][0]:.4g}-{r['thresholds'][1]:.4g} | {cells} |")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
