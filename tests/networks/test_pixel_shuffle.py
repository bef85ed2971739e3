"""SpaceToDepth / DepthToSpace (tfad.networks.blocks): the results of TensorFlow's ops, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfad.networks.blocks import DepthToSpace, SpaceToDepth


@pytest.mark.parametrize(("block", "channels"), [(2, 1), (4, 1), (4, 3), (2, 8)])
def test_pixel_shuffles_equal_the_tensorflow_ops(block: int, channels: int) -> None:
    x = tf.constant(np.random.default_rng(block * channels).random((2, 16, 24, channels), np.float32))
    unshuffled = SpaceToDepth(block)(x)
    np.testing.assert_array_equal(np.asarray(unshuffled), tf.nn.space_to_depth(x, block).numpy())
    shuffled = DepthToSpace(block)(unshuffled)
    np.testing.assert_array_equal(np.asarray(shuffled), tf.nn.depth_to_space(unshuffled, block).numpy())
    np.testing.assert_array_equal(np.asarray(shuffled), x.numpy())  # inverse of each other
