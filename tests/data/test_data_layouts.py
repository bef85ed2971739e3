"""MVTec and line layouts on constructed trees, layout detection, and the errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from data_testutils import gradient, write_image

from tfad.data.errors import DataError
from tfad.data.layouts import detect_layout, list_splits, read_dataset, read_line, read_mvtec, summarize


# ------------------------------------------------------------------------------------------------ MVTec
def test_mvtec_train_and_test(mvtec_root: Path) -> None:
    train = read_mvtec(str(mvtec_root), "train")
    assert [Path(r.path).name for r in train] == ["000.png", "001.JPG", "002.bmp"]
    assert {(r.label, r.defect_type, r.region, r.mask_path) for r in train} == {(0, "good", "all", None)}
    test = read_mvtec(str(mvtec_root), "test")
    by_name = {(r.defect_type, Path(r.path).name): r for r in test}
    assert set(by_name) == {("crack", "000.png"), ("crack", "001.png"), ("good", "000.png")}
    crack = by_name[("crack", "001.png")]
    assert crack.label == 1
    assert crack.mask_path == str(mvtec_root / "ground_truth/crack/001_mask.png")
    assert crack.product_id == "crack/001"
    assert by_name[("good", "000.png")].mask_path is None


def test_mvtec_roi_per_image_wins_over_the_shared_one(mvtec_root: Path) -> None:
    assert all(r.roi_path is None for r in read_mvtec(str(mvtec_root), "train"))
    write_image(mvtec_root / "roi.png", np.full((20, 20), 255, np.uint8))
    write_image(mvtec_root / "roi/train/good/001.png", np.full((20, 20), 255, np.uint8))
    rois = {Path(r.path).name: r.roi_path for r in read_mvtec(str(mvtec_root), "train")}
    assert rois == {
        "000.png": str(mvtec_root / "roi.png"),
        "001.JPG": str(mvtec_root / "roi/train/good/001.png"),
        "002.bmp": str(mvtec_root / "roi.png"),
    }


def test_mvtec_train_with_defect_folder_and_other_extensions(mvtec_root: Path) -> None:
    write_image(mvtec_root / "train/crack/900.tif", gradient(20, 20))
    write_image(mvtec_root / "train/good/003.TIFF", gradient(20, 20))
    write_image(mvtec_root / "ground_truth/crack/900_mask.png", np.zeros((20, 20), np.uint8))
    (mvtec_root / "train/good/notes.txt").write_text("not an image")
    (mvtec_root / "train/good/.DS_Store").write_text("")
    train = read_mvtec(str(mvtec_root), "train")
    assert len(train) == 5
    assert [r.label for r in train if r.defect_type == "crack"] == [1]


def test_mvtec_errors_name_the_path(mvtec_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data set root not found.*nowhere"):
        read_mvtec(str(tmp_path / "nowhere"), "train")
    with pytest.raises(DataError, match="split 'validation' not found.*validation"):
        read_mvtec(str(mvtec_root), "validation")
    (mvtec_root / "ground_truth/crack/001_mask.png").unlink()
    with pytest.raises(DataError, match=r"mask missing for .*test/crack/001\.png.*001_mask\.png"):
        read_mvtec(str(mvtec_root), "test")
    empty = tmp_path / "empty_split"
    (empty / "train/good").mkdir(parents=True)
    with pytest.raises(DataError, match="contains no images"):
        read_mvtec(str(empty), "train")
    (empty / "train/stray.png").write_bytes(b"")
    with pytest.raises(DataError, match="holds files"):
        read_mvtec(str(empty), "train")


# ------------------------------------------------------------------------------------------------- line
def test_line_records_labels_masks_roi(line_root: Path) -> None:
    train = read_line(str(line_root), "train")
    assert len(train) == 16
    assert {r.product_id for r in train} == {"P1"} and {r.run_id for r in train} == {"r0", "r1"}
    assert all(r.label == 0 and r.defect_type == "good" for r in train)
    test = {(r.run_id, r.frame, r.vial, r.region): r for r in read_line(str(line_root), "test")}
    assert len(test) == 16
    defect = test[("r0", 1, 0, "R1")]
    assert (defect.label, defect.defect_type, defect.product_id) == (1, "particle", "P2")
    assert defect.mask_path == str(line_root / "masks/test/r0/P2/f1_v0_R1.png")
    assert sum(r.label for r in test.values()) == 1
    assert sum(r.mask_path is not None for r in test.values()) == 1
    # ROI: per-image file wins over the region file; a region without ROI file gets None.
    assert test[("r1", 0, 1, "R0")].roi_path == str(line_root / "roi/test/r1/P2/f0_v1_R0.png")
    assert test[("r0", 0, 0, "R0")].roi_path == str(line_root / "roi/R0.png")
    assert test[("r0", 0, 0, "R1")].roi_path is None


def test_line_jpeg_and_uppercase_extension(line_root: Path) -> None:
    path = line_root / "train/r0/P1/f0_v0_R0.png"
    path.unlink()
    write_image(line_root / "train/r0/P1/f0_v0_R0.JPG", gradient(32, 32))
    records = read_line(str(line_root), "train")
    assert any(r.path.endswith("f0_v0_R0.JPG") and r.frame == 0 and r.region == "R0" for r in records)


def _touch(rel: str):
    return lambda root: (root / rel).write_bytes(b"")


def _append_labels(text: str):
    return lambda root: (root / "labels.csv").open("a").write(text)


def _write_mask(rel: str):
    return lambda root: write_image(root / rel, np.zeros((4, 4), np.uint8))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_touch("train/r0/P1/frame0_v0_R0.png"), r"bad file name.*frame0_v0_R0\.png"),
        (_touch("train/r0/P1/f0_v0_R0.gif"), r"bad file name.*f0_v0_R0\.gif"),
        (_touch("train/r0/P1/f0_v0_R7.png"), r"region 'R7' is not in .*layout\.yaml"),
        (_touch("train/r0/P1/f5_v0_R0.png"), r"frame 5 is not allowed"),
        (_touch("train/r0/P1/f0_v0_R0.jpg"), r"two image files for the same patch"),
        (_touch("train/r0/stray.png"), r"unexpected file.*run folder"),
        (lambda root: (root / "train/r0/P1/sub").mkdir(), r"unexpected folder.*P1"),
        (
            _write_mask("masks/train/r0/P1/f9_v0_R0.png"),
            r"mask file\(s\) without an image.*masks/train/r0/P1/f9_v0_R0\.png",
        ),
        (
            _append_labels("r0,P1,1,1,R1,1,scratch\nr0,P1,9,0,R0,1,scratch\n"),
            r"labels\.csv' line 5: no image for run 'r0' product 'P1' frame 9",
        ),
        (_append_labels("r9,P9,0,0,R0,1,scratch\n"), r"line 4: run 'r9' product 'P9' exists in no split"),
        (_append_labels("r0,P1,0,0,R0,2,scratch\n"), r"line 4: label must be 0 or 1"),
        (_append_labels("r0,P1,0,0,R0,1,\n"), r"line 4: a defective row needs a defect_type"),
        (_append_labels("r0,P1,0,0,R0,1,a\nr0,P1,0,0,R0,1,b\n"), r"line 5: conflicts with line 4"),
        (lambda root: (root / "labels.csv").write_text("run_id,product_id\n"), r"missing column"),
        (lambda root: (root / "layout.yaml").write_text("frames: many\n"), r"'frames' must be a positive"),
    ],
)
def test_line_errors_name_the_problem(line_root: Path, mutate, message: str) -> None:
    mutate(line_root)
    with pytest.raises(DataError, match=message):
        read_line(str(line_root), "train")


def test_line_missing_and_empty_split(line_root: Path) -> None:
    with pytest.raises(DataError, match=r"line split 'calib' not found.*calib"):
        read_line(str(line_root), "calib")
    (line_root / "calib/r0").mkdir(parents=True)
    with pytest.raises(DataError, match=r"contains no images"):
        read_line(str(line_root), "calib")


def test_line_labels_split_column_disambiguates(line_root: Path) -> None:
    # The same run/product in two splits is ambiguous without a split column.
    shutil.copytree(line_root / "test/r0/P2", line_root / "train/r0/P2")
    with pytest.raises(DataError, match=r"exists in splits \['test', 'train'\]; add a 'split' column"):
        read_line(str(line_root), "test")
    (line_root / "labels.csv").write_text(
        "run_id,product_id,frame,vial,region,label,defect_type,split\nr0,P2,1,0,R1,1,particle,train\n"
    )
    assert sum(r.label for r in read_line(str(line_root), "train")) == 1
    assert sum(r.label for r in read_line(str(line_root), "test")) == 0


def test_line_incomplete_acquisition_warns(line_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    (line_root / "train/r1/P1/f1_v1_R1.png").unlink()
    assert len(read_line(str(line_root), "train")) == 15
    assert "do not have the 8 patches layout.yaml describes" in caplog.text


# ----------------------------------------------------------------------------------------------- detect
def test_detect_and_read_dataset(mvtec_root: Path, line_root: Path, tmp_path: Path) -> None:
    assert detect_layout(str(mvtec_root)) == "mvtec"
    assert detect_layout(str(line_root)) == "line"
    (line_root / "layout.yaml").unlink()
    (line_root / "labels.csv").unlink()
    assert detect_layout(str(line_root)) == "line"  # from the file names alone
    shutil.rmtree(mvtec_root / "ground_truth")
    assert detect_layout(str(mvtec_root)) == "mvtec"
    assert len(read_dataset(str(mvtec_root), "train")) == 3
    assert list_splits(str(line_root)) == ["test", "train"]
    (tmp_path / "odd/a/b").mkdir(parents=True)
    with pytest.raises(DataError, match="cannot detect the layout"):
        detect_layout(str(tmp_path / "odd"))
    with pytest.raises(ValueError, match="layout must be"):
        read_dataset(str(mvtec_root), "train", layout="coco")  # type: ignore[arg-type]


def test_summarize_counts(line_root: Path) -> None:
    summary = summarize(read_line(str(line_root), "test"))
    assert summary["images"] == 16
    assert summary["labels"] == {0: 15, 1: 1}
    assert summary["classes"] == {"good": 15, "particle": 1}
    assert summary["regions"] == {"R0": 8, "R1": 8}
    assert (summary["products"], summary["runs"], summary["with_mask"]) == (1, 2, 1)
