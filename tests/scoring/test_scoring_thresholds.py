"""Threshold policies, the manifest block, product verdicts and k-of-n acceptance on constructed scores."""

from __future__ import annotations

import numpy as np
import pytest

from tfad.scoring.thresholds import (
    ThresholdTable,
    calibrate,
    patch_decisions,
    product_verdicts,
    required_runs,
    run_acceptance,
    select_threshold,
)

# goods 1..8, defects 6.5 and 9 (one region)
GOOD = [1, 2, 3, 4, 5, 6, 7, 8]
DEFECT = [6.5, 9]
SCORES = GOOD + DEFECT
LABELS = [0] * len(GOOD) + [1] * len(DEFECT)


def test_max_accuracy_and_max_balanced_accuracy_differ_as_computed_by_hand():
    # > 8.5: 8 goods + 1 defect right = 0.9 accuracy, balanced (1 + 0.5)/2 = 0.75
    # > 6.25: 6 goods + 2 defects right = 0.8 accuracy, balanced (0.75 + 1)/2 = 0.875
    thr, _, fallback = select_threshold(SCORES, LABELS, "max-accuracy")
    assert thr == pytest.approx(8.5) and not fallback
    thr, _, _ = select_threshold(SCORES, LABELS, "max-balanced-accuracy")
    assert thr == pytest.approx(6.25)


def test_max_accuracy_ties_go_to_the_lowest_threshold():
    # > 0.325 and > 0.45 both give 6/7; the lower one rejects more
    thr, _, _ = select_threshold([0.1, 0.2, 0.3, 0.4, 0.35, 0.5, 0.6], [0, 0, 0, 0, 1, 1, 1], "max-accuracy")
    assert thr == pytest.approx(0.325)


def test_no_defect_accepted_is_just_below_the_smallest_defect():
    thr, _, fallback = select_threshold(SCORES, LABELS, "no-defect-accepted")
    assert thr == pytest.approx(6.25) and not fallback  # halfway between good 6 and defect 6.5
    # the smallest defect is the lowest score: below it by half the smallest gap
    thr, _, _ = select_threshold([0.5, 1.0, 2.0], [1, 0, 0], "no-defect-accepted")
    assert thr == pytest.approx(0.25)
    # without defects: the maximum good score, flagged as a fallback
    thr, rule, fallback = select_threshold([0.1, 0.7, 0.3], [0, 0, 0], "no-defect-accepted")
    assert thr == 0.7 and fallback and "no defective samples" in rule


def test_false_reject_budget():
    goods = list(range(1, 101))
    scores, labels = goods + [50.5], [0] * 100 + [1]
    thr, _, _ = select_threshold(scores, labels, "false-reject-budget", false_reject_budget=0.05)
    assert thr == pytest.approx(95.5)  # goods 96..100 rejected = 5 = 5 %
    assert sum(g > thr for g in goods) == 5
    thr, _, _ = select_threshold(scores, labels, "false-reject-budget", false_reject_budget=0.29)
    assert thr == pytest.approx(71.5)  # 0.29 * 100 must allow 29 despite float rounding
    thr, _, _ = select_threshold(scores, labels, "false-reject-budget", false_reject_budget=0.0)
    assert thr == 100.0
    thr, _, fallback = select_threshold([3.0, 4.0], [1, 1], "false-reject-budget", false_reject_budget=0.01)
    assert thr < 3.0 and fallback


def test_policy_argument_errors():
    with pytest.raises(ValueError, match="unknown threshold policy"):
        select_threshold(SCORES, LABELS, "max-f1")
    with pytest.raises(ValueError, match="needs false_reject_budget"):
        select_threshold(SCORES, LABELS, "false-reject-budget")
    with pytest.raises(ValueError, match="only applies"):
        select_threshold(SCORES, LABELS, "max-accuracy", false_reject_budget=0.1)
    with pytest.raises(ValueError, match="unknown .-1."):
        select_threshold([0.1, 0.2], [0, -1], "max-accuracy")


def test_calibrate_per_region_manifest_round_trip_and_defaults():
    scores = [0.1, 0.2, 0.9, 1.0, 2.0, 5.0]
    labels = [0, 0, 1, 0, 0, 1]
    regions = ["R0", "R0", "R0", "R1", "R1", "R1"]
    table = calibrate(scores, labels, regions, "max-accuracy")
    assert table.regions == {"R0": pytest.approx(0.55), "R1": pytest.approx(3.5)}
    assert table.to_manifest() == {"policy": "max-accuracy", "regions": table.regions, "default": None}
    assert table.per_region_stats["R1"].calibration.accuracy == 1.0
    again = ThresholdTable.from_manifest(table.to_manifest())
    assert again.regions == table.regions and again.default is None and again.policy == "max-accuracy"
    with pytest.raises(KeyError, match="no threshold for region 'R9'"):
        table.threshold_for("R9")
    assert calibrate(scores, labels, regions, default="strictest").default == pytest.approx(0.55)
    assert calibrate(scores, labels, regions, default=0.7).threshold_for("R9") == 0.7
    pooled = calibrate(scores, labels, regions, default="pooled")
    assert pooled.default == select_threshold(scores, labels, "max-accuracy")[0]
    with pytest.raises(ValueError, match="equal length"):
        calibrate(scores, labels[:-1], regions)


def test_from_manifest_rejects_invalid_blocks():
    with pytest.raises(ValueError, match="no thresholds"):
        ThresholdTable.from_manifest(None)
    with pytest.raises(ValueError, match="must be a number"):
        ThresholdTable.from_manifest({"policy": "x", "regions": {"R0": "0.1"}, "default": None})
    with pytest.raises(ValueError, match="default must be a number"):
        ThresholdTable.from_manifest({"policy": "x", "regions": {}, "default": "high"})


def test_patch_decisions_reject_strictly_above_threshold():
    table = ThresholdTable(policy="given", regions={"R0": 0.5}, default=None)
    np.testing.assert_array_equal(patch_decisions([0.4, 0.5, 0.6], ["R0"] * 3, table), [False, False, True])
    with pytest.raises(KeyError):
        patch_decisions([0.4], ["R1"], table)
    with pytest.raises(ValueError, match="NaN"):
        patch_decisions([float("nan")], ["R0"], table)


def test_product_verdicts_use_each_regions_threshold_and_max_score():
    table = ThresholdTable(policy="given", regions={"R0": 0.1, "R1": 0.5})
    scores = [0.2, 0.3, 0.05, 0.45]
    regions = ["R0", "R1", "R0", "R1"]
    keys = [("run1", "P1"), ("run1", "P1"), ("run1", "P2"), ("run1", "P2")]
    v = product_verdicts(scores, regions, keys, table, labels=[1, 0, 0, 0])
    assert v.keys == [("run1", "P1"), ("run1", "P2")]
    np.testing.assert_allclose(v.score, [0.3, 0.45])  # Eq. 10.3: max patch score
    # P2 has the higher product score but no patch above its region's threshold
    np.testing.assert_array_equal(v.rejected, [True, False])
    np.testing.assert_allclose(v.margin, [0.1, -0.05])
    np.testing.assert_array_equal(v.n_rejected_patches, [1, 0])
    np.testing.assert_array_equal(v.label, [1, 0])
    np.testing.assert_array_equal(v.patch_index, [0, 0, 1, 1])


def test_required_runs_scales_k_with_ceil():
    assert [required_runs(m) for m in (10, 5, 3, 12, 1)] == [7, 4, 3, 9, 1]


def test_run_acceptance_k_of_n():
    ids, rejected, labels = [], [], []

    def add(product, label, n_runs, n_rejected):
        ids.extend([product] * n_runs)
        rejected.extend([True] * n_rejected + [False] * (n_runs - n_rejected))
        labels.extend([label] * n_runs)

    add("A", 0, 10, 3)  # good, 7 of 10 accepted -> correct
    add("B", 1, 10, 6)  # defective, 6 of 10 rejected -> not correct, neither decision reaches 7
    add("C", 1, 5, 4)  # 5 runs: needs ceil(3.5) = 4 -> correct
    add("D", 0, 3, 1)  # 3 runs: needs 3 accepted, has 2 -> not correct
    result = run_acceptance(ids, rejected, labels, k=7, n=10)
    rows = {row["product_id"]: row for row in result.products}
    assert rows["A"]["correctly_classified"] and rows["A"]["decision"] == "accept"
    assert not rows["B"]["correctly_classified"] and rows["B"]["decision"] == "undecided"
    assert rows["C"]["correctly_classified"] and rows["C"]["required_runs"] == 4 and rows["C"]["k_scaled"]
    assert rows["D"]["decision"] == "undecided" and rows["D"]["required_runs"] == 3
    s = result.summary
    assert (s["correctly_classified"], s["n_products"]) == (2, 4)
    assert s["accuracy"] == 0.5 and s["true_accept_rate"] == 0.5 and s["true_reject_rate"] == 0.5
    assert s["undecided"] == 2 and s["products_with_scaled_k"] == 2


def test_run_acceptance_argument_errors():
    with pytest.raises(ValueError, match="k > n/2"):
        run_acceptance(["A"], [True], [1], k=5, n=10)
    with pytest.raises(ValueError, match="different true labels"):
        run_acceptance(["A", "A"], [True, True], [1, 0], k=2, n=2)
    with pytest.raises(ValueError, match="equal length"):
        run_acceptance(["A", "A"], [True], [1, 1], k=2, n=2)


def test_n_sigma_is_mean_plus_k_sample_std_of_the_good_scores_only():
    good = np.array([1.0, 2.0, 3.0, 4.0])  # mean 2.5, sample std sqrt(5/3)
    scores = np.concatenate([good, [100.0, 0.5]])  # defects never move the n-sigma threshold
    labels = [0, 0, 0, 0, 1, 1]
    thr, rule, fallback = select_threshold(scores, labels, "n-sigma", n_sigma_k=3)
    assert thr == pytest.approx(2.5 + 3 * np.sqrt(5 / 3))
    assert not fallback and "mean + 3 * std of 4 good scores" in rule
    assert select_threshold(good, [0] * 4, "n-sigma", n_sigma_k=0)[0] == pytest.approx(2.5)
    assert select_threshold([0.7], [0], "n-sigma", n_sigma_k=3)[0] == pytest.approx(0.7)  # one sample: std 0


def test_n_sigma_without_good_samples_falls_back_below_the_lowest_score():
    thr, _, fallback = select_threshold([3.0, 4.0], [1, 1], "n-sigma", n_sigma_k=3)
    assert fallback and thr < 3.0


def test_n_sigma_per_region_and_its_parameter_checks():
    scores = [1.0, 3.0, 10.0, 14.0]
    table = calibrate(scores, [0, 0, 0, 0], ["A", "A", "B", "B"], "n-sigma", n_sigma_k=1)
    assert table.regions["A"] == pytest.approx(2.0 + np.sqrt(2.0))
    assert table.regions["B"] == pytest.approx(12.0 + np.sqrt(8.0))
    assert table.to_dict()["n_sigma_k"] == 1.0
    with pytest.raises(ValueError, match="needs n_sigma_k"):
        select_threshold(scores, [0] * 4, "n-sigma")
    with pytest.raises(ValueError, match="n_sigma_k only applies"):
        select_threshold(scores, [0] * 4, "max-accuracy", n_sigma_k=3)
    with pytest.raises(ValueError, match=">= 0"):
        select_threshold(scores, [0] * 4, "n-sigma", n_sigma_k=-1)
