"""ResGANAD losses on constructed inputs (known values)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfad.losses import reconstruction as losses
from tfad.synthesis.anomalies import AnomalySynthesisConfig, AnomalySynthesizer


def _batch(n: int = 3, size: int = 48, channels: int = 1, seed: int = 0) -> tf.Tensor:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 1, (n, size // 4, size // 4, channels)).astype(np.float32)
    return tf.image.resize(tf.constant(base), (size, size)) + 0.05 * tf.constant(
        rng.normal(size=(n, size, size, channels)).astype(np.float32)
    )


def test_ssim_matches_tf_image_ssim() -> None:
    x, y = _batch(seed=1), _batch(seed=2)
    for a, b in ((x, y), (x, x + 0.1 * y)):
        ours = losses.ssim(a, b).numpy()
        reference = tf.image.ssim(a, b, max_val=1.0, filter_size=11, filter_sigma=1.5).numpy()
        np.testing.assert_allclose(ours, reference, atol=1e-4)
    np.testing.assert_allclose(losses.ssim(x, x).numpy(), 1.0, atol=1e-5)


@pytest.mark.parametrize("height, width", [(256, 256), (27, 45), (11, 16)])
def test_ssim_blocked_filter_matches_tf_image_ssim_at_any_size(height: int, width: int) -> None:
    # The blocked filter pads to whole blocks of 16: sizes that are not multiples must match too, and the
    # served 256x256 patch within the exported tolerance (1e-5).
    rng = np.random.default_rng(7)
    x = tf.constant(rng.uniform(0, 1, (2, height, width, 1)).astype(np.float32))
    y = tf.clip_by_value(x + 0.1 * tf.constant(rng.normal(size=x.shape).astype(np.float32)), 0, 1)
    reference = tf.image.ssim(x, y, max_val=1.0, filter_size=11, filter_sigma=1.5).numpy()
    np.testing.assert_allclose(losses.ssim(x, y).numpy(), reference, atol=1e-5)
    assert losses.ssim_map(x, y).shape == (2, height - 10, width - 10)


def test_ssim_gradient_matches_tf_image_ssim() -> None:
    # Training back-propagates through the blocked filter (contextual loss).
    x, y = _batch(n=2, size=40, seed=8), _batch(n=2, size=40, seed=9)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(y)
        ours = tf.reduce_sum(losses.ssim(x, y))
        reference = tf.reduce_sum(tf.image.ssim(x, y, max_val=1.0, filter_size=11, filter_sigma=1.5))
    np.testing.assert_allclose(tape.gradient(ours, y).numpy(), tape.gradient(reference, y).numpy(), atol=1e-5)


def test_ssim_rgb_averages_channels() -> None:
    x, y = _batch(channels=3, seed=3), _batch(channels=3, seed=4)
    reference = tf.image.ssim(x, y, max_val=1.0).numpy()
    np.testing.assert_allclose(losses.ssim(x, y).numpy(), reference, atol=1e-4)


def test_noise_loss_is_zero_when_reconstruction_is_the_clean_image() -> None:
    synth = AnomalySynthesizer(AnomalySynthesisConfig(probability=1.0))
    clean = _batch(n=4, seed=5)
    outs = [synth(clean[i], tf.constant([1, i], tf.int64)) for i in range(4)]
    batch = {k: tf.stack([o[k] for o in outs]) for k in ("image", "target", "noise_mask", "noise", "beta")}
    assert batch["noise_mask"].numpy().sum() > 0
    zero = losses.noise_loss(
        batch["target"], batch["image"], batch["noise_mask"], batch["noise"], batch["beta"]
    )
    assert abs(float(zero)) < 1e-10
    # copying the anomaly (reconstruction = perturbed input) is penalised
    copied = losses.noise_loss(
        batch["image"], batch["image"], batch["noise_mask"], batch["noise"], batch["beta"]
    )
    assert float(copied) > 1e-4
    # outside the mask the reconstruction is free (that is L_con's job)
    outside_changed = batch["target"] + (1 - batch["noise_mask"]) * 0.3
    free = losses.noise_loss(
        outside_changed, batch["image"], batch["noise_mask"], batch["noise"], batch["beta"]
    )
    assert abs(float(free)) < 1e-10


def test_noise_loss_hand_computed() -> None:
    # one pixel: M=1, X_hat=0.5, X*=0.8, beta=0.5, N=0.6 -> (|0.25 - 0.8| - 0.3)^2 = 0.0625
    one = tf.ones([1, 1, 1, 1])
    value = losses.noise_loss(0.5 * one, 0.8 * one, one, 0.6 * one, 0.5 * tf.ones([1, 1, 1, 1]))
    assert math.isclose(float(value), 0.0625, rel_tol=1e-6)


def test_huber_matches_keras() -> None:
    x, y = _batch(seed=6) * 3, _batch(seed=7) * 3
    expected = keras.losses.Huber(delta=1.0)(tf.reshape(x, [-1]), tf.reshape(y, [-1]))
    np.testing.assert_allclose(float(losses.huber(x, y)), float(expected), rtol=1e-5)


def test_contextual_loss_weights() -> None:
    x, y = _batch(seed=8), _batch(seed=9)
    assert abs(float(losses.contextual_loss(x, x))) < 1e-5
    expected = 2.0 * float(losses.huber(x, y)) + 1.0 * float(tf.reduce_mean(1 - losses.ssim(x, y)))
    np.testing.assert_allclose(float(losses.contextual_loss(x, y, 2.0, 1.0)), expected, rtol=1e-5)


def test_adversarial_latent_and_critic_losses() -> None:
    a = tf.constant([[1.0, 2.0], [3.0, 4.0]])
    assert float(losses.feature_matching_loss(a, a + 2.0)) == 4.0
    assert float(losses.latent_loss(a, a - 1.0)) == 1.0
    # logits 0: each BCE term is ln 2
    assert math.isclose(
        float(losses.critic_loss(tf.zeros([4, 1]), tf.zeros([4, 1]))), 2 * math.log(2), rel_tol=1e-6
    )
    # a confident, correct critic has a small loss; a fooled one a large loss
    assert float(losses.critic_loss(tf.fill([4, 1], 10.0), tf.fill([4, 1], -10.0))) < 1e-3
    assert float(losses.critic_loss(tf.fill([4, 1], -10.0), tf.fill([4, 1], 10.0))) > 19
