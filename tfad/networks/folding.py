"""Batch normalisations folded into the convolutions before them, for serving.

In inference mode ``BN(conv(x, K) + b) = conv(x, K * s) + (b - mean) * s + beta`` with
``s = gamma / sqrt(var + eps)`` per output channel: one convolution with a bias instead of a convolution and
two passes over its whole output (BN's multiply and add), which on a CPU are memory-bound element-wise ops
(benchmarks/serving_profile.py, docs/performance.md). :func:`fold_batch_norms` rewrites a trained functional
model that way; :func:`batch_norm_affine` gives the scale and offset to the code that folds by hand in its
own forward pass: the pretrained backbone (``tfad.backbones.folded_features``) and SuperSimpleNet's heads.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from keras.src.models.functional import Functional  # no public name: what keras.Model(inputs, outputs) builds

_FOLDABLE = (layers.Conv2D, layers.Conv2DTranspose, layers.DepthwiseConv2D)


@keras.saving.register_keras_serializable(package="tfad")
class FoldedBatchNormalization(layers.Layer):
    """What is left of a BatchNormalization folded into the convolution before it: the identity (it takes
    BatchNormalization's call arguments, which the copied graph still passes)."""

    def call(self, inputs, training=None, mask=None):  # noqa: D102
        return inputs


def _all_layers(model: keras.Model) -> list[layers.Layer]:
    # every distinct layer, nested functional models' layers included, outermost first
    found: dict[int, layers.Layer] = {}
    for layer in model.layers:
        found.setdefault(id(layer), layer)
        if isinstance(layer, keras.Model):
            for inner in _all_layers(layer):
                found.setdefault(id(inner), inner)
    return list(found.values())


def _foldable_pairs(model: keras.Model) -> dict[str, str]:
    # {conv layer name: BN layer name} where the BN's only input is the output of a convolution that feeds
    # nothing else (folding would change what the other consumers see) and normalises the channel axis.
    pairs = {}
    for layer in _all_layers(model):
        if not isinstance(layer, layers.BatchNormalization) or len(layer._inbound_nodes) != 1:
            continue
        if layer.axis not in (-1, 3):
            continue
        source = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation
        single_use = len(getattr(source, "_inbound_nodes", ())) == 1 and len(source._outbound_nodes) == 1
        # BN must see the convolution's raw output: no activation inside the convolution layer
        if isinstance(source, _FOLDABLE) and single_use and source.activation is keras.activations.linear:
            pairs[source.name] = layer.name
    return pairs


def batch_norm_affine(bn: layers.BatchNormalization) -> tuple[tf.Tensor, tf.Tensor]:
    """An inference-mode BatchNormalization as ``x * scale + offset`` per channel: ``(scale, offset)``,
    computed from its variables (in a graph, they follow the variables' values)."""
    scale = tf.math.rsqrt(bn.moving_variance + bn.epsilon)
    if bn.scale:
        scale = bn.gamma * scale
    offset = -bn.moving_mean * scale
    if bn.center:
        offset = offset + bn.beta
    return scale, offset


def _folded_weights(conv: layers.Layer, bn: layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    scale, offset = (np.asarray(t) for t in batch_norm_affine(bn))
    kernel = np.asarray(conv.kernel)
    if isinstance(conv, layers.DepthwiseConv2D):  # [k, k, C, multiplier], output channel c * m + j
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    elif isinstance(conv, layers.Conv2DTranspose):  # [k, k, out, in]
        kernel = kernel * scale[:, None]
    else:  # [k, k, in, out]
        kernel = kernel * scale
    bias = np.asarray(conv.bias) * scale if conv.use_bias else 0.0
    return kernel.astype(np.float32), (bias + offset).astype(np.float32)


def is_functional(model: object) -> bool:
    """Whether ``model`` is a functional Keras model (built from inputs and outputs), which
    :func:`fold_batch_norms` can rewrite; subclassed models cannot be."""
    return isinstance(model, Functional)


def fold_batch_norms(model: keras.Model) -> keras.Model:
    """A copy of the functional ``model`` computing ``model(x, training=False)`` with every BatchNormalization
    that directly follows a Conv2D, Conv2DTranspose or DepthwiseConv2D (its only consumer, no activation in
    between) folded into that convolution, which gets a bias; the BN becomes a
    :class:`FoldedBatchNormalization` (the identity).

    Equal to the original within float rounding (tested). The copy holds the folded values: fold after the
    weights are final (the serving function of a trained run), not during training. ``model`` is unchanged.
    Nested functional models are folded too; other layers are copied as they are. With nothing to fold,
    ``model`` itself is returned (no copy of its weights).

    Raises:
        ValueError: ``model`` is not functional (:func:`is_functional`), or two of its layers with weights
            share a name.
    """
    if not is_functional(model):
        name = getattr(model, "name", model)
        raise ValueError(f"fold_batch_norms: {name!r} is not a functional Keras model")
    weighted = [layer for layer in _all_layers(model) if layer.weights and not isinstance(layer, keras.Model)]
    originals = {layer.name: layer for layer in weighted}
    if len(originals) != len(weighted):
        raise ValueError(f"fold_batch_norms: {model.name} has layers with the same name; cannot match them")
    bn_of_conv = _foldable_pairs(model)
    if not bn_of_conv:
        return model
    folded_bns = set(bn_of_conv.values())

    def clone(layer: layers.Layer) -> layers.Layer:
        config = layer.get_config()
        if layer.name in folded_bns:
            return FoldedBatchNormalization(name=layer.name)
        if layer.name in bn_of_conv:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    folded = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copies = {layer.name: layer for layer in _all_layers(folded)}
    for name, layer in originals.items():
        if name in folded_bns:
            continue
        if name in bn_of_conv:
            copies[name].set_weights(list(_folded_weights(layer, originals[bn_of_conv[name]])))
        else:
            copies[name].set_weights(layer.get_weights())
    return folded
