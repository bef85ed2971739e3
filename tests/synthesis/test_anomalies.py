"""P_q (Eq. 8.11): blend formula, probability q, mask/noise support, determinism, texture source."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfad.synthesis.anomalies import AnomalySynthesisConfig, AnomalySynthesizer
from tfad.synthesis.perlin import perlin_mask


def _image(size: int = 64, channels: int = 1, seed: int = 0) -> tf.Tensor:
    rng = np.random.default_rng(seed)
    return tf.constant(rng.uniform(0.2, 0.8, (size, size, channels)).astype(np.float32))


def _seed(i: int) -> tf.Tensor:
    return tf.constant([7, i], tf.int64)


@pytest.mark.parametrize("channels", [1, 3])
def test_blend_formula_and_support(channels: int) -> None:
    synth = AnomalySynthesizer(AnomalySynthesisConfig(probability=1.0))
    x = _image(channels=channels)
    seen_mask = False
    for i in range(6):
        out = synth(x, _seed(i))
        m, n, beta = out["noise_mask"].numpy(), out["noise"].numpy(), out["beta"].numpy()
        assert out["applied"].numpy()
        assert set(np.unique(m)) <= {0.0, 1.0}, "M must be binary"
        assert 0.5 <= beta.item() <= 1.0
        expected = (1 - m) * x.numpy() + (1 - beta) * m * x.numpy() + beta * n
        np.testing.assert_allclose(out["image"].numpy(), expected, atol=1e-6)
        np.testing.assert_array_equal(out["target"].numpy(), x.numpy())
        # N lives exactly on M's support (random pixels are > 0 almost surely)
        assert np.all(n[np.broadcast_to(m, n.shape) == 0] == 0)
        inside = n[np.broadcast_to(m, n.shape) == 1]
        assert inside.size == 0 or (inside > 0).mean() > 0.99
        # outside the mask the image is untouched; inside it changed
        outside = np.broadcast_to(m, n.shape) == 0
        np.testing.assert_array_equal(out["image"].numpy()[outside], x.numpy()[outside])
        seen_mask |= m.sum() > 0
    assert seen_mask, "six draws with q=1 never produced a non-empty Perlin mask"


def test_probability_q_is_respected() -> None:
    q, draws = 0.3, 1500
    synth = AnomalySynthesizer(AnomalySynthesisConfig(probability=q))
    fn = tf.function(lambda s: synth(_image(32), s)["applied"])
    applied = np.array([bool(fn(_seed(i))) for i in range(draws)])
    sigma = np.sqrt(q * (1 - q) / draws)
    assert abs(applied.mean() - q) < 4 * sigma, applied.mean()


@pytest.mark.parametrize("q", [0.0, 1.0])
def test_probability_extremes(q: float) -> None:
    synth = AnomalySynthesizer(AnomalySynthesisConfig(probability=q))
    x = _image(32)
    for i in range(20):
        out = synth(x, _seed(i))
        assert bool(out["applied"]) is (q == 1.0)
        if q == 0.0:
            np.testing.assert_array_equal(out["image"].numpy(), x.numpy())
            assert out["noise_mask"].numpy().sum() == 0 and out["noise"].numpy().sum() == 0


def test_seeded_and_reproducible() -> None:
    synth = AnomalySynthesizer(AnomalySynthesisConfig(probability=1.0))
    x = _image()
    a, b, c = synth(x, _seed(3)), synth(x, _seed(3)), synth(x, _seed(4))
    np.testing.assert_array_equal(a["image"].numpy(), b["image"].numpy())
    assert not np.array_equal(a["noise_mask"].numpy(), c["noise_mask"].numpy())


def test_texture_source(tmp_path) -> None:
    import cv2

    texture = np.full((20, 20), 200, np.uint8)
    texture[:, 10:] = 50
    cv2.imwrite(str(tmp_path / "t.png"), texture)
    synth = AnomalySynthesizer(AnomalySynthesisConfig(probability=1.0), [str(tmp_path / "t.png")])
    x = _image(40)
    for i in range(10):
        out = synth(x, _seed(i))
        m, n = out["noise_mask"].numpy()[..., 0], out["noise"].numpy()[..., 0]
        if m.sum() == 0:
            continue
        expected = tf.image.resize(tf.constant(texture[..., None] / 255.0, tf.float32), (40, 40)).numpy()[
            ..., 0
        ]
        np.testing.assert_allclose(n[m == 1], expected[m == 1], atol=1e-5)
        return
    pytest.fail("no non-empty mask in 10 draws")


def test_perlin_mask_scales_and_coverage() -> None:
    coverages = []
    for i in range(30):
        m = perlin_mask(64, 64, _seed(i)).numpy()
        assert m.shape == (64, 64, 1) and set(np.unique(m)) <= {0.0, 1.0}
        coverages.append(m.mean())
    coverages = np.array(coverages)
    # threshold 0.5 on Perlin noise: masks are partial blobs, neither always empty nor full
    assert 0.0 < coverages.mean() < 0.5 and (coverages > 0).sum() >= 10


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="probability"):
        AnomalySynthesizer(AnomalySynthesisConfig(probability=1.5))
    with pytest.raises(ValueError, match="beta"):
        AnomalySynthesizer(AnomalySynthesisConfig(beta_min=0.9, beta_max=0.5))
