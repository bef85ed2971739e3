"""The domain-shift transforms of ``tfad eval --shift`` (tfad.data.shift): identity at strength 0, the stated
magnitudes at strength 1, masks moved with the image, draws seeded per image (issue 16, item 4)."""

from __future__ import annotations

import numpy as np
import pytest

from tfad.data.shift import KINDS, Shift, apply_shift, parse_shifts


def _images(n: int = 4, size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(40, 216, size=(n, size, size, 1), dtype=np.uint8)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_strength_is_the_identity(kind: str) -> None:
    images, masks = _images(), np.zeros((4, 64, 64), np.float32)
    out, out_masks = apply_shift(images, masks, np.arange(4), Shift(kind, 0.0))
    np.testing.assert_array_equal(out, images)
    np.testing.assert_array_equal(out_masks, masks)


@pytest.mark.parametrize("kind", KINDS)
def test_draws_are_seeded_per_image_not_per_batch(kind: str) -> None:
    images = _images(6)
    whole, _ = apply_shift(images, None, np.arange(6), Shift(kind, 0.7), seed=3)
    second_half, _ = apply_shift(images[3:], None, np.arange(3, 6), Shift(kind, 0.7), seed=3)
    np.testing.assert_array_equal(whole[3:], second_half)
    other_seed, _ = apply_shift(images, None, np.arange(6), Shift(kind, 0.7), seed=4)
    assert not np.array_equal(whole, other_seed) or kind == "scale"  # scale has no random draw
    assert not np.array_equal(whole, images)


def test_noise_has_the_stated_sigma() -> None:
    flat = np.full((8, 128, 128, 1), 128, np.uint8)  # mid-grey: clipping never bites at sigma 25.5
    for strength in (0.5, 1.0):
        out, _ = apply_shift(flat, None, np.arange(8), Shift("noise", strength))
        residual = out.astype(np.float64) - 128.0
        assert residual.std() == pytest.approx(0.1 * 255.0 * strength, rel=0.01)
        assert abs(residual.mean()) < 0.2


def test_brightness_and_contrast_stay_inside_the_stated_ranges() -> None:
    images = _images(32)
    out, _ = apply_shift(images, None, np.arange(32), Shift("brightness", 1.0))
    offsets = out.reshape(32, -1).mean(1) - images.reshape(32, -1).mean(1)
    ratios = out.reshape(32, -1).std(1) / images.reshape(32, -1).std(1)
    assert np.abs(offsets).max() <= 0.2 * 255.0 + 1.0 and np.abs(offsets).max() > 0.1 * 255.0
    assert 0.7 - 0.01 <= ratios.min() and ratios.max() <= 1.3 + 0.01 and ratios.max() - ratios.min() > 0.2


def test_scale_removes_detail_finer_than_the_reduced_resolution() -> None:
    checker = (np.indices((64, 64)).sum(0) % 2 * 200 + 20).astype(np.uint8)[None, ..., None]
    out, _ = apply_shift(checker, None, np.arange(1), Shift("scale", 1.0))
    assert checker.std() > 99 and out.std() < 5  # 1-pixel detail averaged away at 1/4 of the side
    assert abs(float(out.mean()) - float(checker.mean())) < 2
    flat = np.full((1, 64, 64, 1), 77, np.uint8)
    np.testing.assert_array_equal(apply_shift(flat, None, np.arange(1), Shift("scale", 1.0))[0], flat)


def test_affine_moves_the_mask_with_the_image() -> None:
    images = np.full((16, 64, 64, 1), 30, np.uint8)
    masks = np.zeros((16, 64, 64), np.float32)
    images[:, 24:40, 20:36] = 220  # a bright defect and its mask
    masks[:, 24:40, 20:36] = 1.0
    out, out_masks = apply_shift(images, masks, np.arange(16), Shift("affine", 1.0))
    moved = [not np.array_equal(out_masks[i], masks[i]) for i in range(16)]
    assert sum(moved) >= 14
    assert set(np.unique(out_masks)) <= {0.0, 1.0}  # nearest neighbour keeps the mask binary
    inside = out[..., 0][out_masks == 1]
    outside = out[..., 0][out_masks == 0]
    assert inside.mean() > 200 and outside.mean() < 40  # the mask still covers the defect


def test_bad_shifts_are_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="unknown shift kind 'blur'"):
        Shift("blur", 0.5)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        Shift("noise", 1.5)
    with pytest.raises(ValueError, match="'x' is not a number"):
        parse_shifts("noise", "0.5,x")
    assert [s.name for s in parse_shifts("all", "0.5")] == [f"{k}@0.5" for k in KINDS]
    with pytest.raises(ValueError, match="uint8 images"):
        apply_shift(np.zeros((1, 8, 8, 1), np.float32), None, np.arange(1), Shift("noise", 0.5))
