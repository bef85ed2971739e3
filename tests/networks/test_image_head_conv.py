"""ImageHeadConv2D computes what Conv2D computes with the same weights (tfad.networks.blocks)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from tfad.networks.blocks import ImageHeadConv2D


@pytest.mark.parametrize(("c_in", "c_out", "kernel", "size"), [(64, 1, 3, 32), (8, 3, 3, 17), (5, 1, 5, 9)])
def test_same_output_and_gradients_as_conv2d_with_the_same_weights(
    c_in: int, c_out: int, kernel: int, size: int
) -> None:
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((2, size, size + 3, c_in)), tf.float32)
    head = ImageHeadConv2D(c_out, kernel, activation="sigmoid")
    reference = layers.Conv2D(c_out, kernel, padding="same", activation="sigmoid")
    head.build(x.shape)
    reference.build(x.shape)
    weights = [rng.standard_normal(w.shape).astype(np.float32) * 0.1 for w in reference.get_weights()]
    head.set_weights(weights)
    reference.set_weights(weights)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y_head, y_reference = head(x), reference(x)
    np.testing.assert_allclose(y_head.numpy(), y_reference.numpy(), atol=1e-6)
    for a, b in zip(
        tape.gradient(y_head, [x, *head.trainable_weights]),
        tape.gradient(y_reference, [x, *reference.trainable_weights]),
        strict=True,
    ):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4, rtol=1e-4)


def test_its_weights_are_a_conv2d_checkpoints_weights() -> None:
    # A decoder built with it restores checkpoints written with Conv2D: same variable names and shapes.
    head, reference = ImageHeadConv2D(1, 3, name="out"), layers.Conv2D(1, 3, padding="same", name="out")
    head.build((None, 8, 8, 4))
    reference.build((None, 8, 8, 4))
    assert [(w.path, w.shape) for w in head.weights] == [(w.path, w.shape) for w in reference.weights]
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(head)).filters == 1


@pytest.mark.parametrize(
    "bad", [{"strides": 2}, {"padding": "valid"}, {"dilation_rate": 2}, {"kernel_size": 2}]
)
def test_refuses_what_the_tap_form_does_not_compute(bad: dict) -> None:
    kwargs = {"kernel_size": 3, **bad}
    with pytest.raises(ValueError, match="ImageHeadConv2D"):
        ImageHeadConv2D(1, **kwargs)
