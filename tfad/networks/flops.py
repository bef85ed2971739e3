"""Analytic FLOP count of Keras models (multiply-add = 2 FLOPs), for sizing presets and benchmarks."""

from __future__ import annotations

import math

import keras
from keras import layers


def _spatial(shape: tuple) -> int:
    return int(math.prod(d for d in shape[1:-1]))


def count_flops(model: keras.Model) -> int:
    """FLOPs of one forward pass of ``model`` for one sample.

    Counts convolutions, transposed convolutions, depthwise convolutions and dense layers (the >99% of the
    cost of the networks here); element-wise ops, normalisation, pooling and activations are ignored. Nested
    models are descended into.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_flops(layer)
        elif isinstance(layer, layers.Conv2DTranspose):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            total += 2 * _spatial(layer.input.shape) * kh * kw * cin * layer.filters
        elif isinstance(layer, layers.DepthwiseConv2D):
            # each input channel is convolved with its own depth_multiplier kernels (no sum over channels)
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            total += 2 * _spatial(layer.output.shape) * kh * kw * cin * layer.depth_multiplier
        elif isinstance(layer, layers.Conv2D):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            total += 2 * _spatial(layer.output.shape) * kh * kw * cin * layer.filters
        elif isinstance(layer, layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return total
