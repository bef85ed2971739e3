"""Domain-shift evaluation: the same split scored once per shift condition, each metric's drop reported.

``tfad eval MODEL --shift`` (and ``benchmarks/domain_shift.py`` over several families) call
:func:`evaluate_shifts`. The thresholds stay the ones calibrated on unshifted images, as on a line whose
images drift after qualification, so the decisions show what drift does to the false-reject and
escape rates, and the threshold-free metrics (AUROC, AUPRO) what it does to the model's ranking.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfad.data.records import ImageRecord
from tfad.data.shift import FULL_STRENGTH, Shift
from tfad.evaluation.report import evaluate
from tfad.evaluation.scorer import Scorer, nan_safe, score_records
from tfad.scoring.thresholds import ThresholdTable

__all__ = ["SHIFT_FILE", "condition_row", "evaluate_shifts", "write_shift_results"]

SHIFT_FILE = "shift.json"

#: Columns of a condition's row (shift.csv, the printed table); ``*_drop`` = unshifted value - this value.
METRICS = ("image_auroc", "pixel_auroc", "aupro", "accuracy", "true_accept_rate", "true_reject_rate")


def condition_row(report: dict, shift: Shift | None) -> dict[str, Any]:
    """The row of one condition from its :func:`tfad.evaluation.report.evaluate` report."""
    patch = report["at_thresholds"]["patch"]
    pixel = report["pixel_level"]
    return {
        "kind": "none" if shift is None else shift.kind,
        "strength": 0.0 if shift is None else shift.strength,
        "image_auroc": nan_safe(report["image_level"].get("auroc")),
        "pixel_auroc": nan_safe(pixel.get("pixel_auroc")) if pixel.get("available") else None,
        "aupro": nan_safe(pixel.get("aupro")) if pixel.get("available") else None,
        "accuracy": patch.get("accuracy"),
        "true_accept_rate": patch.get("true_accept_rate"),
        "true_reject_rate": patch.get("true_reject_rate"),
    }


def evaluate_shifts(
    scorer: Scorer,
    records: Sequence[ImageRecord],
    thresholds: ThresholdTable,
    shifts: Sequence[Shift],
    scratch_dir: str | Path,
    seed: int = 0,
    batch_size: int = 32,
    on_corrupt: str = "skip",
    progress: bool = True,
    k: int = 1,
    n: int = 1,
    baseline: dict | None = None,
) -> list[dict[str, Any]]:
    """Rows of the unshifted split (``baseline``: its report, when already computed) and of every shift.

    Each row holds :data:`METRICS` and, for the shifted rows, ``<metric>_drop`` (unshifted - shifted;
    positive = worse for AUROC, AUPRO, accuracy and the rates). The scratch folder is removed afterwards.
    """
    scratch = Path(scratch_dir)
    try:
        if baseline is None:
            table, _ = score_records(scorer, records, scratch / "none", batch_size, on_corrupt, progress)
            baseline = evaluate(table, thresholds, k=k, n=n, gate=scorer.gate)
        rows = [condition_row(baseline, None)]
        for shift in shifts:
            table, _ = score_records(
                scorer, records, scratch / shift.name, batch_size, on_corrupt, progress, shift, seed
            )
            row = condition_row(evaluate(table, thresholds, k=k, n=n, gate=scorer.gate), shift)
            for metric in METRICS:
                before, after = rows[0][metric], row[metric]
                row[f"{metric}_drop"] = None if before is None or after is None else before - after
            rows.append(row)
            shutil.rmtree(scratch / shift.name, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def write_shift_results(rows: list[dict[str, Any]], out_dir: str | Path, seed: int, title: str) -> list[Path]:
    """Write ``shift.json`` (rows, what each strength means, seed), ``shift.csv`` and
    ``plots/shift_auroc.png`` into ``out_dir``; returns the written paths."""
    from tfad.evaluation.plots import plot_shift_curves

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / SHIFT_FILE).write_text(
        json.dumps({"seed": seed, "full_strength": FULL_STRENGTH, "rows": rows}, indent=2) + "\n"
    )
    columns = ["kind", "strength", *METRICS, *(f"{m}_drop" for m in METRICS)]
    with open(out / "shift.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    written = [out / SHIFT_FILE, out / "shift.csv"]
    (out / "plots").mkdir(exist_ok=True)
    plot = plot_shift_curves({title: rows}, str(out / "plots" / "shift_auroc.png"))
    return [*written, Path(plot)]


def format_shift_table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table (values and drops of image AUROC, pixel AUROC and the rates)."""

    def fmt(value: float | None, sign: bool = False) -> str:
        return "n/a" if value is None else (f"{value:+.3f}" if sign else f"{value:.3f}")

    lines = [f"{'shift':<16}{'image AUROC':>12}{'drop':>8}{'pixel AUROC':>13}{'drop':>8}{'TAR':>7}{'TRR':>7}"]
    for row in rows:
        name = "none" if row["kind"] == "none" else f"{row['kind']}@{row['strength']:g}"
        lines.append(
            f"{name:<16}{fmt(row['image_auroc']):>12}{fmt(row.get('image_auroc_drop'), True):>8}"
            f"{fmt(row['pixel_auroc']):>13}{fmt(row.get('pixel_auroc_drop'), True):>8}"
            f"{fmt(row['true_accept_rate']):>7}{fmt(row['true_reject_rate']):>7}"
        )
    return "\n".join(lines)
