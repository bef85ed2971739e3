"""GANomaly's score function: the latent distance ||z - z_hat||^2 (the paper's anomaly score) and the
absolute reconstruction error as the heatmap (the paper has no map; operators need one).

It runs inside the exported SavedModel graph as well as in Python evaluation: one definition.
"""

from __future__ import annotations

import tensorflow as tf

from tfad.scoring.reconstruction import abs_error_map


def latent_distance(z: tf.Tensor, z_hat: tf.Tensor) -> tf.Tensor:
    """Per-image ``[N]`` mean over the latent units of ``(z - z_hat)^2``: ||z - z_hat||^2 / d, the paper's
    score divided by the latent size d (a constant: the ranking is the same, the value independent of d)."""
    return tf.reduce_mean(tf.square(z - z_hat), axis=-1)


def score_images(model, images: tf.Tensor) -> dict[str, tf.Tensor]:
    """``score`` [N] (:func:`latent_distance`), ``heatmap`` [N, H, W] (|X - X_hat|, mean over channels, in
    [0, 1] and not normalised per image, so maps compare across images) and ``reconstruction`` of uint8
    ``images`` ``[N, H, W, C]``; ``model`` is the inference model of
    :class:`~tfad.families.ganomaly.networks.GANomalyNetworks`."""
    x = tf.cast(images, tf.float32) / 255.0
    outputs = model(x, training=False)
    reconstruction = outputs["reconstruction"]
    return {
        "score": latent_distance(outputs["latent"], outputs["latent_reconstruction"]),
        "heatmap": abs_error_map(x, reconstruction),
        "reconstruction": reconstruction,
    }
