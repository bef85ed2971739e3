"""Metrics against hand-computed values and brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import label as label_components

from tfad.scoring.metrics import (
    PixelMetricAccumulator,
    UndefinedMetricError,
    aupro,
    auroc,
    candidate_thresholds,
    confusion_at,
    f1_max,
    pixel_auroc,
    pixel_metrics,
    roc_curve,
    trapezoid_up_to,
)


def brute_force_auroc(labels, scores) -> float:
    """P(defect > good) + 0.5 P(defect == good) by counting every pair."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def brute_force_aupro(masks, maps, fpr_limit) -> float:
    """Independent AUPRO: loop over every distinct threshold, per-component overlap by label()."""
    comps = [label_components(m != 0, connectivity=2) for m in masks]
    good = np.concatenate([mp[m == 0] for m, mp in zip(masks, maps, strict=True)])
    points = [(0.0, 0.0), (1.0, 1.0)]
    for t in np.unique(maps):
        overlaps = []
        for c, mp in zip(comps, maps, strict=True):
            for k in range(1, c.max() + 1):
                overlaps.append(np.mean(mp[c == k] >= t))
        points.append((np.mean(good >= t), np.mean(overlaps)))
    points.sort()
    fpr = np.array([p[0] for p in points])
    pro = np.array([p[1] for p in points])
    # area with linear interpolation at the limit
    keep = fpr <= fpr_limit
    x = np.append(fpr[keep], fpr_limit)
    y = np.append(pro[keep], np.interp(fpr_limit, fpr, pro))
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / fpr_limit)


# ---- AUROC


def test_auroc_hand_case_with_ties():
    labels = [0, 0, 1, 1, 0, 1]
    scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.4]
    # defect 0.35 beats 1 good, 0.8 beats 3, 0.4 beats 0.1 and ties two 0.4s: 1 + 3 + 2 = 6 of 9 pairs
    assert auroc(labels, scores) == pytest.approx(6 / 9)
    assert brute_force_auroc(labels, scores) == pytest.approx(6 / 9)


def test_auroc_matches_pair_count_on_random_tied_scores():
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(2, 25))
        labels = rng.integers(0, 2, n)
        if labels.min() == labels.max():
            continue
        scores = rng.integers(0, 4, n).astype(float)  # many ties
        assert auroc(labels, scores) == pytest.approx(brute_force_auroc(labels, scores), abs=1e-12)


def test_auroc_extremes():
    assert auroc([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auroc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0


def test_roc_curve_groups_ties_into_one_point():
    fpr, tpr, thr = roc_curve([0, 1, 1, 0], [0.2, 0.5, 0.5, 0.5])
    np.testing.assert_allclose(fpr, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0.0, 1.0, 1.0])
    np.testing.assert_allclose(thr, [np.inf, 0.5, 0.2])


def test_invalid_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="same length"):
        auroc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        auroc([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="0 .good. or 1"):
        auroc([0, 2], [0.1, 0.2])
    with pytest.raises(UndefinedMetricError, match="both good and defective"):
        auroc([1, 1], [0.1, 0.2])
    assert issubclass(UndefinedMetricError, ValueError)
    with pytest.raises(UndefinedMetricError):
        f1_max([0, 0], [0.1, 0.2])


# ---- thresholds, F1


def test_candidate_thresholds_are_halfway_and_cover_both_ends():
    np.testing.assert_allclose(candidate_thresholds([1, 2, 2, 4]), [0.5, 1.5, 3.0, 4.0])
    single = candidate_thresholds([3.0, 3.0])
    assert single[0] < 3.0 and single[1] == 3.0


def test_f1_max_hand_case():
    labels = [0, 0, 1, 0, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    # reject > 0.25: TP 3, FP 1, FN 0 -> 6/7 (better than 0.8 at > 0.45 and 0.75 at > 0.15)
    f1, thr = f1_max(labels, scores)
    assert f1 == pytest.approx(6 / 7)
    assert thr == pytest.approx(0.25)


def test_confusion_at_counts_and_rates():
    c = confusion_at([0, 0, 0, 1, 1], [0.1, 0.3, 0.5, 0.5, 0.9], threshold=0.5)
    # score == threshold is accepted: only 0.9 rejected
    assert (c.true_accept, c.false_reject, c.true_reject, c.false_accept) == (3, 0, 1, 1)
    assert c.accuracy == pytest.approx(4 / 5)
    assert c.true_accept_rate == 1.0
    assert c.true_reject_rate == 0.5
    assert c.balanced_accuracy == pytest.approx(0.75)
    only_good = confusion_at([0, 0], [0.1, 0.9], threshold=0.5)
    assert only_good.true_reject_rate is None and only_good.true_accept_rate == 0.5
    with pytest.raises(ValueError, match="finite"):
        confusion_at([0], [0.1], threshold=float("nan"))


def test_trapezoid_up_to_cuts_at_limit_and_ignores_vertical_steps():
    x = np.array([0.0, 0.0, 0.2, 0.2, 1.0])
    y = np.array([0.0, 0.5, 0.5, 1.0, 1.0])
    assert trapezoid_up_to(x, y, 0.3) == pytest.approx(0.2 * 0.5 + 0.1 * 1.0)
    assert trapezoid_up_to([0.0, 1.0], [0.0, 1.0], 0.5) == pytest.approx(0.125)


# ---- pixel metrics


def two_component_case():
    """One 3x4 image: component A = 2 pixels (0.9, 0.3), component B = 1 pixel (0.6), 9 good pixels."""
    mask = np.zeros((3, 4), dtype=np.uint8)
    mask[0, 0] = mask[0, 1] = 1  # A
    mask[2, 3] = 1  # B (not 8-connected to A)
    amap = np.full((3, 4), 0.1)
    amap[0, 0], amap[0, 1], amap[2, 3] = 0.9, 0.3, 0.6
    amap[1, 1], amap[2, 0] = 0.8, 0.5  # two good pixels with high scores
    return mask, amap


def test_aupro_hand_computed_two_components():
    mask, amap = two_component_case()
    # thresholds 0.9: (fpr 0, PRO (1/2+0)/2 = .25); 0.8: (1/9, .25); 0.6: (1/9, .75); 0.5: (2/9, .75);
    # 0.3: (2/9, 1); 0.1: (1, 1). Area to 0.3 = .25/9 + .75/9 + (0.3 - 2/9) = 0.3 - 1/9.
    assert aupro(mask, amap, fpr_limit=0.3, num_thresholds=None) == pytest.approx((0.3 - 1 / 9) / 0.3)
    assert aupro(mask, amap, fpr_limit=1.0, num_thresholds=None) == pytest.approx(8 / 9)
    acc = PixelMetricAccumulator(np.unique(amap), exact=True)
    acc.update(mask, amap)
    fpr, pro, thr = acc.pro_curve()
    at = {float(t): (float(f), float(p)) for f, p, t in zip(fpr, pro, thr, strict=True)}
    assert at[0.6] == pytest.approx((1 / 9, 0.75))
    assert at[0.9] == pytest.approx((0.0, 0.25))
    assert acc.n_components == 2


def test_pro_averages_over_components_not_pixels_and_uses_8_connectivity():
    masks = np.zeros((2, 4, 4), dtype=np.uint8)
    maps = np.zeros((2, 4, 4))
    masks[0, 0, 0] = 1
    maps[0, 0, 0] = 1.0  # component of 1 pixel, fully detected at t = 1
    masks[1, 1, 1] = masks[1, 2, 2] = masks[1, 3, 3] = 1  # diagonal: one 8-connected component
    maps[1, 1, 1] = 1.0  # 1 of its 3 pixels detected at t = 1
    acc = PixelMetricAccumulator(np.array([0.0, 1.0]), exact=True)
    for m, mp in zip(masks, maps, strict=True):
        acc.update(m, mp)
    assert acc.n_components == 2
    fpr, pro, thr = acc.pro_curve()
    i = int(np.flatnonzero(thr == 1.0)[0])
    assert pro[i] == pytest.approx((1.0 + 1 / 3) / 2)  # pixel-weighted would be 2/4
    assert fpr[i] == 0.0


def test_aupro_matches_brute_force_on_random_masks():
    rng = np.random.default_rng(3)
    masks = (rng.random((3, 10, 10)) < 0.15).astype(np.uint8)
    maps = np.round(rng.random((3, 10, 10)) + 0.4 * masks, 2)  # rounding creates ties
    for limit in (0.05, 0.3, 1.0):
        exact = aupro(masks, maps, fpr_limit=limit, num_thresholds=None)
        assert exact == pytest.approx(brute_force_aupro(masks, maps, limit), abs=1e-12)


def test_grid_pixel_metrics_stay_within_reported_error_bounds():
    rng = np.random.default_rng(1)
    masks = (rng.random((4, 24, 24)) < 0.1).astype(np.uint8)
    maps = rng.random((4, 24, 24)) + 0.5 * masks
    exact = pixel_metrics(masks, maps, num_thresholds=None)
    approx = pixel_metrics(masks, maps, num_thresholds=50)
    assert exact.exact and exact.pixel_auroc_max_abs_error == 0.0
    assert exact.pixel_auroc == pytest.approx(auroc(masks.ravel(), maps.ravel()), abs=1e-12)
    assert not approx.exact
    assert 0 < approx.pixel_auroc_max_abs_error < 0.05
    assert abs(approx.pixel_auroc - exact.pixel_auroc) <= approx.pixel_auroc_max_abs_error + 1e-12
    assert abs(approx.aupro - exact.aupro) <= approx.aupro_max_abs_error + 1e-12


def test_pixel_metrics_stream_from_memmap(tmp_path):
    rng = np.random.default_rng(2)
    masks = (rng.random((3, 16, 16)) < 0.2).astype(np.uint8)
    maps = (rng.random((3, 16, 16)) + 0.3 * masks).astype(np.float32)
    np.save(tmp_path / "maps.npy", maps)
    mapped = np.load(tmp_path / "maps.npy", mmap_mode="r")
    assert pixel_auroc(masks, mapped, num_thresholds=1000) == pytest.approx(
        pixel_auroc(masks, maps, num_thresholds=1000)
    )


def test_pixel_metrics_undefined_and_shape_errors():
    with pytest.raises(UndefinedMetricError, match="0 defect pixels"):
        pixel_auroc(np.zeros((1, 4, 4)), np.random.default_rng(0).random((1, 4, 4)))
    with pytest.raises(UndefinedMetricError, match="no defect region"):
        aupro(np.zeros((1, 4, 4)), np.random.default_rng(0).random((1, 4, 4)))
    with pytest.raises(ValueError, match="equal shapes"):
        pixel_auroc(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    bad = np.zeros((1, 4, 4))
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pixel_auroc(np.ones((1, 4, 4)), bad)
