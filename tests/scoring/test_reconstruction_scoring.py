"""Patch scores (1-SSIM, map-max on the local 1-SSIM or |X - X_hat| map), min-max heatmap, and the uint8
serving function."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfad.families.resganad.scoring import score_images
from tfad.scoring.reconstruction import (
    PATCH_SCORES,
    SCORE_CHUNK,
    SCORE_MAPS,
    map_max_score,
    minmax_heatmap,
    patch_score,
    ssim_error_map,
    ssim_score,
)


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


def test_ssim_map_is_the_local_ssim_whose_mean_is_ssim() -> None:
    from tfad.losses.reconstruction import ssim, ssim_map

    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, (2, 30, 26, 3)).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    local = ssim_map(tf.constant(x), tf.constant(y)).numpy()
    assert local.shape == (2, 20, 16)  # the VALID region of the 11x11 windows, channels averaged
    np.testing.assert_allclose(local.mean(axis=(1, 2)), ssim(x, y).numpy(), atol=1e-6)
    for i, j in [(0, 0), (7, 12), (19, 15)]:  # map pixel (i, j) = the window over image rows i..i+10
        window = tf.image.ssim(x[:, i : i + 11, j : j + 11], y[:, i : i + 11, j : j + 11], 1.0).numpy()
        np.testing.assert_allclose(local[:, i, j], window, atol=1e-5)


def _small_defect_and_thin_error(size: int = 64, side: int = 12, depth: float = 0.4):
    """A flat grey patch with faint texture, and two reconstructions with the same total |error|: one
    wrong only in a ``side`` x ``side`` square (a small dark defect), one wrong by +-e at every pixel."""
    rng = np.random.default_rng(0)
    x = (0.5 + 0.01 * rng.standard_normal((size, size))).astype(np.float32)
    defect = x.copy()
    start = size // 2 - side // 2
    defect[start : start + side, start : start + side] -= depth
    e = depth * side * side / (size * size)
    thin = (x + e * rng.choice([-1.0, 1.0], (size, size))).astype(np.float32)
    assert np.abs(defect - x).sum() == pytest.approx(np.abs(thin - x).sum(), rel=1e-4)
    return tf.constant(np.stack([x, x])[..., None]), tf.constant(np.stack([defect, thin])[..., None])


def test_map_max_ranks_a_small_defect_above_the_same_error_spread_thin() -> None:
    # The reason for map-max: 1-SSIM is a mean over the patch, so the same amount of error counts as much
    # spread thin as concentrated in a defect; here it even ranks the thin error higher. The map-max scores
    # see the defect-sized blob.
    images, reconstructions = _small_defect_and_thin_error()
    one_minus_ssim = ssim_score(images, reconstructions).numpy()
    assert one_minus_ssim[0] < one_minus_ssim[1]  # 0.112 < 0.149: 1-SSIM prefers the thin error
    for score_map in SCORE_MAPS:
        defect, thin = map_max_score(images, reconstructions, score_map, 21).numpy()
        assert defect > 4 * thin, (score_map, defect, thin)  # measured 4.7x (ssim), 9.3x (abs-error)


def test_filter_size_changes_the_score_as_computed_by_hand() -> None:
    # |X - X_hat| = 0.5 on a 9x9 square in the middle of a 64x64 patch, 0.3 on a 5x5 square in its corner.
    # A window of side f >= 9 around the middle square averages 81 x 0.5 over f^2 pixels (for f <= 21 every
    # such window lies inside the patch and misses the corner square); one of side <= 9 fits inside it
    # (0.5). The corner square alone: the window at (0, 0) holds (f // 2 + 1)^2 in-image pixels.
    x = np.zeros((1, 64, 64, 1), np.float32)
    recon = x.copy()
    recon[0, 28:37, 28:37] = 0.5
    recon[0, :5, :5] = 0.3
    expected = {1: 0.5, 5: 0.5, 9: 0.5, 15: 0.5 * 81 / 15**2, 21: 0.5 * 81 / 21**2}
    for size, value in expected.items():
        score = map_max_score(tf.constant(x), tf.constant(recon), "abs-error", size).numpy()
        np.testing.assert_allclose(score, [value], rtol=1e-5, err_msg=f"filter {size}")
    corner = x.copy()
    corner[0, :5, :5] = 0.3
    score = map_max_score(tf.constant(x), tf.constant(corner), "abs-error", 21).numpy()
    np.testing.assert_allclose(score, [0.3 * 25 / 11**2], rtol=1e-5)  # not diluted by the padding


def test_map_max_on_the_ssim_map_is_the_filtered_local_ssim() -> None:
    from tfad.scoring.discriminative import mean_filter

    images, reconstructions = _small_defect_and_thin_error()
    local = 1.0 - ssim_error_map(images, reconstructions).numpy()  # the SSIM map
    for size in (1, 7, 21):
        filtered = mean_filter(tf.constant(1.0 - local[..., None]), size).numpy()
        expected = filtered.max(axis=(1, 2, 3))
        got = map_max_score(images, reconstructions, "ssim", size).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    # filter 1: the worst single window; a wider filter averages it with its neighbours
    assert (
        map_max_score(images, reconstructions, "ssim", 1).numpy()[0]
        > map_max_score(images, reconstructions, "ssim", 21).numpy()[0]
    )


def test_patch_score_choices() -> None:
    rng = np.random.default_rng(5)
    x = tf.constant(rng.uniform(0, 1, (3, 32, 32, 1)).astype(np.float32))
    y = tf.constant(rng.uniform(0, 1, (3, 32, 32, 1)).astype(np.float32))
    # ssim is today's 1-SSIM exactly (same function, same graph)
    np.testing.assert_array_equal(patch_score(x, y, "ssim").numpy(), ssim_score(x, y).numpy())
    np.testing.assert_array_equal(
        patch_score(x, y, "map-max", "abs-error", 5).numpy(), map_max_score(x, y, "abs-error", 5).numpy()
    )
    with pytest.raises(ValueError, match="patch_score"):
        patch_score(x, y, "mean")
    with pytest.raises(ValueError, match="score_map"):
        map_max_score(x, y, "l2")
    from tfad import schema

    assert schema.PATCH_SCORES == PATCH_SCORES  # the config's choices are the implemented ones
    assert schema.ResGANADConfig.__dataclass_fields__["score_map"].metadata["rule"].choices == SCORE_MAPS


def test_score_images_serves_the_configured_patch_score() -> None:
    images = np.random.default_rng(6).integers(0, 256, (2, 32, 32, 1), dtype=np.uint8)
    darker = lambda x, training=False: x * 0.5  # noqa: E731 - a reconstructor that is wrong everywhere
    default = score_images(darker, tf.constant(images))
    x = images.astype(np.float32) / 255.0
    np.testing.assert_array_equal(default["score"].numpy(), ssim_score(x, x * 0.5).numpy())
    out = score_images(darker, tf.constant(images), "map-max", "abs-error", 5)
    np.testing.assert_allclose(out["score"].numpy(), map_max_score(x, x * 0.5, "abs-error", 5).numpy())
    np.testing.assert_array_equal(out["heatmap"].numpy(), default["heatmap"].numpy())  # the heatmap stays
    np.testing.assert_array_equal(out["reconstruction"].numpy(), default["reconstruction"].numpy())


@pytest.mark.parametrize("count", [0, 1, SCORE_CHUNK, SCORE_CHUNK + 1, 2 * SCORE_CHUNK + 5])
def test_scores_in_chunks_are_the_per_image_scores_for_any_batch_size(count: int) -> None:
    # The score loops take SCORE_CHUNK images per iteration (the last chunk shorter): every image gets its
    # own score, in order, under the exported signature's unknown batch size, and an empty batch scores [].
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 1, (count, 24, 40, 1)).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1).astype(np.float32)
    y[:, 5:12, 9:20] = 0.0  # a defect-like blob, so the map-max scores differ from image to image
    signature = [tf.TensorSpec([None, 24, 40, 1], tf.float32)] * 2
    one_minus_ssim = tf.function(ssim_score, input_signature=signature)(x, y).numpy()
    map_max_fn = tf.function(lambda a, b: map_max_score(a, b, "ssim", 5), input_signature=signature)
    map_max = map_max_fn(x, y).numpy()
    assert one_minus_ssim.shape == map_max.shape == (count,)
    for i in range(count):
        expected = 1.0 - tf.image.ssim(x[i : i + 1], y[i : i + 1], max_val=1.0).numpy()
        np.testing.assert_allclose(one_minus_ssim[i], expected[0], atol=1e-5)
        alone = map_max_score(x[i : i + 1], y[i : i + 1], "ssim", 5)[0]
        np.testing.assert_allclose(map_max[i], alone, atol=1e-6)
