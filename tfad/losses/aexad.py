"""AE-XAD's per-pixel loss (000 s. 3.2; methods.md, "AE-XAD (000)").

For an image ``x`` in [0, 1], its reconstruction ``x~`` and 0/1 pixel labels ``y`` (1 = anomalous)::

    l_j = (1 - y_j) (x_j - x~_j)^2 / (F - x_j)^2  +  lambda_y y_j (F - x~_j)^2 / (F - x_j)^2

Normal pixels are reconstructed (their squared error), anomalous pixels are pushed towards ``F`` (the
seed's scaling ``F(x_j)``, fixed at 2): with a sigmoid output in [0, 1] the reachable optimum is
``x~ = 1``, so a labelled defect is reconstructed as far from a dark input as the output allows and its
error stands out. Both terms are divided by ``(F - x_j)^2``, the largest error ``F`` could make at that
pixel, which also normalises the error map (:func:`normalised_error`).

``lambda_y``: the seed calls it a normalisation term proportional to the image's anomalous pixel count;
here ``lambda_y = (anomalous pixels of y) / D``, the image's anomalous fraction (D pixels). An anomalous
pixel's term is O(1) where a normal pixel's squared error is O(0.01), so this keeps the few labelled
defects from dominating the normal reconstruction (the seed's "limiting the influence of the few anomalous
examples"); an image without anomalous pixels has ``lambda_y = 0``.

Denominator: ``tfad.schema`` accepts only ``F > 1`` (``aexad.scaling``), so ``(F - x)^2 >= (F - 1)^2 > 0``
for ``x`` in [0, 1] (``F = 2``: at least 1). For direct callers with another ``F``, the denominator is
clamped to at least :data:`MIN_DENOMINATOR` instead of dividing by zero.
"""

from __future__ import annotations

import tensorflow as tf

SCALING = 2.0  # the seed's F(x_j) = 2
MIN_DENOMINATOR = 1e-6  # (F - x)^2 never goes below this (only reachable with F in [0, 1])


def _denominator(x: tf.Tensor, scaling: float) -> tf.Tensor:
    return tf.maximum(tf.square(scaling - x), MIN_DENOMINATOR)


def anomalous_weight(y: tf.Tensor) -> tf.Tensor:
    """``lambda_y`` of each image: its anomalous pixel count / its pixel count D; ``y`` ``[N, H, W, C]``
    0/1 -> ``[N, 1, 1, 1]`` (broadcasts over the image)."""
    y = tf.cast(y, tf.float32)
    return tf.reduce_mean(y, axis=[1, 2, 3], keepdims=True)


def pixel_losses(
    x: tf.Tensor, reconstruction: tf.Tensor, y: tf.Tensor, scaling: float = SCALING
) -> tf.Tensor:
    """The per-pixel loss ``l_j`` of the module docstring, shape of ``x`` (``[N, H, W, C]``).

    ``y`` is ``[N, H, W, 1]`` (broadcast over the channels) or the shape of ``x``.
    """
    x = tf.convert_to_tensor(x, tf.float32)
    reconstruction = tf.convert_to_tensor(reconstruction, tf.float32)
    y = tf.broadcast_to(tf.cast(y, tf.float32), tf.shape(x))
    denominator = _denominator(x, scaling)
    normal = (1.0 - y) * tf.square(x - reconstruction) / denominator
    anomalous = anomalous_weight(y) * y * tf.square(scaling - reconstruction) / denominator
    return normal + anomalous


def aexad_loss(
    x: tf.Tensor,
    reconstruction: tf.Tensor,
    y: tf.Tensor,
    scaling: float = SCALING,
    image_weights: tf.Tensor | None = None,
) -> tf.Tensor:
    """The batch loss: each image's sum of :func:`pixel_losses` divided by its pixel count D (the seed's
    sum, scaled so the learning rate does not depend on the patch size), averaged over the images.

    ``image_weights`` ``[N]`` (optional, >= 0): a weighted mean over the images instead (the trainer gives
    0 to a labelled defect without a mask, which would otherwise be learnt as normal); 0 when every weight
    is 0.
    """
    per_image = tf.reduce_mean(pixel_losses(x, reconstruction, y, scaling), axis=[1, 2, 3])
    if image_weights is None:
        return tf.reduce_mean(per_image)
    weights = tf.cast(image_weights, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(weights * per_image), tf.reduce_sum(weights))


def normalised_error(x: tf.Tensor, reconstruction: tf.Tensor, scaling: float = SCALING) -> tf.Tensor:
    """The error map AE-XAD scores: ``(x - x~)^2 / (F - x)^2`` (the loss's normal term), mean over the
    channels: ``[N, H, W, C]`` -> ``[N, H, W, 1]``; in [0, 1] for images in [0, 1] and ``F >= 2``."""
    x = tf.convert_to_tensor(x, tf.float32)
    error = tf.square(x - tf.convert_to_tensor(reconstruction, tf.float32)) / _denominator(x, scaling)
    return tf.reduce_mean(error, axis=-1, keepdims=True)
