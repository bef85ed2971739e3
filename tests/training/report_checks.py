"""Check a ``tfad eval`` report against the scores and heatmaps it was computed from.

The metrics of a briefly trained model on a small test split are not predictable (any value in [0, 1] is
possible), but they are determined by the scores, heatmaps and masks ``tfad eval`` saves beside the report
(scores.csv, heatmaps.npy, masks.npy). :func:`check_report_metrics` recomputes image AUROC, pixel AUROC and
AUPRO from those with independent implementations (rank statistics, scipy's connected components) and
checks the reported values: exact for the image AUROC, within the reported grid-error bound for the pixel
metrics. That bound is loose for maps with many tied values (a blob contrast map is mostly 0), so the pixel
metrics are also recomputed on the report's own threshold grid from the saved maps and masks, which must
give the reported values exactly. A report that e.g. swapped the classes, paired heatmaps with the wrong
masks, or left images out fails this, where ``auroc is not None`` or ``0 <= auroc <= 1`` accepts anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.stats import rankdata

from tfad.scoring.metrics import PixelMetricAccumulator
from tfad.scoring.table import ScoreTable


def rank_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUROC as the Mann-Whitney statistic (defective = 1 positive; tied pairs count 1/2)."""
    labels = np.asarray(labels).ravel()
    ranks = rankdata(np.asarray(scores, dtype=np.float64).ravel())  # average ranks: ties count 1/2
    positive = labels == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def exact_aupro(masks: list[np.ndarray], maps: list[np.ndarray], fpr_limit: float = 0.3) -> float:
    """Normalised area under PRO(FPR) up to ``fpr_limit`` (MVTec AD): every distinct map value is a
    threshold (detected: value >= t), regions are 8-connected mask components, PRO is their mean overlap,
    FPR the fraction of good pixels detected; the curve runs from (0, 0) to (1, 1)."""
    values, good, weight = [], [], []
    n_regions = 0
    for mask, heatmap in zip(masks, maps, strict=True):
        regions, count = ndimage.label(mask, structure=np.ones((3, 3), int))
        regions = regions.ravel()
        sizes = np.bincount(regions, minlength=count + 1).astype(np.float64)
        # each defect pixel adds 1/|its region| to its region's overlap once detected
        weight.append(np.where(regions > 0, 1.0 / sizes[regions], 0.0))
        values.append(np.asarray(heatmap, np.float64).ravel())
        good.append(regions == 0)
        n_regions += count
    v, g, w = np.concatenate(values), np.concatenate(good), np.concatenate(weight) / n_regions
    order = np.argsort(-v, kind="stable")
    v, g, w = v[order], g[order], w[order]
    ends = np.append(np.flatnonzero(np.diff(v) != 0), v.size - 1)  # one point per distinct value
    fpr = np.concatenate([[0.0], np.cumsum(g)[ends] / g.sum(), [1.0]])
    pro = np.concatenate([[0.0], np.cumsum(w)[ends], [1.0]])
    cut = int(np.argmax(fpr > fpr_limit))  # first point past the limit (the last one, fpr = 1, is)
    share = (fpr_limit - fpr[cut - 1]) / (fpr[cut] - fpr[cut - 1])
    xs = np.append(fpr[:cut], fpr_limit)
    ys = np.append(pro[:cut], pro[cut - 1] + share * (pro[cut] - pro[cut - 1]))
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2) / fpr_limit)


def check_report_metrics(out_dir: Path, pixel_level: bool = True) -> dict:
    """Assert that ``out_dir/report.json``'s image AUROC (and with ``pixel_level`` its pixel AUROC, AUPRO
    and defect-pixel count) are those of the saved scores, heatmaps and masks; the recomputed values."""
    report = json.loads((out_dir / "report.json").read_text())
    table = ScoreTable.load(str(out_dir), mmap=False)
    labelled = table.labels != -1
    labels, scores = table.labels[labelled], table.scores[labelled]
    image_auroc = rank_auroc(labels, scores)
    reported = report["image_level"]["auroc"]
    assert reported is not None and abs(reported - image_auroc) < 1e-9, (reported, image_auroc)
    out = {"image_auroc": image_auroc, "labels": labels, "scores": scores}
    if not pixel_level:
        return out
    masks, maps = [], []
    for i in np.flatnonzero(labelled):
        heatmap = table.heatmap(int(i))
        mask = table.mask(int(i), shape=heatmap.shape)
        if mask is not None:  # a defective image without a ground-truth mask is left out, as in the report
            masks.append(mask)
            maps.append(heatmap)
    pixels = np.concatenate([m.ravel() for m in masks]).astype(int)
    pixel_auroc = rank_auroc(pixels, np.concatenate([h.ravel() for h in maps]))
    aupro = exact_aupro(masks, maps, report["pixel_level"]["fpr_limit"])
    pixel = report["pixel_level"]
    assert pixel["available"] and pixel["n_defect_pixels"] == int(pixels.sum()) > 0, pixel
    assert pixel["n_images"] == len(masks), (pixel["n_images"], len(masks))
    # The report's grid approximation is within its own error bound of the exact values.
    assert abs(pixel["pixel_auroc"] - pixel_auroc) <= pixel["pixel_auroc_max_abs_error"] + 1e-9, (
        pixel["pixel_auroc"],
        pixel_auroc,
        pixel["pixel_auroc_max_abs_error"],
    )
    assert abs(pixel["aupro"] - aupro) <= pixel["aupro_max_abs_error"] + 1e-6, (
        pixel["aupro"],
        aupro,
        pixel["aupro_max_abs_error"],
    )
    # The same grid as the report's, on the saved maps and masks: the reported values, to rounding.
    grid = PixelMetricAccumulator.from_range(*pixel["map_value_range"], pixel["num_thresholds"])
    for mask, heatmap in zip(masks, maps, strict=True):
        grid.update(mask, heatmap)
    again = grid.result(pixel["fpr_limit"])
    assert abs(again.pixel_auroc - pixel["pixel_auroc"]) < 1e-9, (again.pixel_auroc, pixel["pixel_auroc"])
    assert abs(again.aupro - pixel["aupro"]) < 1e-9, (again.aupro, pixel["aupro"])
    out.update(pixel_auroc=pixel_auroc, aupro=aupro, masks=masks, maps=maps)
    return out
