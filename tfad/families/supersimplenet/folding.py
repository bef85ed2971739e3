"""SuperSimpleNet's inference path with its linear layers folded together (issue 13: the serving cost).

In inference mode the adaptor (a 1x1 convolution), the segmentation head's hidden 1x1 convolution and its
batch normalisation are one affine map of the features, and the grid's resize and local mean commute with
it (:func:`tfad.backbones.features.convolve_feature_grid` with a 1x1 kernel). So the segmentation head's
hidden layer is computed from each backbone tap at the tap's own resolution, with one folded kernel, instead
of three passes over the grid at the grid's resolution. The classification head's k x k convolution takes the
adaptor and its batch normalisation into its kernel, and is computed from the taps too, as k^2 shifted
projections (:func:`tfad.backbones.features.convolve_feature_grid`): the feature grid itself is never
built. The adaptor's bias becomes a constant per tap of the kernel, because the convolution's zero padding
does not see it at the border cells.

The folded kernels are computed from the variables in the graph (as :func:`tfad.backbones.folded_features`
does), so nothing new is stored and the same checkpoint serves both paths. Training runs the unfolded
layers (:class:`~tfad.families.supersimplenet.networks.SuperSimpleNetHeads`); both paths give the same
outputs within float rounding (tests/families/test_supersimplenet_family.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf
from keras import layers

from tfad.backbones import convolve_feature_grid
from tfad.families.supersimplenet.presets import SuperSimpleNetArchitecture
from tfad.networks.folding import batch_norm_affine

if TYPE_CHECKING:  # networks.py imports this module
    from tfad.families.supersimplenet.networks import SuperSimpleNetHeads


def segmentation_logits(
    maps: list[tf.Tensor],
    adaptor: layers.Conv2D,
    heads: SuperSimpleNetHeads,
    arch: SuperSimpleNetArchitecture,
) -> tf.Tensor:
    """The backbone's tapped outputs ``maps`` -> the segmentation head's map logits ``[N, g, g, 1]``:
    ``heads(adaptor(feature_grid(maps)))["map_logits"]`` in inference mode (not the weak regime)."""
    with tf.name_scope("segmentation_folded"):
        scale, offset = batch_norm_affine(heads.seg_bn)
        hidden = heads.seg_hidden.kernel[0, 0]  # [D, H]
        kernel = tf.matmul(adaptor.kernel[0, 0], hidden) * scale
        adaptor_bias = tf.linalg.matvec(hidden, adaptor.bias, transpose_a=True)
        bias = (adaptor_bias + heads.seg_hidden.bias) * scale + offset
        g = arch.grid_size
        z = convolve_feature_grid(
            maps, kernel[None, None], g, arch.local_average, bias[None, None]
        )  # [N, g, g, H]
        z = tf.nn.leaky_relu(z, alpha=0.2)
        logits = tf.matmul(tf.reshape(z, [-1, z.shape[-1]]), heads.seg_out.kernel[0, 0])  # seg_out: no bias
        return tf.reshape(logits, [-1, g, g, 1])


def classification_features(
    maps: list[tf.Tensor],
    map_logits: tf.Tensor | None,
    adaptor: layers.Conv2D,
    heads: SuperSimpleNetHeads,
    arch: SuperSimpleNetArchitecture,
) -> tf.Tensor:
    """The backbone's tapped outputs ``maps`` (and the map logits, outside the weak regime) -> the
    classification head's conv block ``[N, g, g, C]``:
    ``heads.classify(concat(adaptor(feature_grid(maps)), map_logits))`` in inference mode."""
    with tf.name_scope("classification_folded"):
        scale, offset = batch_norm_affine(heads.cls_bn)
        conv = heads.cls_conv
        d = adaptor.kernel.shape[-1]  # the adapted features' channels: the first D of the conv's inputs
        adapted_part = conv.kernel[:, :, :d]  # [k, k, D, C]: the taps that read the adapted features
        kernel = tf.einsum("de,yxec->yxdc", adaptor.kernel[0, 0], adapted_part)
        # The adaptor's bias is a constant feature over the grid: each tap adds bias . K[tap] where it falls
        # inside the grid, which the zero padding does not see at the border cells.
        tap_bias = tf.einsum("d,yxdc->yxc", adaptor.bias, adapted_part)
        h = convolve_feature_grid(maps, kernel * scale, arch.grid_size, arch.local_average, tap_bias * scale)
        if map_logits is not None:
            h = h + tf.nn.conv2d(map_logits, conv.kernel[:, :, d:] * scale, 1, "SAME")
        return tf.nn.relu(h + (conv.bias * scale + offset))
