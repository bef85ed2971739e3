"""Score table and report generation end to end on small synthetic tables with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.io import imsave

from tfad.evaluation.report import evaluate, format_summary, write_report
from tfad.scoring.metrics import auroc, pixel_metrics
from tfad.scoring.table import FileSource, ScoreTable, open_heatmap_store
from tfad.scoring.thresholds import ThresholdTable

# (run, product, region, label, score): thresholds 0.5 in both regions
ROWS = [
    ("r1", "P1", "R0", 0, 0.1), ("r1", "P1", "R1", 0, 0.2),
    ("r1", "P2", "R0", 0, 0.3), ("r1", "P2", "R1", 1, 0.9),
    ("r2", "P1", "R0", 0, 0.6), ("r2", "P1", "R1", 0, 0.2),  # false reject of good P1
    ("r2", "P2", "R0", 0, 0.1), ("r2", "P2", "R1", 1, 0.4),  # false accept of defective P2
    ("r3", "P1", "R0", 0, 0.1), ("r3", "P1", "R1", 0, 0.3),
    ("r3", "P2", "R0", 0, 0.2), ("r3", "P2", "R1", 1, 0.8),
]  # fmt: skip
THRESHOLDS = ThresholdTable(policy="given", regions={"R0": 0.5, "R1": 0.5})
SIZE = 8


def make_table(tmp_path, with_maps: bool = True) -> ScoreTable:
    rng = np.random.default_rng(0)
    maps, masks, paths = [], [], []
    for i, (_, _, _, label, _) in enumerate(ROWS):
        mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
        if label:
            mask[2:5, 3:6] = 1
        maps.append(np.round(rng.random((SIZE, SIZE)) * 0.6 + 0.4 * mask, 2).astype(np.float32))
        masks.append(mask)
        path = tmp_path / f"img{i}.png"
        imsave(path, (rng.random((SIZE, SIZE)) * 255).astype(np.uint8), check_contrast=False)
        paths.append(str(path))
    return ScoreTable(
        scores=[r[4] for r in ROWS],
        labels=[r[3] for r in ROWS],
        paths=paths,
        regions=[r[2] for r in ROWS],
        product_ids=[r[1] for r in ROWS],
        run_ids=[r[0] for r in ROWS],
        defect_types=["scratch" if r[3] else "good" for r in ROWS],
        heatmaps=np.stack(maps) if with_maps else None,
        masks=np.stack(masks) if with_maps else None,
    )


def test_report_values_on_hand_computed_case(tmp_path):
    table = make_table(tmp_path)
    report = evaluate(table, THRESHOLDS, k=2, n=3, pixel_thresholds=None)
    assert report["positive_class"] == "defective (label 1)"
    assert report["counts"]["good"] == 9 and report["counts"]["defective"] == 3
    # defects 0.9 and 0.8 beat all 9 goods, 0.4 beats 8 (not 0.6)
    assert report["image_level"]["auroc"] == pytest.approx(26 / 27)
    assert report["image_level"]["f1_max"]["f1"] == pytest.approx(6 / 7)
    assert report["image_level"]["f1_max"]["threshold"] == pytest.approx(0.35)
    assert report["image_level"]["per_region"]["R0"]["auroc"] is None  # R0 has no defect
    assert "both good and defective" in report["image_level"]["per_region"]["R0"]["auroc_undefined_reason"]

    patch = report["at_thresholds"]["patch"]
    assert (patch["false_reject"], patch["true_reject"], patch["false_accept"]) == (1, 2, 1)
    assert patch["accuracy"] == pytest.approx(10 / 12)
    assert patch["true_accept_rate"] == pytest.approx(8 / 9)
    assert patch["true_reject_rate"] == pytest.approx(2 / 3)
    assert patch["per_region"]["R0"]["accuracy"] == pytest.approx(5 / 6)
    assert patch["per_region"]["R0"]["true_reject_rate"] is None
    assert patch["per_region"]["R1"]["threshold"] == 0.5
    assert patch["per_defect_type"]["scratch"]["true_reject_rate"] == pytest.approx(2 / 3)
    assert patch["per_defect_type"]["good"]["true_accept_rate"] == pytest.approx(8 / 9)

    product = report["at_thresholds"]["product"]  # 6 acquisitions: r2/P1 falsely rejected, r2/P2 accepted
    assert (product["n_good"], product["n_defective"]) == (3, 3)
    assert product["accuracy"] == pytest.approx(4 / 6)
    assert product["per_run"]["r2"]["accuracy"] == 0.0 and product["per_run"]["r1"]["accuracy"] == 1.0

    acceptance = report["at_thresholds"]["run_acceptance"]  # 2 of 3 runs right for both products
    assert acceptance["summary"]["accuracy"] == 1.0
    assert {p["product_id"]: p["decision"] for p in acceptance["products"]} == {
        "P1": "accept",
        "P2": "reject",
    }
    strict = evaluate(table, THRESHOLDS, k=3, n=3, pixel_thresholds=None)["at_thresholds"]["run_acceptance"]
    assert strict["summary"]["accuracy"] == 0.0 and strict["summary"]["undecided"] == 2

    pixel = report["pixel_level"]
    masks = np.stack([table.mask(i) for i in range(len(table))])
    maps = np.stack([table.heatmap(i) for i in range(len(table))])
    assert pixel["pixel_auroc"] == pytest.approx(auroc(masks.ravel().astype(int), maps.ravel()))
    assert pixel["aupro"] == pytest.approx(pixel_metrics(masks, maps, num_thresholds=None).aupro)
    assert pixel["n_components"] == 3 and pixel["images_excluded"] == 0
    assert report["examples"]["defective_lowest_margin"][0]["score"] == 0.4


def test_write_report_files_json_summary_and_pngs(tmp_path):
    table = make_table(tmp_path)
    out = tmp_path / "eval"
    report = write_report(table, THRESHOLDS, str(out), k=2, n=3, pixel_thresholds=1000)
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["image_level"]["auroc"] == pytest.approx(report["image_level"]["auroc"])
    for key in ("counts", "thresholds", "image_level", "pixel_level", "at_thresholds", "examples", "files"):
        assert key in on_disk
    assert on_disk["thresholds"]["regions"] == {"R0": 0.5, "R1": 0.5}
    assert 0.0 < on_disk["pixel_level"]["pixel_auroc_max_abs_error"] < 0.01
    summary = (out / "summary.txt").read_text()
    assert summary == format_summary(report)
    assert "image AUROC 0.9630" in summary and "run acceptance 2-of-3: 2/2 products correct" in summary
    assert len(on_disk["pixel_level"]["curves"]["pro"]["fpr"]) <= 200
    assert on_disk["pixel_level"]["curves"]["roc"]["y"][-1] == 1.0
    names = (
        "roc.png",
        "score_histograms.png",
        "region_thresholds.png",
        "heatmap_examples.png",
        "pixel_curves.png",
    )
    for name in names:
        data = (out / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
        assert f"plots/{name}" in report["files"]


def test_report_without_heatmaps_single_region_and_unlabelled(tmp_path):
    table = ScoreTable(scores=[0.1, 0.2, 0.9, 0.3], labels=[0, 0, 1, -1])  # MVTec-like: no products
    out = tmp_path / "eval"
    table_thr = ThresholdTable(policy="given", regions={"all": 0.5})
    report = write_report(table, table_thr, str(out))
    assert report["counts"]["unlabelled_excluded"] == 1 and report["counts"]["images"] == 3
    assert report["image_level"]["auroc"] == 1.0
    assert report["pixel_level"] == {"available": False, "reason": "the score table has no heatmaps"}
    assert report["at_thresholds"]["run_acceptance"]["summary"] is None
    assert report["at_thresholds"]["product"]["accuracy"] == 1.0  # each image is its own product
    assert not (out / "plots" / "heatmap_examples.png").exists()
    assert (out / "plots" / "roc.png").stat().st_size > 0


def test_report_errors_on_uncalibrated_region(tmp_path):
    table = ScoreTable(scores=[0.1, 0.9], labels=[0, 1], regions=["R0", "R7"])
    with pytest.raises(ValueError, match=r"\['R7'\] have no calibrated threshold"):
        evaluate(table, ThresholdTable(policy="given", regions={"R0": 0.5}))
    with_default = evaluate(table, ThresholdTable(policy="given", regions={"R0": 0.5}, default=0.5))
    assert with_default["regions_using_default_threshold"] == ["R7"]


def test_single_class_metrics_are_null_with_reason():
    table = ScoreTable(scores=[0.1, 0.2], labels=[0, 0])
    report = evaluate(table, ThresholdTable(policy="given", regions={"all": 0.15}))
    assert report["image_level"]["auroc"] is None
    assert report["image_level"]["f1_max"] is None
    assert report["at_thresholds"]["patch"]["true_accept_rate"] == 0.5


# ---- ScoreTable


def test_score_table_validation():
    with pytest.raises(ValueError, match="NaN"):
        ScoreTable(scores=[0.1, float("nan")], labels=[0, 1])
    with pytest.raises(ValueError, match="labels has shape"):
        ScoreTable(scores=[0.1, 0.2], labels=[0])
    with pytest.raises(ValueError, match="heatmaps has 1 entries for 2 samples"):
        ScoreTable(scores=[0.1, 0.2], labels=[0, 1], heatmaps=np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="non-empty"):
        ScoreTable(scores=[0.1], labels=[0], regions=[""])


def test_score_table_save_load_memmap_and_subset(tmp_path):
    table = make_table(tmp_path)
    table.save(str(tmp_path / "table"))
    loaded = ScoreTable.load(str(tmp_path / "table"))
    assert isinstance(loaded.heatmaps.stack, np.memmap)
    np.testing.assert_array_equal(loaded.scores, table.scores)  # repr-exact round trip
    assert loaded.product_keys() == table.product_keys()
    np.testing.assert_allclose(loaded.heatmap(3), table.heatmap(3))
    np.testing.assert_array_equal(loaded.mask(3), table.mask(3))
    sub = loaded.subset(loaded.labels == 1)
    assert len(sub) == 3
    np.testing.assert_allclose(sub.heatmap(0), table.heatmap(3))  # row 3 is the first defect


def test_heatmap_store_and_mask_files(tmp_path):
    store = open_heatmap_store(str(tmp_path / "maps.npy"), 2, 4, 4)
    store[:] = np.arange(32, dtype=np.float32).reshape(2, 4, 4) / 32
    store.flush()
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[1, 1] = 255
    imsave(tmp_path / "m.png", mask, check_contrast=False)
    table = ScoreTable(
        scores=[0.1, 0.9],
        labels=[0, 1],
        heatmaps=np.load(tmp_path / "maps.npy", mmap_mode="r"),
        mask_paths=[None, str(tmp_path / "m.png")],
    )
    assert table.mask(0, shape=(4, 4)).sum() == 0  # good without mask: all good pixels
    assert table.mask(1).sum() == 1 and table.mask(1)[1, 1]
    assert ScoreTable(scores=[0.9], labels=[1]).mask(0, shape=(4, 4)) is None  # defect without mask
    with pytest.raises(FileNotFoundError, match="missing.png"):
        FileSource([str(tmp_path / "missing.png")]).get(0)


def test_calibrate_then_report_flags_fallback_regions(tmp_path):
    from tfad.scoring.thresholds import calibrate

    table = make_table(tmp_path, with_maps=False)
    th = calibrate(table.scores, table.labels, table.regions, "no-defect-accepted")
    # R0 has no defects: max good score 0.6; R1: halfway between good 0.3 and the smallest defect 0.4
    assert th.regions == {"R0": pytest.approx(0.6), "R1": pytest.approx(0.35)}
    report = evaluate(table, th, k=2, n=3)
    assert report["at_thresholds"]["patch"]["true_reject_rate"] == 1.0
    assert report["at_thresholds"]["patch"]["false_reject"] == 0
    assert report["thresholds"]["per_region"]["R0"]["fallback"] is True
    summary = format_summary(report)
    assert "WARNING region R0: calibration fallback" in summary
    assert "WARNING region R1" not in summary


def test_from_records_and_calibrate_table_drop_unknown_labels():
    from tfad.data.records import ImageRecord
    from tfad.scoring.thresholds import calibrate_table

    records = [
        ImageRecord("a.png", 0, "good", region="R0", product_id="P1", run_id="r1", vial=2),
        ImageRecord("b.png", 1, "crack", mask_path="b_mask.png", region="R0", product_id="P2", run_id="r1"),
        ImageRecord("c.png", -1, "unknown", region="R0", product_id="P3", run_id="r1"),
    ]
    table = ScoreTable.from_records(records, [0.1, 0.9, 0.0])
    assert table.product_keys() == [("r1", "P1"), ("r1", "P2"), ("r1", "P3")]
    assert table.mask_paths.tolist() == [None, "b_mask.png", None] and table.vials.tolist() == [2, 0, 0]
    th = calibrate_table(table, "no-defect-accepted")
    # calibrate() itself rejects label -1: calibrate_table must drop the unknown row first
    assert th.regions == {"R0": pytest.approx(0.5)}
    assert th.per_region_stats["R0"].n_good == 1
