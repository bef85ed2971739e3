"""``tfad predict MODEL INPUT...``: scores, decisions and heatmap overlays for loose images or folders."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tfad predict``."""
    parser = subparsers.add_parser(
        "predict",
        help="score images or folders; write scores.csv and heatmap overlay PNGs",
        description="Score image files or folders (recursively) with a run directory or an exported model. "
        "Writes OUT/scores.csv (path, region, score, threshold, decision) and OUT/overlays/*.png (input | "
        "heatmap overlay, with score and decision). Line-layout file names (f<frame>_v<vial>_<region>.png) "
        "give the region; other images use --region. An unreadable image is listed as REJECT (unreadable), "
        "and so is an image the line would not inspect (blank, or outside the acquisition check's limits).",
    )
    parser.add_argument("model", metavar="MODEL", help="run directory, or savedmodels/<name>[/<version>]")
    parser.add_argument("inputs", metavar="INPUT", nargs="+", help="image files or folders")
    parser.add_argument("--out", default="predictions", help="output folder (default: predictions)")
    parser.add_argument("--region", help="region of images whose name does not carry one (default: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-overlays", action="store_true", help="scores.csv only")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    import csv
    import dataclasses
    from pathlib import Path

    from tfad.cli import CLIError
    from tfad.evaluation.scorer import load_scorer, records_from_paths, score_records

    scorer = load_scorer(args.model)
    records = records_from_paths(args.inputs)
    if not records:
        raise CLIError("no image files found in " + ", ".join(args.inputs))
    if args.region:
        records = [dataclasses.replace(r, region=args.region) if r.region == "all" else r for r in records]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        table, corrupt = score_records(
            scorer, records, None, args.batch_size, "skip", progress=not args.no_progress
        )
    except ValueError as err:  # nothing readable at all
        table, corrupt = None, {r.path: str(err) for r in records}
    rows = []
    counts = {"ACCEPT": 0, "REJECT": 0, "SCORED": 0}
    gate_reasons = [] if table is None else scorer.gate.table_reasons(table)
    for i in range(0 if table is None else len(table)):
        region, score = str(table.regions[i]), float(table.scores[i])
        threshold = None
        if scorer.thresholds is not None:
            try:
                threshold = scorer.thresholds.threshold_for(region)
            except KeyError:
                threshold = None
        if threshold is None:
            decision = "SCORED" if scorer.thresholds is None else "REJECT"  # unknown region: fail safe
            reason = (
                "model not calibrated" if scorer.thresholds is None else f"no threshold for region {region}"
            )
        else:
            decision = "REJECT" if score > threshold else "ACCEPT"
            reason = ""
        if gate_reasons[i] is not None:  # what the servers answer REJECT_INCOMPLETE without scoring
            decision, reason = "REJECT", f"not inspected on the line: {gate_reasons[i]}"
        counts[decision] += 1
        rows.append(
            {
                "path": table.paths[i],
                "region": region,
                "score": f"{score:.6f}",
                "threshold": "" if threshold is None else f"{threshold:.6f}",
                "decision": decision,
                "reason": reason,
            }
        )
        if not args.no_overlays:
            _write_overlay(
                out / "overlays",
                table.paths[i],
                table.heatmap(i),
                score,
                threshold,
                decision,
                scorer.image_size,
                scorer.channels,
            )
    for path, why in corrupt.items():
        counts["REJECT"] += 1
        rows.append(
            {
                "path": path,
                "region": "",
                "score": "",
                "threshold": "",
                "decision": "REJECT",
                "reason": f"unreadable: {why}",
            }
        )
    with open(out / "scores.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(
        f"{len(rows)} image(s) with {scorer.describe()}: "
        + ", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v)
    )
    print(f"scores: {out / 'scores.csv'}" + ("" if args.no_overlays else f"   overlays: {out / 'overlays'}/"))
    return 0


def _write_overlay(
    folder, path: str, heatmap, score: float, threshold, decision: str, size: int, channels: int
) -> None:
    """input | heatmap blended over the input (JET colours), with a caption line."""
    from pathlib import Path

    import cv2
    import numpy as np

    from tfad.data.decode import load_images

    folder.mkdir(parents=True, exist_ok=True)
    image = load_images([path], (size, size), channels)[0]
    gray = image[..., 0] if channels == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    base = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    colour = cv2.applyColorMap(np.clip(heatmap * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    blended = cv2.addWeighted(base, 0.55, colour, 0.45, 0)
    panel = np.concatenate([base, blended], axis=1)
    caption = np.zeros((22, panel.shape[1], 3), np.uint8)
    text = f"score {score:.4f}" + (f" thr {threshold:.4f}" if threshold is not None else "") + f" {decision}"
    red = (60, 60, 255) if decision == "REJECT" else (120, 220, 120)
    cv2.putText(caption, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, red, 1, cv2.LINE_AA)
    name = Path(path)
    target = folder / f"{name.parent.name}_{name.stem}_overlay.png"
    cv2.imwrite(str(target), np.concatenate([caption, panel], axis=0))
