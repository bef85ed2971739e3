"""ResGANAD's configured patch score: the family's score function and the manifest's score block."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfad.config import from_dict
from tfad.families import family
from tfad.scoring.reconstruction import map_max_score, ssim_score


def _wrong_corner(x, training=False):
    """A reconstructor that is exact but for a dark 6x6 corner."""
    mask = np.ones((1, 32, 32, 1), np.float32)
    mask[:, :6, :6] = 0.0
    return x * tf.constant(mask)


def test_defaults_are_todays_scores() -> None:
    config = from_dict({})
    assert config.resganad.patch_score == "ssim"
    assert (config.resganad.score_map, config.resganad.score_filter_size) == ("ssim", 21)
    assert from_dict({"model": {"family": "grdnet"}}).grdnet.patch_score == "map-max"
    block = family("resganad").score_description(config)
    assert block == {
        "name": "1-ssim",
        "patch_score": "ssim",
        "higher_is_anomalous": True,
        "heatmap": "per-image min-max normalised |X - X_hat|",
    }


@pytest.mark.parametrize(
    ("section", "name"),
    [
        ({}, "1-ssim"),
        ({"patch_score": "map-max"}, "max of the 21x21 mean-filtered local 1-SSIM map"),
        (
            {"patch_score": "map-max", "score_map": "abs-error", "score_filter_size": 5},
            "max of the 5x5 mean-filtered |X - X_hat| map",
        ),
    ],
)
def test_score_function_and_manifest_block_follow_the_config(section: dict, name: str) -> None:
    config = from_dict({"resganad": section})
    entry = family("resganad")
    block = entry.score_description(config)
    assert block["name"] == name and block["patch_score"] == config.resganad.patch_score
    assert block["higher_is_anomalous"] is True
    if config.resganad.patch_score == "map-max":
        assert block["score_map"] == config.resganad.score_map
        assert block["score_filter_size"] == config.resganad.score_filter_size
    images = np.random.default_rng(0).integers(30, 256, (2, 32, 32, 1), dtype=np.uint8)
    out = entry.score_function(_wrong_corner, config)(tf.constant(images))
    x = tf.constant(images.astype(np.float32) / 255.0)
    r = config.resganad
    expected = (
        ssim_score(x, _wrong_corner(x))
        if r.patch_score == "ssim"
        else map_max_score(x, _wrong_corner(x), r.score_map, r.score_filter_size)
    )
    np.testing.assert_allclose(out["score"].numpy(), expected.numpy(), rtol=1e-6)
    assert out["heatmap"].shape == (2, 32, 32)
