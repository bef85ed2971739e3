"""AE-XAD's score function (000 s. 3.3; methods.md): error map, Gaussian filter, mean + std binarisation.

The map is the normalised reconstruction error (``tfad.losses.aexad.normalised_error``: the loss's normal
term), Gaussian-filtered (``tfad.scoring.discriminative.gaussian_blur``; the seed's "adaptive" filter is not
specified further, so its sigma is the fixed ``aexad.blur_sigma``). The heatmap is that continuous filtered
map (what an operator reads); the binary map is it thresholded at its own mean + std
(:func:`binarise_mean_std`). The patch score (``aexad.score``): ``max`` of the filtered map (default: the
seed only says the score "aggregates the normalised error"), its ``mean`` (the literal aggregation), or
``area``, the binary map's share of the patch.

It runs inside the exported SavedModel graph as well as in Python evaluation: one definition.
"""

from __future__ import annotations

import tensorflow as tf

from tfad.losses.aexad import normalised_error
from tfad.scoring.discriminative import gaussian_blur

SCORES = ("max", "mean", "area")


def binarise_mean_std(maps: tf.Tensor) -> tf.Tensor:
    """0/1 maps: each ``[N, H, W, 1]`` map's pixels above its own mean + standard deviation (population
    std over the map's pixels)."""
    mean, variance = tf.nn.moments(maps, axes=[1, 2, 3], keepdims=True)
    return tf.cast(maps > mean + tf.sqrt(variance), tf.float32)


def error_maps(
    x: tf.Tensor, reconstruction: tf.Tensor, scaling: float, blur_sigma: float
) -> dict[str, tf.Tensor]:
    """``{"filtered": the Gaussian-filtered normalised error [N, H, W, 1], "binary": its mean + std
    binarisation}`` of images ``x`` and their ``reconstruction`` in [0, 1]."""
    filtered = gaussian_blur(normalised_error(x, reconstruction, scaling), blur_sigma)
    return {"filtered": filtered, "binary": binarise_mean_std(filtered)}


def score_images(
    model, images: tf.Tensor, score: str = "max", scaling: float = 2.0, blur_sigma: float = 4.0
) -> dict[str, tf.Tensor]:
    """The serving contract on uint8 ``images`` ``[N, H, W, C]``: ``score`` [N] (``score``: see the module
    docstring), ``heatmap`` [N, H, W] (the filtered error, clipped to [0, 1]: it exceeds 1 only with a
    scaling below 2) and ``reconstruction`` [N, H, W, C] in (0, 1)."""
    if score not in SCORES:
        raise ValueError(f"aexad.score: one of {SCORES}, got {score!r}")
    x = tf.cast(images, tf.float32) / 255.0
    reconstruction = model(x, training=False)["reconstruction"]
    maps = error_maps(x, reconstruction, scaling, blur_sigma)
    if score == "max":
        value = tf.reduce_max(maps["filtered"], axis=[1, 2, 3])
    elif score == "mean":
        value = tf.reduce_mean(maps["filtered"], axis=[1, 2, 3])
    else:
        value = tf.reduce_mean(maps["binary"], axis=[1, 2, 3])
    return {
        "score": value,
        "heatmap": tf.clip_by_value(maps["filtered"][..., 0], 0.0, 1.0),
        "reconstruction": reconstruction,
    }
