"""The acquisition check and the blank-patch rule as offline scoring applies them (tfad.scoring.acquisition,
tfad.data.decode): the statistics against their definition, the fitted limits against the stated rule, the
wording the servers share, and the decisions of tfad eval for patches the line would not score."""

from __future__ import annotations

import numpy as np
import pytest

from tfad.data.decode import blank_images, pixel_statistics
from tfad.evaluation.report import evaluate
from tfad.scoring.acquisition import (
    AcquisitionCheck,
    AcquisitionLimits,
    PatchGate,
    fit_acquisition_check,
    stopped,
)
from tfad.scoring.table import ScoreTable
from tfad.scoring.thresholds import ThresholdTable, product_verdicts


@pytest.mark.parametrize("channels", [1, 3])
def test_pixel_statistics_are_the_mean_and_population_std_of_every_value(channels):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 17, 23, channels), dtype=np.uint8)
    images[1] = 200  # uniform: std exactly 0
    images[2, :, :11] = 0
    images[2, :, 11:] = 255
    mean, std = pixel_statistics(images)
    flat = images.reshape(5, -1).astype(np.float64)
    np.testing.assert_allclose(mean, flat.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(std, flat.std(axis=1), rtol=1e-9)
    assert mean[1] == 200.0 and std[1] == 0.0
    assert (std[[0, 2, 3, 4]] > 0).all()
    with pytest.raises(ValueError, match="uint8 images"):
        pixel_statistics(images.astype(np.float32))


def test_blank_images_are_those_whose_every_pixel_equals_the_first():
    images = np.full((4, 6, 6, 3), 9, np.uint8)
    images[1, 5, 5, 2] = 10  # one value differs in the last row: not blank
    images[2, :, :] = (10, 20, 30)  # one colour, channels differ: blank
    images[3, 0, 1] = 0  # differs in the first row
    assert blank_images(images).tolist() == [True, False, True, False]


def test_limits_name_the_first_condition_a_patch_fails_in_the_servers_words():
    limits = AcquisitionLimits(mean_min=40.0, mean_max=220.0, std_min=5.0)
    assert limits.failure(40.0, 5.0) is None and limits.failure(220.0, 80.0) is None  # bounds inclusive
    assert limits.failure(39.999, 20.0) and limits.failure(220.001, 20.0) and limits.failure(128.0, 4.999)
    assert limits.failure(4.24, 1.5) == "mean gray 4.2 is below 40.0"
    assert limits.failure(250.26, 0.5) == "mean gray 250.3 is above 220.0"
    assert limits.failure(128.0, 1.996) == "pixel standard deviation 2.00 is below 5.00"
    with pytest.raises(ValueError, match="mean_min <= mean_max"):
        AcquisitionLimits(mean_min=50.0, mean_max=40.0, std_min=0.0)


def test_fitted_limits_follow_the_stated_rule_per_region_and_for_the_default():
    regions = ["R0", "R0", "R0", "R1", "R1", "R2"]
    labels = [0, 0, 1, 0, 0, 1]  # a defect's statistics never widen the limits; R2 has no good image
    means = [100.0, 180.0, 2.0, 60.0, 90.0, 250.0]
    stds = [20.0, 30.0, 0.5, 12.0, 14.0, 40.0]
    check = fit_acquisition_check(regions, labels, means, stds)
    assert set(check.regions) == {"R0", "R1"}
    assert check.regions["R0"] == AcquisitionLimits(50.0, 217.5, 10.0)  # 100/2, 180+(255-180)/2, 20/2
    assert check.regions["R1"] == AcquisitionLimits(30.0, 172.5, 6.0)
    assert check.default == AcquisitionLimits(30.0, 217.5, 6.0)  # every good image
    assert check.limits_for("R2") == check.default
    # rounded outward to 0.01, never inward
    odd = fit_acquisition_check(["R0"], [0], [100.007], [9.999])
    assert odd.default == AcquisitionLimits(50.0, 177.51, 4.99)
    with pytest.raises(ValueError, match="needs good images"):
        fit_acquisition_check(["R0"], [1], [100.0], [10.0])


def test_the_manifest_block_round_trips_and_bad_blocks_are_named():
    check = fit_acquisition_check(["R0", "R1"], [0, 0], [100.0, 120.0], [20.0, 25.0])
    block = check.to_manifest()
    assert block["rule"] and AcquisitionCheck.from_manifest(block) == check
    assert AcquisitionCheck.from_manifest(None) is None
    bad = [
        ([], '"acquisition_check" must be an object'),
        ({"regions": []}, "acquisition_check.regions"),
        ({"regions": {}}, "acquisition_check.default is missing"),
        ({"default": {"mean_min": 1, "mean_max": 2}}, "acquisition_check.default.std_min must be a finite"),
        ({"default": {"mean_min": 1, "mean_max": float("nan"), "std_min": 0}}, "default.mean_max must be"),
        ({"default": {"mean_min": True, "mean_max": 2, "std_min": 0}}, "default.mean_min must be a finite"),
        (
            {"regions": {"R0": {"mean_min": 9, "mean_max": 300, "std_min": 0}}, "default": block["default"]},
            "acquisition_check.regions.R0 must have 0 <= mean_min <= mean_max <= 255",
        ),
    ]
    for value, message in bad:
        with pytest.raises(ValueError, match=message.replace(".", r"\.")):
            AcquisitionCheck.from_manifest(value)


def test_the_gate_says_why_a_patch_is_not_scored_blank_first():
    check = AcquisitionCheck(
        regions={"R0": AcquisitionLimits(50.0, 200.0, 10.0)}, default=AcquisitionLimits(10.0, 250.0, 1.0)
    )
    gate = PatchGate(reject_blank_patches=True, acquisition_check=check)
    reasons = gate.reasons(
        ["R0", "R0", "R0", "R9", "R0"],
        [False, True, False, False, False],
        [120.0, 0.0, 30.0, 30.0, float("nan")],
        [20.0, 0.0, 20.0, 20.0, float("nan")],
    )
    assert reasons[0] is None
    assert reasons[1] == "blank: every pixel has one value (a camera or grab failure?)"
    assert reasons[2] == (
        "fails the acquisition check: mean gray 30.0 is below 50.0 (a lamp, exposure, focus or grab failure?)"
    )
    assert reasons[3] is None  # an unlisted region: the default limits
    assert reasons[4] is None  # statistics not known (an older score table)
    # without the blank rule a blank patch is judged by the check alone; with neither rule nothing fails
    assert PatchGate(False, check).reasons(["R0"], [True], [0.0], [0.0])[0].startswith("fails")
    assert stopped(PatchGate().reasons(["R0"], [True], [0.0], [0.0])).tolist() == [False]


def _table(scores, pixel_means, pixel_stds, blanks=None, labels=(0, 0, 1, 1)):
    return ScoreTable(
        scores=scores,
        labels=list(labels),
        paths=[f"p{i}.png" for i in range(len(scores))],
        regions=["R0"] * len(scores),
        blanks=blanks,
        pixel_means=pixel_means,
        pixel_stds=pixel_stds,
    )


def test_eval_rejects_a_patch_the_line_would_not_score_whatever_its_score():
    """Every score is under the threshold; the dark good image and the flat defective one are rejected all
    the same, and counted, as the servers answer them REJECT_INCOMPLETE."""
    thresholds = ThresholdTable("max-accuracy", {"R0": 0.5})
    table = _table([0.1, 0.1, 0.1, 0.1], [120.0, 3.0, 130.0, 128.0], [20.0, 1.5, 20.0, 1.0])
    check = AcquisitionCheck(regions={}, default=AcquisitionLimits(50.0, 200.0, 10.0))
    plain = evaluate(table, thresholds)["at_thresholds"]["patch"]
    assert (plain["false_reject"], plain["true_reject"]) == (0, 0)
    report = evaluate(table, thresholds, gate=PatchGate(True, check))
    patch = report["at_thresholds"]["patch"]
    assert (patch["false_reject"], patch["true_reject"]) == (1, 1)
    assert report["incomplete"]["good"] == 1 and report["incomplete"]["defective"] == 1
    assert [e["path"] for e in report["incomplete"]["examples"]] == ["p1.png", "p3.png"]
    assert report["at_thresholds"]["product"]["false_reject"] == 1
    # the threshold-free metrics are the scores' alone
    assert report["image_level"]["auroc"] == evaluate(table, thresholds)["image_level"]["auroc"]


def test_a_product_with_an_incomplete_patch_is_rejected():
    thresholds = ThresholdTable("max-accuracy", {"R0": 0.5})
    verdicts = product_verdicts(
        [0.1, 0.2, 0.1], ["R0"] * 3, ["a", "a", "b"], thresholds, incomplete=np.array([False, True, False])
    )
    assert verdicts.rejected.tolist() == [True, False]
    assert verdicts.n_rejected_patches.tolist() == [1, 0]


def test_the_score_table_keeps_the_statistics_and_reads_older_tables(tmp_path):
    table = _table(
        [0.1, 0.2, 0.3, 0.4], [1.0, 2.5, 3.0, 4.0], [0.0, 1.0, 2.0, 3.0], [True, False, False, False]
    )
    table.save(str(tmp_path / "t"))
    loaded = ScoreTable.load(str(tmp_path / "t"))
    assert loaded.blanks.tolist() == [True, False, False, False]
    np.testing.assert_array_equal(loaded.pixel_means, table.pixel_means)
    np.testing.assert_array_equal(loaded.pixel_stds, table.pixel_stds)
    sub = loaded.subset(np.array([1, 0]))
    assert sub.blanks.tolist() == [False, True] and sub.pixel_means.tolist() == [2.5, 1.0]
    # a table written before the statistics: no columns, read as not known (the gate lets them pass)
    csv_path = tmp_path / "t" / "scores.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(",".join(line.split(",")[:-3]) for line in lines) + "\n")
    old = ScoreTable.load(str(tmp_path / "t"))
    assert not old.blanks.any() and np.isnan(old.pixel_means).all() and np.isnan(old.pixel_stds).all()


def test_a_bad_good_image_in_the_kit_is_named_and_a_blank_one_left_out():
    """A nearly black good calibration image (a failed acquisition in the kit) would widen its region's limits
    until they stop nothing: weak_limits names the region; a blank one is left out of the fit altogether."""
    from tfad.scoring.acquisition import weak_limits

    regions, labels = ["R0", "R0", "R1", "R1"], [0, 0, 0, 0]
    means, stds = [120.0, 2.0, 130.0, 140.0], [20.0, 1.5, 25.0, 30.0]
    check = fit_acquisition_check(regions, labels, means, stds)
    assert weak_limits(check) == [
        "R0: mean_min 1.0 (a dark frame passes), std_min 0.75 (a flat frame passes)",
        "default: mean_min 1.0 (a dark frame passes), std_min 0.75 (a flat frame passes)",
    ]
    blank = fit_acquisition_check(
        regions, labels, [120.0, 0.0, 130.0, 140.0], [20.0, 0.0, 25.0, 30.0], blanks=[0, 1, 0, 0]
    )
    assert blank.regions["R0"] == AcquisitionLimits(60.0, 187.5, 10.0) and weak_limits(blank) == []
    with pytest.raises(ValueError, match="not blank"):
        fit_acquisition_check(["R0"], [0], [0.0], [0.0], blanks=[True])


def test_manifest_errors_name_the_first_bad_region_by_name_and_huge_numbers_are_not_finite():
    good = {"mean_min": 1, "mean_max": 2, "std_min": 0}
    bad = {"mean_min": 1, "mean_max": 2}
    # the C++ parser reads a protobuf Struct, which keeps no order: both name the first bad region by name
    with pytest.raises(ValueError, match=r"acquisition_check\.regions\.R1\.std_min"):
        AcquisitionCheck.from_manifest({"regions": {"R9": bad, "R1": bad}, "default": good})
    with pytest.raises(ValueError, match=r"acquisition_check\.default\.mean_max must be a finite number"):
        AcquisitionCheck.from_manifest({"default": {"mean_min": 1, "mean_max": 10**400, "std_min": 0}})


def test_statistics_of_no_image_are_empty():
    empty = np.zeros((0, 8, 8, 1), np.uint8)
    assert pixel_statistics(empty)[0].shape == (0,) and blank_images(empty).shape == (0,)
