"""Real data: the magnetic-tile set in the MVTec layout (../shared absent: skipped; failed if CI=true)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfad.data.decode import load_images
from tfad.data.layouts import read_dataset
from tfad.data.pipeline import make_dataset
from tfad.data.records import fingerprint

pytestmark = pytest.mark.realdata


def test_reads_magnetic_tile_and_streams_batches(magnetic_tile: Path) -> None:
    train = read_dataset(str(magnetic_tile), "train")
    test = read_dataset(str(magnetic_tile), "test")
    assert len(train) == 640 and {r.defect_type for r in train} == {"good"}
    counts = {t: sum(r.defect_type == t for r in test) for t in ("good", "blowhole", "crack", "break")}
    assert counts == {"good": 160, "blowhole": 115, "crack": 57, "break": 85}
    assert all((r.mask_path is not None) == (r.label == 1) for r in test)
    assert fingerprint(train).startswith("sha256:")

    ds = make_dataset(train, (256, 256), channels=1, batch_size=16, shuffle=True, seed=0, repeat=True)
    for batch in ds.take(3):
        assert batch["image"].shape == (16, 256, 256, 1)
        image = batch["image"].numpy()
        assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.01
    assert ds.corrupt_counter.count == 0

    defective = [r for r in test if r.label == 1][:8]
    batch = next(iter(make_dataset(defective, (256, 256), batch_size=8, with_masks=True)))
    masks = batch["mask"].numpy()
    assert set(np.unique(masks)) == {0.0, 1.0}
    assert all(m.sum() > 0 for m in masks)  # every defect keeps some mask pixels after resizing
    rgb = load_images(defective[:2], (128, 96), 3)
    assert rgb.shape == (2, 128, 96, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[..., 0], rgb[..., 1])  # grey JPEGs replicated to RGB
