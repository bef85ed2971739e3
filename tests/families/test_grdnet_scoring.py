"""GRD-Net's configured patch score (``grdnet.patch_score``): map-max of A or 1-SSIM of the reconstruction."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfad.config import ConfigError, from_dict
from tfad.families import family
from tfad.families.grdnet.scoring import score_images
from tfad.scoring.reconstruction import ssim_score


class _Model:
    """Stands in for GRD-Net's inference model: a fixed anomaly map, a reconstruction darker by 20 %."""

    def __init__(self, anomaly_map: np.ndarray) -> None:
        self.anomaly_map = anomaly_map

    def __call__(self, x, training=False):
        n = tf.shape(x)[0]
        a = tf.tile(tf.constant(self.anomaly_map, tf.float32)[None, :, :, None], [n, 1, 1, 1])
        return {"reconstruction": 0.8 * x, "anomaly_map": a}


def _inputs():
    a = np.zeros((32, 32), np.float32)
    a[10:15, 10:15] = 0.9
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 1), dtype=np.uint8)
    return _Model(a), tf.constant(images), images.astype(np.float32) / 255.0


def test_map_max_is_the_default_and_ssim_scores_the_reconstruction() -> None:
    model, images, x = _inputs()
    default = score_images(model, images, filter_size=5)
    np.testing.assert_allclose(default["score"].numpy(), [0.9, 0.9], rtol=1e-5)  # a 5x5 blob of 0.9
    ssim = score_images(model, images, "ssim", 5)
    np.testing.assert_allclose(ssim["score"].numpy(), ssim_score(x, 0.8 * x).numpy(), rtol=1e-6)
    for key in ("heatmap", "reconstruction"):  # the other outputs do not depend on the score
        np.testing.assert_array_equal(ssim[key].numpy(), default[key].numpy())
    with pytest.raises(ValueError, match="inference ROI"):
        score_images(model, images, "ssim", 5, np.ones((32, 32), np.float32))
    with pytest.raises(ValueError, match="patch_score"):
        score_images(model, images, "mean", 5)


def test_family_score_function_and_manifest_block_follow_the_config() -> None:
    model, images, x = _inputs()
    entry = family("grdnet")
    mapmax = from_dict({"model": {"family": "grdnet"}, "grdnet": {"score_filter_size": 5}})
    ssim = from_dict({"model": {"family": "grdnet"}, "grdnet": {"patch_score": "ssim"}})
    np.testing.assert_allclose(entry.score_function(model, mapmax)(images)["score"].numpy(), 0.9, rtol=1e-5)
    np.testing.assert_allclose(
        entry.score_function(model, ssim)(images)["score"].numpy(), ssim_score(x, 0.8 * x).numpy(), rtol=1e-6
    )
    block = entry.score_description(mapmax)
    assert block["patch_score"] == "map-max" and block["score_filter_size"] == 5
    assert block["name"] == "max of the 5x5 mean-filtered anomaly map" and block["higher_is_anomalous"]
    block = entry.score_description(ssim)
    assert block["patch_score"] == "ssim" and "score_filter_size" not in block
    assert block["name"].startswith("1-ssim") and block["higher_is_anomalous"]


def test_ssim_with_an_inference_roi_is_a_config_error(tmp_path) -> None:
    roi = tmp_path / "roi.png"
    roi.write_bytes(b"")  # existence is checked when fit starts; the combination before
    with pytest.raises(ConfigError, match=r"^grdnet.patch_score: ssim .*inference_roi"):
        from_dict(
            {"model": {"family": "grdnet"}, "grdnet": {"patch_score": "ssim", "inference_roi": str(roi)}}
        )
    from_dict({"model": {"family": "grdnet"}, "grdnet": {"inference_roi": str(roi)}})  # map-max takes it
