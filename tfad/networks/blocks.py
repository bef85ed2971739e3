"""Residual building blocks shared by the reconstruction models (ResNet-V2, pre-activation order)."""

from __future__ import annotations

import functools
import math

import keras
import numpy as np
from keras import layers


def _bn_relu(x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    # momentum 0.9 (PyTorch's default, which GANomaly-family models were tuned with): with Keras's 0.99 the
    # inference statistics lagged the training ones by hundreds of steps and served reconstructions were flat.
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def residual_block(
    x: keras.KerasTensor,
    filters: int,
    stride: int,
    convs: int,
    name: str,
    transpose: bool = False,
) -> keras.KerasTensor:
    """Pre-activation residual block: ``convs`` 3x3 convolutions plus a shortcut.

    Down-sampling blocks stride their first convolution; up-sampling (``transpose``) blocks stride their
    last one, so the decoder mirrors the encoder's cost. The shortcut is the identity when the shape is
    kept, else a (strided / transposed) 1x1 projection.
    """
    preact = _bn_relu(x, f"{name}_pre")
    conv = layers.Conv2DTranspose if transpose else layers.Conv2D
    if stride == 1 and x.shape[-1] == filters:
        shortcut = x
    else:
        shortcut = conv(filters, 1, strides=stride, padding="same", use_bias=False, name=f"{name}_proj")(
            preact
        )
    strided_conv = convs - 1 if transpose else 0
    y = preact
    for i in range(convs):
        if i > 0:
            y = _bn_relu(y, f"{name}_c{i}")
        layer = conv if i == strided_conv else layers.Conv2D
        y = layer(
            filters,
            3,
            strides=stride if i == strided_conv else 1,
            padding="same",
            use_bias=False,
            name=f"{name}_conv{i}",
        )(y)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def residual_stage(
    x: keras.KerasTensor,
    filters: int,
    blocks: int,
    convs: int,
    name: str,
    resample: str,
) -> keras.KerasTensor:
    """A stage of ``blocks`` residual blocks.

    ``resample="down"``: the last block halves H and W (encoder order of the thesis: projection,
    identity, ..., strided). ``resample="up"``: the first block doubles H and W (the decoder mirror).
    """
    for b in range(blocks):
        if resample == "down":
            stride, transpose = (2 if b == blocks - 1 else 1), False
        elif resample == "up":
            stride, transpose = (2 if b == 0 else 1), b == 0
        else:
            raise ValueError(f"resample must be 'down' or 'up', got {resample!r}")
        x = residual_block(x, filters, stride, convs, name=f"{name}_b{b}", transpose=transpose)
    return x


def final_bn_relu(x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    """The closing BN + ReLU of a pre-activation network."""
    return _bn_relu(x, name)


def image_stem(
    inputs: keras.KerasTensor, stem: str, filters: int, stride: int, name: str
) -> keras.KerasTensor:
    """The first layer of an encoder: ``"space_to_depth"`` (pixel-unshuffle by ``stride``, then a 3x3 conv)
    or ``"conv"`` (a strided 3x3 conv, the thesis)."""
    if stem == "space_to_depth":
        x = SpaceToDepth(stride, name=f"{name}_unshuffle")(inputs)
        return layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_stem")(x)
    if stem == "conv":
        return layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_stem")(
            inputs
        )
    raise ValueError(f"stem must be 'conv' or 'space_to_depth', got {stem!r}")


def image_head(
    x: keras.KerasTensor, stem: str, channels: int, stride: int, stem_filters: int, name: str
) -> keras.KerasTensor:
    """The mirror of :func:`image_stem`: features -> ``channels`` image in [0, 1] (sigmoid) at full size."""
    if stem == "space_to_depth":
        x = layers.Conv2D(channels * stride**2, 3, padding="same", name=f"{name}_image")(x)
        x = DepthToSpace(stride, name=f"{name}_shuffle")(x)
        return layers.Activation("sigmoid", name=f"{name}_sigmoid")(x)
    if stride > 1:
        x = layers.Conv2DTranspose(stem_filters, 3, strides=stride, padding="same", name=f"{name}_unstem")(x)
        x = layers.ReLU(name=f"{name}_unstem_relu")(x)
    return layers.Conv2D(channels, 3, padding="same", activation="sigmoid", name=f"{name}_image")(x)


def residual_critic(
    image_size: int, channels: int, base_width: int, stages: int, name: str = "critic"
) -> keras.Model:
    """Residual GAN discriminator: image -> (feature map for the feature-matching L_adv, real/fake logit).

    Shared by ResGANAD and GRD-Net. It always folds 4x4 pixels into channels first: it only judges
    texture statistics, and full-resolution convolutions are the slowest on a CPU.
    """
    inputs = keras.Input((image_size, image_size, channels), name=f"{name}_input")
    x = SpaceToDepth(4, name=f"{name}_unshuffle")(inputs)
    x = layers.Conv2D(base_width, 3, padding="same", name=f"{name}_stem")(x)
    for s in range(stages - 1):
        x = residual_stage(x, base_width * 2 ** (s + 1), 1, 2, f"{name}_s{s}", "down")
    features = final_bn_relu(x, f"{name}_out")
    pooled = layers.GlobalAveragePooling2D(name=f"{name}_pool")(features)
    logit = layers.Dense(1, name=f"{name}_logit")(pooled)
    return keras.Model(inputs, [features, logit], name=name)


def double_conv(x: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    """Two 3x3 conv + BN + ReLU at ``filters`` (a U-Net level; DRAEM's reconstructive levels)."""
    for i in range(2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    return x


def unet(
    image_size: int,
    in_channels: int,
    stem_stride: int,
    base_width: int,
    depth: int,
    prior: float,
    name: str = "unet",
) -> keras.Model:
    """A U-Net ``[H, W, in_channels]`` -> one-channel probability map ``[H, W, 1]`` in (0, 1).

    Shared by GRD-Net's discriminative network and the supervised segmentation model. ``depth`` levels of
    two 3x3 conv + BN + ReLU, widths ``base_width * 2**level``, max-pool down, transposed-conv up, skip
    concatenations. With ``stem_stride`` > 1 it works on pixel-unshuffled input and pixel-shuffles its
    output back to full resolution (full-resolution convolutions with few channels are memory-bound on a
    CPU). The output bias starts at ``logit(prior)`` (Lin et al. 2017): defective pixels are rare, so the
    first steps learn defects rather than the background rate.
    """
    inputs = keras.Input((image_size, image_size, in_channels), name=f"{name}_input")
    x = SpaceToDepth(stem_stride, name=f"{name}_unshuffle")(inputs) if stem_stride > 1 else inputs
    skips = []
    for d in range(depth):
        if d:
            x = layers.MaxPooling2D(2, name=f"{name}_pool{d}")(x)
        x = double_conv(x, base_width * 2**d, f"{name}_down{d}")
        skips.append(x)
    for d in reversed(range(depth - 1)):
        width = base_width * 2**d
        x = layers.Conv2DTranspose(width, 2, strides=2, name=f"{name}_upconv{d}")(x)
        x = layers.Concatenate(name=f"{name}_skip{d}")([x, skips[d]])
        x = double_conv(x, width, f"{name}_up{d}")
    x = layers.Conv2D(
        stem_stride * stem_stride,
        3,
        padding="same",
        bias_initializer=keras.initializers.Constant(-math.log((1 - prior) / prior)),
        name=f"{name}_logits",
    )(x)
    if stem_stride > 1:
        x = DepthToSpace(stem_stride, name=f"{name}_shuffle")(x)
    outputs = layers.Activation("sigmoid", name=f"{name}_sigmoid")(x)
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="tfad")
class SpaceToDepth(keras.layers.Layer):
    """Pixel-unshuffle: ``[H, W, C] -> [H/b, W/b, C*b*b]``.

    On a CPU, convolutions with few channels at full resolution are memory-bound (measured: a 3x3
    8->1 conv at 256x256 runs at ~4 GFLOP/s on 2 cores); folding pixels into channels keeps every
    convolution at >= 16 channels and a quarter of the resolution.
    """

    def __init__(self, block_size: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.block_size = block_size

    def call(self, inputs):  # noqa: D102
        # tf.nn.space_to_depth's result, as a reshape and a transpose: the op's CPU kernel was several times
        # slower on a 60-patch product (benchmarks/serving_profile.py, docs/performance.md)
        import tensorflow as tf

        _, h, w, c = inputs.shape
        b = self.block_size
        blocks = tf.reshape(inputs, [-1, h // b, b, w // b, b, c])
        return tf.reshape(tf.transpose(blocks, [0, 1, 3, 2, 4, 5]), [-1, h // b, w // b, b * b * c])

    def compute_output_shape(self, input_shape):  # noqa: D102
        n, h, w, c = input_shape
        b = self.block_size
        return (n, h // b, w // b, c * b * b)

    def get_config(self) -> dict:  # noqa: D102
        return {**super().get_config(), "block_size": self.block_size}


@keras.saving.register_keras_serializable(package="tfad")
class DepthToSpace(keras.layers.Layer):
    """Pixel-shuffle, the inverse of :class:`SpaceToDepth`: ``[H, W, C*b*b] -> [H*b, W*b, C]``."""

    def __init__(self, block_size: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.block_size = block_size

    def call(self, inputs):  # noqa: D102
        # tf.nn.depth_to_space's result as a reshape and a transpose (faster on CPU, see SpaceToDepth)
        import tensorflow as tf

        _, h, w, c = inputs.shape
        b = self.block_size
        blocks = tf.reshape(inputs, [-1, h, w, b, b, c // (b * b)])
        return tf.reshape(tf.transpose(blocks, [0, 1, 3, 2, 4, 5]), [-1, h * b, w * b, c // (b * b)])

    def compute_output_shape(self, input_shape):  # noqa: D102
        n, h, w, c = input_shape
        b = self.block_size
        return (n, h * b, w * b, c // (b * b))

    def get_config(self) -> dict:  # noqa: D102
        return {**super().get_config(), "block_size": self.block_size}


@functools.cache
def _tap_sum_kernel(kh: int, kw: int, c_out: int) -> np.ndarray:
    # [kh, kw, kh * kw * c_out, c_out], one-hot: tap (i, j) reads channel (i * kw + j) * c_out + o into o
    one_hot = np.eye(kh * kw * c_out, dtype=np.float32).reshape(kh, kw, c_out, kh * kw * c_out)
    return one_hot.transpose(0, 1, 3, 2)


@keras.saving.register_keras_serializable(package="tfad")
class ImageHeadConv2D(layers.Conv2D):
    """A stride-1 ``"same"`` k x k convolution to the few channels of an image (1 or 3), as ``Conv2D``: same
    weights (kernel ``[k, k, C_in, C_out]``, bias), same result within float rounding.

    It runs as a 1x1 convolution to the ``k * k * C_out`` per-tap products and a fixed one-hot k x k
    convolution that shifts and sums them. oneDNN runs a k x k convolution with one output channel far
    below the peak: AE-XAD's 3x3 64->1 head over a 60-patch product took 161 ms as one convolution and
    54-60 ms in this form (a development timing; AMD EPYC Zen 5 ~2.7 GHz, AVX-512; the served before/after
    is in docs/performance.md). It pays off only for
    wide inputs: the plain autoencoder's 8->1 head served 10 % slower this way, so it stays a Conv2D.
    """

    def __init__(self, filters: int, kernel_size: int | tuple[int, int], **kwargs) -> None:
        kwargs.setdefault("padding", "same")
        super().__init__(filters, kernel_size, **kwargs)
        required = (("strides", (1, 1)), ("dilation_rate", (1, 1)), ("padding", "same"), ("groups", 1))
        for knob, value in required:
            if getattr(self, knob) != value:
                raise ValueError(f"ImageHeadConv2D: {knob} must be {value!r}, got {getattr(self, knob)!r}")
        if self.data_format != "channels_last" or any(k % 2 != 1 for k in self.kernel_size):
            raise ValueError(f"ImageHeadConv2D: an odd kernel, channels last; got {self.kernel_size}")

    def convolution_op(self, inputs, kernel):  # noqa: D102
        import tensorflow as tf

        kh, kw, c_in, c_out = kernel.shape
        # channel (i * kw + j) * c_out + o of the 1x1 product holds tap (i, j) of output channel o
        per_tap = tf.reshape(tf.transpose(kernel, [2, 0, 1, 3]), [1, 1, c_in, kh * kw * c_out])
        products = tf.nn.conv2d(inputs, tf.cast(per_tap, inputs.dtype), 1, "SAME")
        return tf.nn.conv2d(products, tf.constant(_tap_sum_kernel(kh, kw, c_out), inputs.dtype), 1, "SAME")
