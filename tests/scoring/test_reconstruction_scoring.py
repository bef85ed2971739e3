"""Patch score 1-SSIM, min-max heatmap, and the uint8 serving function."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfad.families.resganad.scoring import score_images
from tfad.scoring.reconstruction import minmax_heatmap, ssim_score


def test_score_zero_for_perfect_reconstruction_and_grows_with_damage() -> None:
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 1, (1, 32, 32, 1)).astype(np.float32))
    damaged = x.numpy().copy()
    damaged[0, 8:16, 8:16] = 0.0
    worse = x.numpy().copy()
    worse[0, 4:28, 4:28] = 0.0
    scores = ssim_score(
        tf.concat([x, x, x], 0), tf.constant(np.concatenate([x.numpy(), damaged, worse]))
    ).numpy()
    assert abs(scores[0]) < 1e-5 and 0 < scores[1] < scores[2]


def test_minmax_heatmap_localises_and_normalises() -> None:
    x = np.full((2, 16, 16, 1), 0.5, np.float32)
    recon = x.copy()
    recon[0, 4:6, 10:12] = 0.9  # the only difference in image 0
    recon[1] += 0.1  # constant difference: no structure, must not divide by zero
    heat = minmax_heatmap(tf.constant(x), tf.constant(recon)).numpy()
    assert heat.shape == (2, 16, 16)
    assert heat[0].max() == 1.0 and heat[0].min() == 0.0
    assert np.all(heat[0][4:6, 10:12] == 1.0) and heat[0].sum() == 4.0
    assert np.all(heat[1] == 0.0)


def test_score_images_takes_uint8_and_scales() -> None:
    identity = lambda images, training=False: images  # noqa: E731 - a perfect reconstructor
    images = np.random.default_rng(1).integers(0, 256, (3, 24, 24, 1), dtype=np.uint8)
    out = score_images(identity, tf.constant(images))
    assert set(out) == {"score", "heatmap", "reconstruction"}
    np.testing.assert_allclose(out["score"].numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(out["reconstruction"].numpy(), images / 255.0, atol=1e-6)
    assert out["heatmap"].shape == (3, 24, 24)
