"""benchmarks/acquisition_check.py: the simulated failed acquisitions, and on the real magnetic-tile images
(limits fitted on train/good, applied to test/) what must hold of the rule: no good image is stopped as
acquired, and a dark, flat or empty frame of every good image is."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import acquisition_check  # noqa: E402

from tfad.data.decode import pixel_statistics  # noqa: E402


def test_each_simulated_failure_changes_the_image_as_stated():
    rng = np.random.default_rng(3)
    images = rng.integers(60, 200, (3, 64, 64, 1), dtype=np.uint8)
    mean, std = pixel_statistics(images)
    off_mean, off_std = pixel_statistics(acquisition_check.simulate_failure(images, "lamp off"))
    assert (off_mean < 3).all() and (off_std < 2.5).all()
    quarter_mean, _ = pixel_statistics(acquisition_check.simulate_failure(images, "lamp at a quarter"))
    np.testing.assert_allclose(quarter_mean, mean / 4, atol=0.6)
    saturated = acquisition_check.simulate_failure(images, "saturated sensor")
    assert (saturated == np.clip(images.astype(int) * 4, 0, 255)).all()
    covered_mean, covered_std = pixel_statistics(acquisition_check.simulate_failure(images, "covered lens"))
    np.testing.assert_allclose(covered_mean, mean, atol=0.5)
    assert (covered_std < 2.2).all() and (std > 30).all()
    assert not acquisition_check.simulate_failure(images, "frame of zeros").any()
    with pytest.raises(ValueError, match="unknown failure"):
        acquisition_check.simulate_failure(images, "lens cap")


def test_on_real_images_the_check_stops_no_good_image_and_every_dark_or_flat_frame(magnetic_tile):
    result = acquisition_check.measure(str(magnetic_tile), "train", "test", 256, 1, seed=0)
    rows = {r["condition"]: r for r in result["rows"]}
    acquired = rows["as acquired"]
    assert acquired["good"] == 160 and acquired["good_stopped"] == 0
    for kind in ("lamp off", "covered lens", "frame of zeros"):
        assert rows[kind]["stopped"] == rows[kind]["failed_acquisitions"] == 160, kind
