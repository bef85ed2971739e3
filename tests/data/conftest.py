"""Fixtures for tfad.data tests: small MVTec and line trees built in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_testutils import gradient, write_image


@pytest.fixture
def mvtec_root(tmp_path: Path) -> Path:
    """train/good (3 images: png, JPG, bmp, varying sizes), test/good (1), test/crack (2, masks)."""
    root = tmp_path / "mvtec"
    write_image(root / "train/good/000.png", gradient(40, 60, 1))
    write_image(root / "train/good/001.JPG", gradient(50, 50, 2))
    write_image(root / "train/good/002.bmp", gradient(30, 80, 3))
    write_image(root / "test/good/000.png", gradient(40, 60, 4))
    for i in range(2):
        write_image(root / f"test/crack/{i:03d}.png", gradient(40, 60, 10 + i))
        mask = np.zeros((40, 60), np.uint8)
        mask[10:20, 5 + i : 25 + i] = 255
        write_image(root / f"ground_truth/crack/{i:03d}_mask.png", mask)
    return root


@pytest.fixture
def line_root(tmp_path: Path) -> Path:
    """A line root: 2 splits, 2 runs x 1 product x 2 frames x 2 vials x 2 regions, masks, ROI, labels."""
    root = tmp_path / "line"
    root.mkdir()
    (root / "layout.yaml").write_text("regions: [R0, R1]\nframes: 2\nvials: 2\n")
    n = 0
    for split, product in (("train", "P1"), ("test", "P2")):
        for run in ("r0", "r1"):
            for frame in range(2):
                for vial in range(2):
                    for region in ("R0", "R1"):
                        name = f"f{frame}_v{vial}_{region}.png"
                        write_image(root / split / run / product / name, gradient(32, 32, n))
                        n += 1
    mask = np.zeros((32, 32), np.uint8)
    mask[4:9, 4:9] = 255
    write_image(root / "masks/test/r0/P2/f1_v0_R1.png", mask)
    write_image(root / "roi/R0.png", np.full((32, 32), 255, np.uint8))
    per_image_roi = np.zeros((32, 32), np.uint8)
    per_image_roi[:16] = 255
    write_image(root / "roi/test/r1/P2/f0_v1_R0.png", per_image_roi)
    (root / "labels.csv").write_text(
        "run_id,product_id,frame,vial,region,label,defect_type\n"
        "r0,P2,1,0,R1,1,particle\n"
        "r1,P2,0,0,R0,0,good\n"
    )
    return root
