"""Synthetic anomalies P_q (methods.md, Eq. 8.11; DRAEM-style).

With probability ``q`` a clean image X is perturbed inside a binary Perlin mask M:

    N  = M * source                       (random pixels, or a texture image)
    X* = (1 - M) * X + (1 - beta) * M * X + beta * N,   beta ~ U(beta_min, beta_max)

otherwise X* = X and M = N = 0. Everything is a stateless TensorFlow op keyed by a per-sample seed, so
the same seed gives the same anomaly on every run and the function runs inside a `tf.data` map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import tensorflow as tf

from tfad.synthesis.perlin import perlin_mask


@dataclass(frozen=True)
class AnomalySynthesisConfig:
    """Parameters of P_q (defaults from methods.md)."""

    probability: float = 0.75  # q
    beta_min: float = 0.5
    beta_max: float = 1.0
    max_scale_exponent: int = 6  # Perlin scale 2^a x 2^b, a, b ~ randint(0, 6)
    threshold: float = 0.5

    def validate(self) -> None:
        """Raise ValueError naming the bad parameter."""
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"synthesis.probability must be in [0, 1], got {self.probability}")
        if not 0.0 <= self.beta_min <= self.beta_max <= 1.0:
            raise ValueError(
                f"synthesis.beta_min/beta_max must satisfy 0 <= min <= max <= 1, "
                f"got {self.beta_min}, {self.beta_max}"
            )
        if not 1 <= self.max_scale_exponent <= 10:
            raise ValueError(
                f"synthesis.max_scale_exponent must be in [1, 10], got {self.max_scale_exponent}"
            )


class AnomalySynthesizer:
    """Applies P_q to single images ``[H, W, C]`` float32 in [0, 1].

    Args:
        config: the P_q parameters.
        texture_paths: optional anomaly-source images (PNG/JPEG/BMP/GIF); when given, the source of N is a
            randomly chosen texture resized to the image size instead of random pixel values.
    """

    def __init__(self, config: AnomalySynthesisConfig, texture_paths: Sequence[str] | None = None) -> None:
        config.validate()
        self.config = config
        self._textures = tf.constant(list(texture_paths), tf.string) if texture_paths else None

    def _source(self, shape: tf.Tensor, channels: int, seed: tf.Tensor) -> tf.Tensor:
        if self._textures is None:
            return tf.random.stateless_uniform(shape, seed=seed)
        index = tf.random.stateless_uniform(
            [], seed=seed, minval=0, maxval=tf.shape(self._textures)[0], dtype=tf.int32
        )
        texture = tf.io.decode_image(
            tf.io.read_file(self._textures[index]), channels=channels, expand_animations=False
        )
        texture = tf.image.convert_image_dtype(texture, tf.float32)
        return tf.image.resize(texture, shape[:2])

    def __call__(self, image: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        """Perturb one image.

        Args:
            image: clean image X, ``[H, W, C]`` float32 in [0, 1] with static H, W, C.
            seed: ``[2]`` integer tensor; the result is a pure function of (image, seed).

        Returns:
            ``{"image": X*, "target": X, "noise_mask": M [H,W,1], "noise": N [H,W,C], "beta": [1,1,1],
            "applied": bool []}``; ``applied`` is the q-draw (a drawn Perlin mask can still be empty).
        """
        cfg = self.config
        height, width, channels = image.shape
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
        apply = tf.random.stateless_uniform([], seed=seeds[0]) < cfg.probability
        mask = perlin_mask(height, width, seeds[1], cfg.max_scale_exponent, cfg.threshold)
        mask = mask * tf.cast(apply, tf.float32)
        beta = tf.random.stateless_uniform([1, 1, 1], seed=seeds[2], minval=cfg.beta_min, maxval=cfg.beta_max)
        noise = mask * self._source(tf.shape(image), channels, seeds[3])
        perturbed = (1.0 - mask) * image + (1.0 - beta) * mask * image + beta * noise
        return {
            "image": perturbed,
            "target": image,
            "noise_mask": mask,
            "noise": noise,
            "beta": beta,
            "applied": apply,
        }
