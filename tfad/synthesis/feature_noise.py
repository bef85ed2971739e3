"""SuperSimpleNet's synthetic anomalies in feature space (001; methods.md): Perlin-masked Gaussian noise.

A binary Perlin mask at the feature grid's resolution says where the (adapted) features are perturbed by
i.i.d. Gaussian noise; half of the masks are emptied, so half of the perturbed copies stay normal. The
paper's sigma (0.015) is absolute, for WideResNet-50 features; its authors note it must be re-tuned for
another backbone. EfficientNet-Lite0's stride-8/16 outputs are linear (no activation) with a median
channel standard deviation of 3.3 on magnetic_tile, so 0.015 is invisible to them. Here ``sigma`` is
relative: a channel's noise is N(0, (sigma * s_c)^2), s_c that channel's standard deviation over the
batch's cells (no gradient through it), independent of the backbone's and the adaptor's scale. The
default 1.0 comes from a sweep on magnetic_tile (docs/supersimplenet.md). Cells already anomalous in a
labelled mask get no noise (SSN's "safe zones" are the normal cells). Stateless and seeded like P_q
(``tfad.synthesis.perlin``).
"""

from __future__ import annotations

import tensorflow as tf

from tfad.synthesis.perlin import perlin_mask

NOISE_SIGMA = 1.0  # relative to each channel's standard deviation (see the module docstring)
PERLIN_THRESHOLD = 0.2  # SSN's threshold on the Perlin noise (roughly in [-1, 1]): a larger share of cells
MAX_SCALE_EXPONENT = 4  # lattice periods 2^0..2^3 per side: blobs of a few cells on a 32x32 grid


def noise_masks(
    batch: tf.Tensor | int, grid: int, seed: tf.Tensor, threshold: float = PERLIN_THRESHOLD,
    keep_probability: float = 0.5,
) -> tf.Tensor:  # fmt: skip
    """``[batch, grid, grid, 1]`` 0/1 Perlin masks, each kept with ``keep_probability`` (else all zero)."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    per_mask = tf.random.stateless_uniform([batch, 2], seed=seeds[0], maxval=2**31 - 1, dtype=tf.int64)
    masks = tf.map_fn(
        lambda s: perlin_mask(grid, grid, s, MAX_SCALE_EXPONENT, threshold),
        per_mask,
        fn_output_signature=tf.TensorSpec([grid, grid, 1], tf.float32),
    )
    keep = tf.random.stateless_uniform([batch, 1, 1, 1], seed=seeds[1]) < keep_probability
    return masks * tf.cast(keep, tf.float32)


def perturb(
    features: tf.Tensor,
    labelled_masks: tf.Tensor,
    seed: tf.Tensor,
    sigma: float = NOISE_SIGMA,
    threshold: float = PERLIN_THRESHOLD,
) -> dict[str, tf.Tensor]:
    """Add Perlin-masked Gaussian noise to ``features`` ``[B, g, g, D]``.

    Args:
        features: the adapted features.
        sigma: the noise's standard deviation relative to each channel's over the batch.
        labelled_masks: ``[B, g, g, 1]`` 0/1 known anomalous cells (zeros without labelled defects); they
            receive no noise and stay anomalous in the returned mask.
        seed: ``[2]`` int seed.

    Returns:
        ``features`` (perturbed), ``noise_mask`` ``[B, g, g, 1]`` (where noise was added), ``mask`` (the
        target: labelled or noised cells) and ``label`` ``[B]`` (1 where the mask has any cell).
    """
    grid = features.shape[1]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    masks = noise_masks(tf.shape(features)[0], grid, seeds[0], threshold)
    labelled = tf.cast(labelled_masks, tf.float32)
    noise_mask = masks * (1.0 - labelled)
    scale = tf.stop_gradient(tf.math.reduce_std(features, axis=[0, 1, 2], keepdims=True))
    noise = tf.random.stateless_normal(tf.shape(features), seed=seeds[1]) * (sigma * scale)
    target = tf.cast((labelled + noise_mask) > 0, tf.float32)
    return {
        "features": features + noise * noise_mask,
        "noise_mask": noise_mask,
        "mask": target,
        "label": tf.cast(tf.reduce_max(target, axis=[1, 2, 3]) > 0, tf.float32),
    }
