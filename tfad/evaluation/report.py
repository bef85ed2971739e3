"""The ``tfad eval`` report: metrics, decisions at calibrated thresholds, plots, a terminal summary.

:func:`evaluate` computes the report dict from a :class:`~tfad.scoring.table.ScoreTable` and a
:class:`~tfad.scoring.thresholds.ThresholdTable`; :func:`write_report` also writes ``report.json``,
``summary.txt`` and ``plots/*.png``. Field meanings: docs/evaluation.md.

Positive class: **defective (label 1)**, as everywhere in tfad. The thesis (003) calls a good product
"positive"; every decision block therefore gives ``true_accept_rate`` (good accepted / good, the thesis'
"true positive ratio") and ``true_reject_rate`` (defective rejected / defective, the thesis' "true
negative ratio") so either reading works.

Memory: heatmaps are read one at a time, twice (value range, then counts); nothing of size ``N x H x W``
is held. A metric that is undefined on the data (e.g. AUROC with one class) is ``null`` with a
``*_undefined_reason`` next to it instead of failing the whole report.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable

import numpy as np

from tfad.scoring.acquisition import PatchGate, stopped
from tfad.scoring.metrics import (
    DEFAULT_PIXEL_THRESHOLDS,
    PixelMetricAccumulator,
    UndefinedMetricError,
    auroc,
    confusion_from_rejections,
    f1_max,
)
from tfad.scoring.table import ScoreTable
from tfad.scoring.thresholds import ThresholdTable, patch_decisions, product_verdicts, run_acceptance

__all__ = ["REPORT_FORMAT", "evaluate", "format_summary", "write_report"]

REPORT_FORMAT = "tfad-eval-report/1"
POSITIVE_CLASS = "defective (label 1)"
CONVENTION_NOTE = (
    "Metrics treat defective (label 1) as the positive class. The thesis (003) calls a good product "
    "positive: its 'true positive ratio' is true_accept_rate (good accepted / good) and its 'true negative "
    "ratio' is true_reject_rate (defective rejected / defective). A patch is rejected when score > its "
    "region's threshold; a product is rejected when any of its patches is (product score = max patch "
    "score, 003 Eq. 10.3)."
)
MAX_EXAMPLES = 10
CURVE_POINTS = 200  # points kept per pixel curve in report.json (for plots and audits)


def _metric(fn: Callable[[], float]) -> tuple[float | None, str | None]:
    """Run a metric; ``(None, reason)`` when it is undefined on this data."""
    try:
        return float(fn()), None
    except UndefinedMetricError as exc:
        return None, str(exc)


def _image_metrics(labels: np.ndarray, scores: np.ndarray) -> dict:
    value, reason = _metric(lambda: auroc(labels, scores))
    out: dict = {"n": int(labels.size), "auroc": value, "auroc_undefined_reason": reason}
    try:
        f1, thr = f1_max(labels, scores)
        out["f1_max"] = {"f1": f1, "threshold": thr}
        out["f1_max_undefined_reason"] = None
    except UndefinedMetricError as exc:
        out["f1_max"] = None
        out["f1_max_undefined_reason"] = str(exc)
    return out


def _thin(x: np.ndarray, y: np.ndarray, max_points: int = CURVE_POINTS) -> dict:
    """At most ``max_points`` points of a curve, evenly spaced in index, first and last kept."""
    if x.size > max_points:
        keep = np.unique(np.linspace(0, x.size - 1, max_points).round().astype(np.int64))
        x, y = x[keep], y[keep]
    return {"fpr": [float(v) for v in x], "y": [float(v) for v in y]}


def _pixel_curves(acc: PixelMetricAccumulator, result: dict, fpr_limit: float) -> dict:
    """Thinned pixel ROC and PRO curves (PRO only up to the first point past ``fpr_limit``)."""
    curves: dict = {}
    if result["pixel_auroc"] is not None:
        fpr, tpr, _ = acc.roc_curve()
        curves["roc"] = _thin(fpr, tpr)
    if result["aupro"] is not None:
        fpr, pro, _ = acc.pro_curve()
        last = int(np.searchsorted(fpr, fpr_limit, side="left"))
        curves["pro"] = _thin(fpr[: last + 1], pro[: last + 1])
    return curves


def _pixel_metrics(table: ScoreTable, fpr_limit: float, num_thresholds: int | None) -> dict:
    """Stream heatmaps twice (range, then counts) and compute pixel AUROC and AUPRO."""
    if not table.has_heatmaps:
        return {"available": False, "reason": "the score table has no heatmaps"}
    low, high = math.inf, -math.inf
    for i in range(len(table)):
        hm = table.heatmap(i)
        if hm is None:
            continue
        if not np.isfinite(hm).all():
            raise ValueError(f"heatmap of sample {i} ({table.paths[i]}) contains NaN/inf")
        low, high = min(low, float(hm.min())), max(high, float(hm.max()))
    if not math.isfinite(low):
        return {"available": False, "reason": "no sample has a heatmap"}
    if num_thresholds is None:
        # exact: the grid is every distinct value, which needs all maps at once (small tables only)
        maps = [table.heatmap(i) for i in range(len(table))]
        acc = PixelMetricAccumulator(
            np.unique(np.concatenate([m.ravel() for m in maps if m is not None])), exact=True
        )
    else:
        acc = PixelMetricAccumulator.from_range(low, high, num_thresholds)
    excluded: list[str] = []
    for i in range(len(table)):
        hm = table.heatmap(i)
        if hm is None:
            excluded.append(str(table.paths[i]) or f"#{i}")
            continue
        mask = table.mask(i, shape=hm.shape)
        if mask is None:
            excluded.append(str(table.paths[i]) or f"#{i}")
            continue
        if mask.shape != hm.shape:
            raise ValueError(
                f"sample {i} ({table.paths[i]}): mask shape {mask.shape} differs from heatmap shape "
                f"{hm.shape}"
            )
        acc.update(mask, hm)
    result = acc.result(fpr_limit).as_dict()
    result["curves"] = _pixel_curves(acc, result, fpr_limit)
    result.update(
        available=True,
        map_value_range=[low, high],
        images_excluded=len(excluded),
        images_excluded_reason="defective image without ground-truth mask, or no heatmap",
        images_excluded_examples=excluded[:MAX_EXAMPLES],
    )
    return result


def _confusion_dict(labels: np.ndarray, rejected: np.ndarray, threshold: float | None = None) -> dict:
    return confusion_from_rejections(labels, rejected, threshold).as_dict()


def _defect_type_rates(table: ScoreTable, rejected: np.ndarray) -> dict:
    out = {}
    for name in sorted(set(table.defect_types.tolist())):
        sel = table.defect_types == name
        labels = np.unique(table.labels[sel])
        n = int(sel.sum())
        n_rej = int(rejected[sel].sum())
        entry = {"n": n, "rejected": n_rej, "accepted": n - n_rej, "labels": labels.tolist()}
        if labels.tolist() == [1]:
            entry["true_reject_rate"] = n_rej / n
        elif labels.tolist() == [0]:
            entry["true_accept_rate"] = (n - n_rej) / n
        out[name] = entry
    return out


def _examples(table: ScoreTable, margins: np.ndarray) -> dict:
    """The most informative samples for an auditor, by margin = score - region threshold."""

    def rows(indices: np.ndarray) -> list[dict]:
        out = []
        for i in indices[:MAX_EXAMPLES]:
            row = table.row(int(i))
            row["margin"] = float(margins[i])
            row["rejected"] = bool(margins[i] > 0)
            out.append(row)
        return out

    defect = np.flatnonzero(table.labels == 1)
    good = np.flatnonzero(table.labels == 0)
    return {
        "defective_lowest_margin": rows(defect[np.argsort(margins[defect], kind="stable")]),
        "good_highest_margin": rows(good[np.argsort(-margins[good], kind="stable")]),
    }


def evaluate(
    table: ScoreTable,
    thresholds: ThresholdTable,
    k: int = 7,
    n: int = 10,
    fpr_limit: float = 0.3,
    pixel_thresholds: int | None = DEFAULT_PIXEL_THRESHOLDS,
    gate: PatchGate | None = None,
) -> dict:
    """The report dict (see docs/evaluation.md for every field).

    ``gate`` (the scorer's :class:`PatchGate`) applies the servers' blank-patch and acquisition rules to
    the decisions at the thresholds: a patch that fails it is rejected (REJECT_INCOMPLETE on the line)
    whatever its score. The threshold-free metrics use the scores alone.

    Samples with unknown label (-1) are left out of all metrics and counted. Raises ``ValueError`` when
    a region of the table has no threshold and the table has no default, or when nothing is labelled.
    """
    n_unlabelled = int((table.labels == -1).sum())
    data = table.subset(table.labels != -1) if n_unlabelled else table
    if len(data) == 0:
        raise ValueError("the score table has no labelled sample (label 0 or 1): nothing to evaluate")
    labels = data.labels
    regions = sorted(set(data.regions.tolist()))
    missing = [r for r in regions if r not in thresholds.regions]
    if missing and thresholds.default is None:
        raise ValueError(
            f"regions {missing} have no calibrated threshold and the threshold table has no default; "
            "calibrate on data covering these regions or set a default"
        )
    thr = thresholds.thresholds_for(data.regions)
    gate_reasons = [None] * len(data) if gate is None else gate.table_reasons(data)
    incomplete = stopped(gate_reasons)
    rejected = patch_decisions(data.scores, data.regions, thresholds, incomplete)
    margins = data.scores - thr

    report: dict = {
        "format": REPORT_FORMAT,
        "positive_class": POSITIVE_CLASS,
        "convention": CONVENTION_NOTE,
        "score": {"higher_is_anomalous": True, "decision": "reject when score > threshold of the region"},
        "counts": {
            "images": len(data),
            "good": int((labels == 0).sum()),
            "defective": int((labels == 1).sum()),
            "unlabelled_excluded": n_unlabelled,
            "per_region": {
                r: {
                    "good": int(((data.regions == r) & (labels == 0)).sum()),
                    "defective": int(((data.regions == r) & (labels == 1)).sum()),
                }
                for r in regions
            },
            "per_defect_type": {
                t: int((data.defect_types == t).sum()) for t in sorted(set(data.defect_types))
            },
        },
        "thresholds": thresholds.to_dict(),
        "regions_using_default_threshold": missing,
        # the patches the servers would answer REJECT_INCOMPLETE without scoring (blank, acquisition check)
        "incomplete": {
            "good": int((incomplete & (labels == 0)).sum()),
            "defective": int((incomplete & (labels == 1)).sum()),
            "examples": [
                {"path": str(data.paths[i]), "label": int(labels[i]), "reason": gate_reasons[i]}
                for i in np.flatnonzero(incomplete)[:20]
            ],
        },
    }

    # ---- threshold-free metrics
    image = _image_metrics(labels, data.scores)
    image["per_region"] = {
        r: _image_metrics(labels[data.regions == r], data.scores[data.regions == r]) for r in regions
    }
    report["image_level"] = image
    report["pixel_level"] = _pixel_metrics(data, fpr_limit, pixel_thresholds)

    # ---- decisions at the calibrated thresholds
    patch = _confusion_dict(labels, rejected)
    patch["per_region"] = {
        r: _confusion_dict(
            labels[data.regions == r], rejected[data.regions == r], thresholds.threshold_for(r)
        )
        for r in regions
    }
    patch["per_defect_type"] = _defect_type_rates(data, rejected)
    decisions: dict = {"patch": patch}

    has_products = bool((data.product_ids != "").all())
    # without product ids every image is its own product (MVTec layout): product level = image level
    product_ids = data.product_ids if has_products else data.paths
    keys = list(zip(data.run_ids.tolist(), product_ids.tolist(), strict=True))
    verdicts = product_verdicts(
        data.scores, data.regions, keys, thresholds, labels=labels, incomplete=incomplete
    )
    product = _confusion_dict(verdicts.label, verdicts.rejected)
    product["aggregation"] = "reject if any patch is rejected; product score = max patch score (Eq. 10.3)"
    product["score_auroc"], product["score_auroc_undefined_reason"] = _metric(
        lambda: auroc(verdicts.label, verdicts.score)
    )
    product["margin_auroc"], product["margin_auroc_undefined_reason"] = _metric(
        lambda: auroc(verdicts.label, verdicts.margin)
    )
    run_of_product = np.asarray([key[0] for key in verdicts.keys], dtype=object)
    product["per_run"] = {
        run: _confusion_dict(verdicts.label[run_of_product == run], verdicts.rejected[run_of_product == run])
        for run in sorted(set(run_of_product.tolist()))
    }
    decisions["product"] = product

    if has_products:
        physical = [key[1] for key in verdicts.keys]
        try:
            acceptance = run_acceptance(physical, verdicts.rejected, verdicts.label, k=k, n=n).as_dict()
        except ValueError as exc:  # e.g. a product labelled good in one run and defective in another
            acceptance = {"k": k, "n": n, "summary": None, "products": [], "undefined_reason": str(exc)}
    else:
        acceptance = {
            "k": k,
            "n": n,
            "summary": None,
            "products": [],
            "undefined_reason": "the score table has no product ids (product_id empty)",
        }
    decisions["run_acceptance"] = acceptance
    report["at_thresholds"] = decisions
    report["examples"] = _examples(data, margins)
    return report


# --------------------------------------------------------------------------------------------------
# text summary


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _decision_line(name: str, conf: dict) -> str:
    return (
        f"{name:<22} acc {_fmt(conf['accuracy'])}  TAR {_fmt(conf['true_accept_rate'])}  "
        f"TRR {_fmt(conf['true_reject_rate'])}  (good {conf['n_good']}, defective {conf['n_defective']}; "
        f"false rejects {conf['false_reject']}, false accepts {conf['false_accept']})"
    )


def format_summary(report: dict) -> str:
    """A short human-readable summary of a report dict (what ``tfad eval`` prints)."""
    counts = report["counts"]
    image = report["image_level"]
    pixel = report["pixel_level"]
    th = report["thresholds"]
    lines = [
        "tfad evaluation",
        f"positive class: {report['positive_class']}; TAR = good accepted / good, "
        "TRR = defective rejected / defective",
        f"images: {counts['images']} (good {counts['good']}, defective {counts['defective']}, "
        f"unlabelled excluded {counts['unlabelled_excluded']})",
        f"image AUROC {_fmt(image['auroc'])}"
        + (
            f"   F1-max {_fmt(image['f1_max']['f1'])} at score > {image['f1_max']['threshold']:.6g}"
            if image["f1_max"]
            else ""
        ),
    ]
    if pixel.get("available"):
        lines.append(
            f"pixel AUROC {_fmt(pixel['pixel_auroc'])} "
            f"(+/- {_fmt(pixel['pixel_auroc_max_abs_error'], 5)})   "
            f"AUPRO@{pixel['fpr_limit']:g} {_fmt(pixel['aupro'])} "
            f"(+/- {_fmt(pixel['aupro_max_abs_error'], 5)})"
            f"   [{pixel['n_images']} maps, {pixel['images_excluded']} excluded]"
        )
    else:
        lines.append(f"pixel metrics: not computed ({pixel.get('reason')})")
    region_thr = ", ".join(f"{r} {v:.6g}" for r, v in th["regions"].items())
    default = "none" if th["default"] is None else f"{th['default']:.6g}"
    policy = th["policy"]
    if th.get("false_reject_budget") is not None:
        policy += f" {th['false_reject_budget']:g}"
    if th.get("n_sigma_k") is not None:
        policy += f" k={th['n_sigma_k']:g}"
    lines.append(f"thresholds ({policy}): {region_thr}; default {default}")
    for region, stats in th.get("per_region", {}).items():
        if stats["fallback"]:
            lines.append(f"  WARNING region {region}: calibration fallback - {stats['rule']}")
    if report.get("regions_using_default_threshold"):
        lines.append(
            f"  regions using the default threshold: {', '.join(report['regions_using_default_threshold'])}"
        )
    incomplete = report.get("incomplete") or {}
    if incomplete.get("good") or incomplete.get("defective"):
        lines.append(
            f"  not scored on the line (blank or failing the acquisition check; rejected): "
            f"{incomplete['good']} good, {incomplete['defective']} defective"
        )
    dec = report["at_thresholds"]
    lines.append(_decision_line("patches", dec["patch"]))
    for region, conf in dec["patch"]["per_region"].items():
        lines.append(_decision_line(f"  region {region}", conf))
    lines.append(_decision_line("products (Eq. 10.3)", dec["product"]))
    acc = dec["run_acceptance"]
    if acc.get("summary"):
        s = acc["summary"]
        lines.append(
            f"run acceptance {acc['k']}-of-{acc['n']}: "
            f"{s['correctly_classified']}/{s['n_products']} products "
            f"correct (acc {_fmt(s['accuracy'])}, TAR {_fmt(s['true_accept_rate'])}, "
            f"TRR {_fmt(s['true_reject_rate'])}, undecided {s['undecided']}, "
            f"k scaled for {s['products_with_scaled_k']})"
        )
    else:
        lines.append(f"run acceptance: not computed ({acc.get('undefined_reason')})")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# writing


def _json_default(obj: object) -> object:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_report(
    score_table: ScoreTable,
    thresholds: ThresholdTable,
    out_dir: str,
    k: int = 7,
    n: int = 10,
    fpr_limit: float = 0.3,
    pixel_thresholds: int | None = DEFAULT_PIXEL_THRESHOLDS,
    plots: bool = True,
    gate: PatchGate | None = None,
) -> dict:
    """Evaluate and write ``out_dir/report.json``, ``out_dir/summary.txt`` and ``out_dir/plots/*.png``.

    Returns the report dict (with ``"files"``: the written paths relative to ``out_dir``).
    """
    report = evaluate(
        score_table, thresholds, k=k, n=n, fpr_limit=fpr_limit, pixel_thresholds=pixel_thresholds, gate=gate
    )
    os.makedirs(out_dir, exist_ok=True)
    files = ["report.json", "summary.txt"]
    if plots:
        from tfad.evaluation.plots import write_plots  # matplotlib only when plotting

        labelled = score_table.subset(score_table.labels != -1)
        written = write_plots(labelled, thresholds, os.path.join(out_dir, "plots"), report)
        files += [os.path.join("plots", os.path.basename(p)) for p in written]
    report["files"] = files
    with open(os.path.join(out_dir, "report.json"), "w") as fh:
        json.dump(report, fh, indent=2, default=_json_default, allow_nan=False)
        fh.write("\n")
    with open(os.path.join(out_dir, "summary.txt"), "w") as fh:
        fh.write(format_summary(report))
    return report
