"""Detection and localisation metrics (numpy only).

Conventions (docs/architecture.md, docs/evaluation.md):

* labels: ``0`` = good, ``1`` = defective; **defective is the positive class**;
* scores: higher = more anomalous;
* a sample is *rejected* (predicted defective) when ``score > threshold``.

Metrics that are undefined for the given input (e.g. AUROC with a single class) raise
:class:`UndefinedMetricError`, a :class:`ValueError` subclass, so callers that want a ``null`` in a
report can catch exactly that and record its message as the reason.

Pixel metrics are memory-aware: :class:`PixelMetricAccumulator` consumes one ``[H, W]`` (mask, map)
pair at a time and keeps only ``O(num_thresholds + connected components)`` numbers, so heatmaps can be
streamed from disk. With a threshold grid (the default) pixel AUROC and AUPRO are approximations whose
worst-case absolute error is computed exactly from the accumulated counts and returned alongside the value
(see :class:`PixelMetrics`). With ``num_thresholds=None`` the grid is every distinct map value and the
results are exact (this needs all pixels in memory at once).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
from skimage.measure import label as label_components

__all__ = [
    "UndefinedMetricError",
    "Confusion",
    "PixelMetrics",
    "PixelMetricAccumulator",
    "auroc",
    "aupro",
    "candidate_thresholds",
    "confusion_at",
    "f1_max",
    "image_auroc",
    "pixel_auroc",
    "pixel_metrics",
    "roc_curve",
    "trapezoid_up_to",
]

# Grid size used for streamed pixel metrics when the caller gives none. With maps in [0, 1] this is a
# bin width of 5e-5; the reported error bound says how much that costs on the data at hand.
DEFAULT_PIXEL_THRESHOLDS = 20_000


class UndefinedMetricError(ValueError):
    """The metric is mathematically undefined for this input (e.g. only one class present)."""


# --------------------------------------------------------------------------------------------------
# input validation


def _as_labels_scores(
    labels: Iterable, scores: Iterable, what: str = "scores"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert a (labels, scores) pair to 1-D int64 / float64 arrays."""
    labels_arr = np.asarray(labels)
    scores_arr = np.asarray(scores, dtype=np.float64)
    if labels_arr.ndim != 1 or scores_arr.ndim != 1:
        raise ValueError(
            f"labels and {what} must be 1-D, got shapes {labels_arr.shape} and {scores_arr.shape}"
        )
    if labels_arr.shape != scores_arr.shape:
        raise ValueError(
            f"labels and {what} must have the same length, got {labels_arr.shape[0]} and "
            f"{scores_arr.shape[0]}"
        )
    if labels_arr.size and not np.isin(labels_arr, (0, 1)).all():
        bad = np.unique(labels_arr[~np.isin(labels_arr, (0, 1))])[:5]
        raise ValueError(f"labels must be 0 (good) or 1 (defective), found {bad.tolist()}")
    if not np.isfinite(scores_arr).all():
        n_bad = int((~np.isfinite(scores_arr)).sum())
        raise ValueError(f"{what} contain {n_bad} NaN/inf value(s); every sample needs a finite score")
    return labels_arr.astype(np.int64), scores_arr


def _require_both_classes(labels: np.ndarray, metric: str) -> tuple[int, int]:
    n_pos = int(labels.sum())
    n_neg = int(labels.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise UndefinedMetricError(
            f"{metric} is undefined: needs both good and defective samples, got {n_neg} good and "
            f"{n_pos} defective"
        )
    return n_pos, n_neg


# --------------------------------------------------------------------------------------------------
# ROC / AUROC


def roc_curve(labels: Iterable, scores: Iterable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve with defective (label 1) as the positive class.

    Returns ``(fpr, tpr, thresholds)``, one point per distinct score plus the origin. Point ``i`` is the
    operating point "predict defective when ``score >= thresholds[i]``" (``thresholds[0] = +inf``, the
    origin); tied scores form a single point, so the curve is correct with ties. In the package's
    ``score > threshold`` rejection rule this is any threshold in ``[next lower score, thresholds[i])``.

    Raises:
        UndefinedMetricError: only one class present.
        ValueError: shape mismatch, labels not in {0, 1}, non-finite scores.
    """
    labels_arr, scores_arr = _as_labels_scores(labels, scores)
    n_pos, n_neg = _require_both_classes(labels_arr, "ROC")
    order = np.argsort(-scores_arr, kind="mergesort")
    sorted_scores = scores_arr[order]
    sorted_labels = labels_arr[order]
    # last index of each group of equal scores
    group_ends = np.flatnonzero(np.diff(sorted_scores) != 0)
    group_ends = np.append(group_ends, sorted_scores.size - 1)
    true_pos = np.cumsum(sorted_labels)[group_ends]
    false_pos = (group_ends + 1) - true_pos
    fpr = np.concatenate([[0.0], false_pos / n_neg])
    tpr = np.concatenate([[0.0], true_pos / n_pos])
    thresholds = np.concatenate([[np.inf], sorted_scores[group_ends]])
    return fpr, tpr, thresholds


def auroc(labels: Iterable, scores: Iterable) -> float:
    """Area under the ROC curve = P(score_defect > score_good) + 0.5 * P(score_defect == score_good).

    Exact (trapezoid over the tie-aware ROC curve, equivalent to the Mann-Whitney U statistic with tied
    pairs counted 1/2). Raises :class:`UndefinedMetricError` when only one class is present.
    """
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def image_auroc(labels: Iterable, scores: Iterable) -> float:
    """Image-level AUROC: one score per image (e.g. max of the heatmap or the model's score output)."""
    return auroc(labels, scores)


# --------------------------------------------------------------------------------------------------
# thresholds, confusion, F1


def candidate_thresholds(scores: Iterable) -> np.ndarray:
    """Every distinct operating point of the rule ``reject when score > t``, ascending.

    One threshold per distinct partition of the scores: halfway between adjacent distinct scores, the
    highest score (rejects nothing) and, below the lowest score, the lowest score minus half the smallest
    adjacent gap (rejects everything; minus ``max(1e-6, 1e-6 * |score|)`` when all scores are equal).
    The halfway rule makes calibrated thresholds deterministic and independent of tie order.
    """
    values = np.unique(np.asarray(scores, dtype=np.float64))
    if values.size == 0:
        raise ValueError("cannot derive thresholds from an empty score list")
    if not np.isfinite(values).all():
        raise ValueError("scores contain NaN/inf; every sample needs a finite score")
    if values.size == 1:
        below = values[0] - max(1e-6, 1e-6 * abs(values[0]))
    else:
        below = values[0] - 0.5 * float(np.min(np.diff(values)))
    midpoints = (values[:-1] + values[1:]) / 2.0
    return np.concatenate([[below], midpoints, [values[-1]]])


@dataclass(frozen=True)
class Confusion:
    """Counts and rates at one threshold. "Rejected" = predicted defective (``score > threshold``).

    ``true_reject`` = defective rejected (TP with defective positive), ``false_accept`` = defective
    accepted (FN), ``true_accept`` = good accepted (TN), ``false_reject`` = good rejected (FP).
    Rates whose denominator is zero are ``None``.
    """

    threshold: float | None
    n_good: int
    n_defective: int
    true_accept: int
    false_reject: int
    true_reject: int
    false_accept: int
    accuracy: float | None
    true_accept_rate: float | None
    true_reject_rate: float | None
    false_reject_rate: float | None
    false_accept_rate: float | None
    balanced_accuracy: float | None
    precision: float | None
    f1: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def confusion_from_counts(
    n_good: int, n_defective: int, false_reject: int, true_reject: int, threshold: float | None
) -> Confusion:
    """Build a :class:`Confusion` from the two class sizes and the rejected counts per class."""
    true_accept = n_good - false_reject
    false_accept = n_defective - true_reject
    tar = _ratio(true_accept, n_good)
    trr = _ratio(true_reject, n_defective)
    rates = [r for r in (tar, trr) if r is not None]
    precision = _ratio(true_reject, true_reject + false_reject)
    f1 = None
    if n_defective > 0:
        den = 2 * true_reject + false_reject + false_accept
        f1 = 0.0 if den == 0 else 2 * true_reject / den
    return Confusion(
        threshold=None if threshold is None else float(threshold),
        n_good=int(n_good),
        n_defective=int(n_defective),
        true_accept=int(true_accept),
        false_reject=int(false_reject),
        true_reject=int(true_reject),
        false_accept=int(false_accept),
        accuracy=_ratio(true_accept + true_reject, n_good + n_defective),
        true_accept_rate=tar,
        true_reject_rate=trr,
        false_reject_rate=None if tar is None else 1.0 - tar,
        false_accept_rate=None if trr is None else 1.0 - trr,
        # with one class present this is that class's rate (documented in docs/evaluation.md)
        balanced_accuracy=(sum(rates) / len(rates)) if rates else None,
        precision=precision,
        f1=f1,
    )


def confusion_from_rejections(
    labels: Iterable, rejected: Iterable, threshold: float | None = None
) -> Confusion:
    """:class:`Confusion` from labels and boolean reject decisions (e.g. per-region or product verdicts)."""
    labels_arr = np.asarray(labels)
    rejected_arr = np.asarray(rejected, dtype=bool)
    if labels_arr.shape != rejected_arr.shape or labels_arr.ndim != 1:
        raise ValueError(
            f"labels and rejected must be 1-D of equal length, got {labels_arr.shape} and "
            f"{rejected_arr.shape}"
        )
    if labels_arr.size and not np.isin(labels_arr, (0, 1)).all():
        raise ValueError("labels must be 0 (good) or 1 (defective)")
    defective = labels_arr == 1
    return confusion_from_counts(
        n_good=int((~defective).sum()),
        n_defective=int(defective.sum()),
        false_reject=int((rejected_arr & ~defective).sum()),
        true_reject=int((rejected_arr & defective).sum()),
        threshold=threshold,
    )


def confusion_at(labels: Iterable, scores: Iterable, threshold: float) -> Confusion:
    """Confusion counts and rates for the rule "reject when ``score > threshold``"."""
    if threshold is None or not math.isfinite(float(threshold)):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    labels_arr, scores_arr = _as_labels_scores(labels, scores)
    return confusion_from_rejections(labels_arr, scores_arr > float(threshold), threshold=float(threshold))


def rejection_counts(
    labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each threshold: (goods rejected, defectives rejected) under ``score > threshold``. O(n log n)."""
    good = np.sort(scores[labels == 0])
    defect = np.sort(scores[labels == 1])
    good_rejected = good.size - np.searchsorted(good, thresholds, side="right")
    defect_rejected = defect.size - np.searchsorted(defect, thresholds, side="right")
    return good_rejected, defect_rejected


def f1_max(labels: Iterable, scores: Iterable) -> tuple[float, float]:
    """Best F1 (defective positive) over all thresholds; returns ``(f1, threshold)``.

    The threshold follows the package rule (reject when ``score > threshold``) and the halfway convention
    of :func:`candidate_thresholds`. Ties in F1 go to the lowest threshold (rejects more). Raises
    :class:`UndefinedMetricError` when there is no defective sample (F1 is undefined).
    """
    labels_arr, scores_arr = _as_labels_scores(labels, scores)
    n_defect = int(labels_arr.sum())
    if n_defect == 0:
        raise UndefinedMetricError("F1 is undefined without defective samples")
    thresholds = candidate_thresholds(scores_arr)
    good_rej, defect_rej = rejection_counts(labels_arr, scores_arr, thresholds)
    # F1 = 2TP / (2TP + FP + FN); the denominator is >= n_defect > 0
    f1 = 2.0 * defect_rej / (2.0 * defect_rej + good_rej + (n_defect - defect_rej))
    best = int(np.argmax(f1))  # first maximum = lowest threshold
    return float(f1[best]), float(thresholds[best])


# --------------------------------------------------------------------------------------------------
# curve integration


def trapezoid_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under the polyline (x, y) for ``x <= x_max``; x must be non-decreasing.

    A segment crossing ``x_max`` is cut with linear interpolation. Repeated x values (vertical steps)
    contribute no area, so the result does not depend on how ties are ordered.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got {x.shape} and {y.shape}")
    if np.any(np.diff(x) < 0):
        raise ValueError("x must be non-decreasing")
    x0, x1, y0, y1 = x[:-1], x[1:], y[:-1], y[1:]
    full = x1 <= x_max
    area = float(np.sum((x1[full] - x0[full]) * (y0[full] + y1[full]) / 2.0))
    crossing = np.flatnonzero((x0 < x_max) & (x1 > x_max))
    if crossing.size:
        i = int(crossing[0])
        y_cut = y0[i] + (y1[i] - y0[i]) * (x_max - x0[i]) / (x1[i] - x0[i])
        area += float((x_max - x0[i]) * (y0[i] + y_cut) / 2.0)
    return area


# --------------------------------------------------------------------------------------------------
# pixel metrics


@dataclass(frozen=True)
class PixelMetrics:
    """Pixel-level results. ``*_max_abs_error`` are worst-case bounds of the grid approximation
    (0.0 when the grid holds every distinct map value, i.e. the values are exact).
    ``None`` values come with the reason in ``*_undefined_reason``."""

    pixel_auroc: float | None
    pixel_auroc_max_abs_error: float | None
    pixel_auroc_undefined_reason: str | None
    aupro: float | None
    aupro_max_abs_error: float | None
    aupro_undefined_reason: str | None
    fpr_limit: float
    num_thresholds: int
    exact: bool
    n_images: int
    n_defect_pixels: int
    n_good_pixels: int
    n_components: int

    def as_dict(self) -> dict:
        return asdict(self)


class PixelMetricAccumulator:
    """Streaming pixel AUROC and AUPRO over a fixed ascending threshold grid.

    Feed one image at a time with :meth:`update`; memory is ``O(len(thresholds))`` regardless of the
    number of images. A pixel counts as "detected" at threshold ``t_j`` when ``value >= t_j``; values
    below the lowest threshold are never detected, so make the grid span the map values
    (:meth:`from_range`).

    AUPRO follows MVTec AD (Bergmann et al., 2021): ground-truth regions are the 8-connected components
    of each image's mask; the per-region overlap PRO(t) is averaged over all components of all images and
    plotted against the false-positive rate on all good (mask == 0) pixels; the curve (starting at (0, 0)
    and ending at (1, 1)) is integrated up to ``fpr_limit`` and divided by ``fpr_limit``.
    """

    def __init__(self, thresholds: np.ndarray, exact: bool = False):
        grid = np.asarray(thresholds, dtype=np.float64)
        if grid.ndim != 1 or grid.size == 0:
            raise ValueError("thresholds must be a non-empty 1-D array")
        if np.any(np.diff(grid) <= 0) or not np.isfinite(grid).all():
            raise ValueError("thresholds must be finite and strictly increasing")
        self.thresholds = grid
        self.exact = exact
        # index 0: below the grid; index j + 1: in [t_j, t_{j+1})
        self._good_hist = np.zeros(grid.size + 1, dtype=np.int64)
        self._defect_hist = np.zeros(grid.size + 1, dtype=np.int64)
        self._overlap_sum = np.zeros(grid.size, dtype=np.float64)  # sum over components of overlap(t_j)
        self.n_components = 0
        self.n_images = 0

    @classmethod
    def from_range(cls, low: float, high: float, num_thresholds: int = DEFAULT_PIXEL_THRESHOLDS):
        """Evenly spaced grid from ``low`` (minimum map value) to ``high`` (maximum map value)."""
        if not (math.isfinite(low) and math.isfinite(high)) or high < low:
            raise ValueError(f"invalid map value range [{low}, {high}]")
        if num_thresholds < 2:
            raise ValueError(f"num_thresholds must be >= 2, got {num_thresholds}")
        if high == low:
            return cls(np.array([low]), exact=True)
        return cls(np.linspace(low, high, int(num_thresholds)))

    def update(self, mask: np.ndarray, anomaly_map: np.ndarray) -> None:
        """Add one image: ``mask`` [H, W] (non-zero = defect pixel), ``anomaly_map`` [H, W]."""
        mask = np.asarray(mask)
        anomaly_map = np.asarray(anomaly_map, dtype=np.float64)
        if mask.ndim != 2 or mask.shape != anomaly_map.shape:
            raise ValueError(
                f"mask and map must both be [H, W] with equal shapes, got {mask.shape} and "
                f"{anomaly_map.shape}"
            )
        if not np.isfinite(anomaly_map).all():
            raise ValueError(f"anomaly map (image {self.n_images}) contains NaN/inf values")
        defect = mask != 0
        bins = np.searchsorted(self.thresholds, anomaly_map, side="right")  # 0 .. T
        size = self.thresholds.size + 1
        self._good_hist += np.bincount(bins[~defect], minlength=size)
        self._defect_hist += np.bincount(bins[defect], minlength=size)
        if defect.any():
            components = label_components(defect, connectivity=2)
            n_comp = int(components.max())
            comp_ids = components[defect] - 1
            comp_bins = bins[defect]
            # per-component histograms over the threshold bins, a bounded number of components at a time
            # so a noisy mask with thousands of specks cannot allocate components x grid at once
            chunk = max(1, 4_000_000 // size)
            for first in range(0, n_comp, chunk):
                n_here = min(chunk, n_comp - first)
                sel = (comp_ids >= first) & (comp_ids < first + n_here)
                flat = (comp_ids[sel] - first) * size + comp_bins[sel]
                hist = np.bincount(flat, minlength=n_here * size).reshape(n_here, size)
                detected = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]  # pixels >= t_j
                self._overlap_sum += (detected / hist.sum(axis=1, keepdims=True)).sum(axis=0)
            self.n_components += n_comp
        self.n_images += 1

    # ---- results

    def _rates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Counts of good / defect pixels >= t_j, and mean PRO at t_j."""
        good_ge = np.cumsum(self._good_hist[::-1])[::-1][1:]
        defect_ge = np.cumsum(self._defect_hist[::-1])[::-1][1:]
        pro = self._overlap_sum / max(self.n_components, 1)
        return good_ge, defect_ge, pro

    def pixel_auroc(self) -> tuple[float, float]:
        """``(auroc, max_abs_error)`` from the binned counts.

        Pairs in different bins are ordered correctly; pairs in the same bin are counted 1/2 (exact for
        true ties). The error is therefore at most ``0.5 * sum_b pos_b * neg_b / (P * N)``, reported as
        0.0 when the grid is exact (one bin per distinct value).
        """
        n_pos = int(self._defect_hist.sum())
        n_neg = int(self._good_hist.sum())
        if n_pos == 0 or n_neg == 0:
            raise UndefinedMetricError(
                f"pixel AUROC is undefined: {n_pos} defect pixels and {n_neg} good pixels"
            )
        pos = self._defect_hist.astype(np.float64)
        neg = self._good_hist.astype(np.float64)
        neg_below = np.cumsum(neg) - neg
        same_bin = float(np.sum(pos * neg))
        value = (float(np.sum(pos * neg_below)) + 0.5 * same_bin) / (n_pos * n_neg)
        error = 0.0 if self.exact else 0.5 * same_bin / (n_pos * n_neg)
        return value, error

    def roc_curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixel ``(fpr, tpr, thresholds)`` at the grid thresholds (``>= t``), from (0, 0) to (1, 1)."""
        good_ge, defect_ge, _ = self._rates()
        n_neg = max(int(self._good_hist.sum()), 1)
        n_pos = max(int(self._defect_hist.sum()), 1)
        fpr = np.concatenate([[0.0], good_ge[::-1] / n_neg, [1.0]])
        tpr = np.concatenate([[0.0], defect_ge[::-1] / n_pos, [1.0]])
        thr = np.concatenate([[np.inf], self.thresholds[::-1], [-np.inf]])
        return fpr, tpr, thr

    def pro_curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(fpr, pro, thresholds)`` with fpr ascending, from (0, 0) (threshold +inf) to (1, 1) (-inf)."""
        good_ge, _, pro = self._rates()
        n_neg = int(self._good_hist.sum())
        fpr = good_ge / n_neg
        # thresholds ascending -> fpr descending; reverse, then add the two end points
        fpr = np.concatenate([[0.0], fpr[::-1], [1.0]])
        pro = np.concatenate([[0.0], pro[::-1], [1.0]])
        thr = np.concatenate([[np.inf], self.thresholds[::-1], [-np.inf]])
        return fpr, pro, thr

    def aupro(self, fpr_limit: float = 0.3) -> tuple[float, float]:
        """``(aupro, max_abs_error)``: normalised area under PRO(FPR) for FPR in [0, fpr_limit].

        Between two grid points both FPR and PRO are monotone, so the exact curve lies in the box spanned
        by them and the trapezoid is off by at most half the box area; the bound sums those halves
        (clipped at ``fpr_limit``), divided by ``fpr_limit``. 0.0 when the grid is exact.
        """
        if not 0.0 < fpr_limit <= 1.0:
            raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
        if self.n_components == 0:
            raise UndefinedMetricError("AUPRO is undefined: no defect region in any mask")
        if int(self._good_hist.sum()) == 0:
            raise UndefinedMetricError("AUPRO is undefined: no good pixel (FPR has no denominator)")
        fpr, pro, _ = self.pro_curve()
        value = float(trapezoid_up_to(fpr, pro, fpr_limit) / fpr_limit)
        if self.exact:
            return value, 0.0
        x0 = np.minimum(fpr[:-1], fpr_limit)
        x1 = np.minimum(fpr[1:], fpr_limit)
        error = float(np.sum((x1 - x0) * (pro[1:] - pro[:-1])) / 2.0) / fpr_limit
        return value, error

    def result(self, fpr_limit: float = 0.3) -> PixelMetrics:
        """Both pixel metrics, with ``None`` + reason for the undefined ones."""
        try:
            auc, auc_err = self.pixel_auroc()
            auc_reason = None
        except UndefinedMetricError as exc:
            auc, auc_err, auc_reason = None, None, str(exc)
        try:
            pro, pro_err = self.aupro(fpr_limit)
            pro_reason = None
        except UndefinedMetricError as exc:
            pro, pro_err, pro_reason = None, None, str(exc)
        return PixelMetrics(
            pixel_auroc=auc,
            pixel_auroc_max_abs_error=auc_err,
            pixel_auroc_undefined_reason=auc_reason,
            aupro=pro,
            aupro_max_abs_error=pro_err,
            aupro_undefined_reason=pro_reason,
            fpr_limit=float(fpr_limit),
            num_thresholds=int(self.thresholds.size),
            exact=self.exact,
            n_images=self.n_images,
            n_defect_pixels=int(self._defect_hist.sum()),
            n_good_pixels=int(self._good_hist.sum()),
            n_components=self.n_components,
        )


def _check_masks_maps(masks: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    masks = np.asarray(masks)
    maps = np.asarray(maps)
    if masks.ndim == 2 and maps.ndim == 2:  # a single image
        masks, maps = masks[None], maps[None]
    if masks.ndim != 3 or masks.shape != maps.shape:
        raise ValueError(
            f"masks and maps must both be [N, H, W] (or [H, W]) with equal shapes, got {masks.shape} and "
            f"{maps.shape}"
        )
    return masks, maps


def pixel_metrics(
    masks: np.ndarray,
    maps: np.ndarray,
    fpr_limit: float = 0.3,
    num_thresholds: int | None = DEFAULT_PIXEL_THRESHOLDS,
) -> PixelMetrics:
    """Pixel AUROC and AUPRO of ``maps`` [N, H, W] against ``masks`` [N, H, W] (non-zero = defect).

    ``num_thresholds=None``: exact (the grid is every distinct map value; ``np.unique`` over all pixels
    needs about 16 bytes per pixel). Otherwise an even grid of ``num_thresholds`` values over
    [min, max] of the maps, processed one image at a time (memory independent of N; ``maps`` may be a
    ``np.memmap``), with the error bounds reported in the result.
    """
    masks, maps = _check_masks_maps(masks, maps)
    if masks.shape[0] == 0:
        raise ValueError("no images given")
    if num_thresholds is None:
        values = np.unique(np.asarray(maps, dtype=np.float64))
        if not np.isfinite(values).all():
            raise ValueError("maps contain NaN/inf values")
        acc = PixelMetricAccumulator(values, exact=True)
    else:
        low, high = math.inf, -math.inf
        for m in maps:  # per image, so a memmap is never loaded whole
            low, high = min(low, float(np.min(m))), max(high, float(np.max(m)))
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError("maps contain NaN/inf values")
        acc = PixelMetricAccumulator.from_range(low, high, num_thresholds)
    for mask, anomaly_map in zip(masks, maps, strict=True):
        acc.update(mask, anomaly_map)
    return acc.result(fpr_limit)


def pixel_auroc(
    masks: np.ndarray, maps: np.ndarray, num_thresholds: int | None = DEFAULT_PIXEL_THRESHOLDS
) -> float:
    """Pixel AUROC (defect pixels positive). See :func:`pixel_metrics` for exactness and memory.

    Raises :class:`UndefinedMetricError` when there are no defect pixels or no good pixels.
    """
    result = pixel_metrics(masks, maps, num_thresholds=num_thresholds)
    if result.pixel_auroc is None:
        raise UndefinedMetricError(result.pixel_auroc_undefined_reason)
    return result.pixel_auroc


def aupro(
    masks: np.ndarray,
    maps: np.ndarray,
    fpr_limit: float = 0.3,
    num_thresholds: int | None = DEFAULT_PIXEL_THRESHOLDS,
) -> float:
    """Normalised area under the per-region-overlap curve up to ``fpr_limit`` (MVTec AD definition).

    See :class:`PixelMetricAccumulator` for the definition and :func:`pixel_metrics` for exactness.
    Raises :class:`UndefinedMetricError` when no mask has a defect region or there is no good pixel.
    """
    result = pixel_metrics(masks, maps, fpr_limit=fpr_limit, num_thresholds=num_thresholds)
    if result.aupro is None:
        raise UndefinedMetricError(result.aupro_undefined_reason)
    return result.aupro
