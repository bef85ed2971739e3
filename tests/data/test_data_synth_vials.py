"""The synthetic vial-line generator: layout, determinism, masks vs labels, visibility, nuisance."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from tfad.data.contact_sheet import make_contact_sheet
from tfad.data.errors import DataError
from tfad.data.layouts import detect_layout, read_line
from tfad.data.synth_vials import REGIONS, generate_synth_vials


def tree_digest(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


SMALL = dict(n_products=2, n_runs=2, frames=2, defect_rate=1.0, image_size=128, n_eval_products=2)


@pytest.fixture(scope="module")
def small_line(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "vials"
    summary = generate_synth_vials(str(root), seed=5, **SMALL)
    assert summary.products == {"train": 2, "calib": 2, "test": 2}
    assert summary.patches == {"train": 160, "calib": 160, "test": 160}
    assert summary.defective_products == {"train": 0, "calib": 2, "test": 2}
    return root


def test_layout_counts_and_config(small_line: Path) -> None:
    assert detect_layout(str(small_line)) == "line"
    config = yaml.safe_load((small_line / "layout.yaml").read_text())
    assert config["regions"] == list(REGIONS) and config["frames"] == 2 and config["vials"] == 5
    train = read_line(str(small_line), "train")
    assert len(train) == 2 * 2 * 2 * 5 * 4 and all(r.label == 0 and r.mask_path is None for r in train)
    assert {r.run_id for r in train} == {"r00", "r01"} and {r.product_id for r in train} == {"P0000", "P0001"}
    assert all(r.roi_path and r.roi_path.endswith(f"roi/{r.region}.png") for r in train)
    products = {s: {r.product_id for r in read_line(str(small_line), s)} for s in ("train", "calib", "test")}
    assert not (products["train"] & products["calib"]) and not (products["calib"] & products["test"])
    image = cv2.imread(train[0].path, cv2.IMREAD_UNCHANGED)
    assert image.shape == (128, 128) and image.dtype == np.uint8


def test_masks_match_labels_and_defects_persist_across_runs(small_line: Path) -> None:
    for split in ("calib", "test"):
        records = read_line(str(small_line), split)
        defective = [r for r in records if r.label == 1]
        assert defective, split
        for r in records:
            assert (r.mask_path is not None) == (r.label == 1), r.path
            if r.mask_path:
                mask = cv2.imread(r.mask_path, cv2.IMREAD_GRAYSCALE)
                assert mask.shape == (128, 128) and set(np.unique(mask)) == {0, 255}
                assert r.defect_type in ("black_spot", "particle", "scratch")
        # A defective product shows its defect in every run and frame, in the same vial and region.
        for product in {r.product_id for r in defective}:
            places = {(r.vial, r.region) for r in defective if r.product_id == product}
            for vial, region in places:
                hits = {
                    (r.run_id, r.frame)
                    for r in defective
                    if (r.product_id, r.vial, r.region) == (product, vial, region)
                }
                assert hits == {("r00", 0), ("r00", 1), ("r01", 0), ("r01", 1)}


def test_same_seed_same_bytes_other_seed_differs(small_line: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_synth_vials(str(again), seed=5, **SMALL)
    assert tree_digest(again) == tree_digest(small_line)
    other = tmp_path / "other"
    generate_synth_vials(str(other), seed=6, **SMALL)
    a, b = tree_digest(small_line), tree_digest(other)
    same_patch = [k for k in a.keys() & b.keys() if k.endswith("f0_v0_R2.png")]
    assert same_patch and all(a[k] != b[k] for k in same_patch)
    with pytest.raises(DataError, match="not empty"):
        generate_synth_vials(str(other), n_products=1)


def test_defects_visible_and_nuisance_defeats_pixel_difference(tmp_path: Path) -> None:
    root = tmp_path / "full"
    generate_synth_vials(
        str(root), n_products=1, n_runs=2, frames=1, defect_rate=1.0, seed=11, n_eval_products=3
    )
    records = read_line(str(root), "test") + read_line(str(root), "calib")
    contrasts = []
    for r in (r for r in records if r.label == 1):
        image = cv2.imread(r.path, cv2.IMREAD_GRAYSCALE).astype(float)
        mask = cv2.imread(r.mask_path, cv2.IMREAD_GRAYSCALE) > 0
        ring = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~mask
        contrasts.append(image[ring].mean() - image[mask].mean())
    assert contrasts and min(contrasts) > 20, contrasts  # defects are clearly darker than around them
    # The same good product in two runs: lighting and shift change pixels by more than a defect does.
    train = {(r.run_id, r.vial, r.region): r for r in read_line(str(root), "train")}
    diffs = []
    for (run, vial, region), r in train.items():
        if run == "r00":
            first = cv2.imread(r.path, cv2.IMREAD_GRAYSCALE).astype(float)
            second = cv2.imread(train[("r01", vial, region)].path, cv2.IMREAD_GRAYSCALE).astype(float)
            diffs.append(np.abs(first - second).max())
    assert min(diffs) > max(contrasts), (min(diffs), max(contrasts))


def test_contact_sheet(small_line: Path, tmp_path: Path) -> None:
    out = make_contact_sheet(str(small_line), str(tmp_path / "sheet.png"), columns=4, tile=64)
    sheet = cv2.imread(out, cv2.IMREAD_COLOR)
    assert sheet.shape[0] == 18 + 4 * 64 and sheet.shape[1] == 4 * 68 - 4
    red = (sheet[:, :, 2] > 200) & (sheet[:, :, 1] < 60) & (sheet[:, :, 0] < 60)
    assert red.any()  # mask outlines drawn


def test_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="defect_rate"):
        generate_synth_vials(str(tmp_path / "x"), defect_rate=1.5)
    with pytest.raises(ValueError, match=">= 1"):
        generate_synth_vials(str(tmp_path / "x"), n_products=0)
