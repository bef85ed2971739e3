"""Plain (non-residual) convolutional networks of the baseline families (003 s. 8.2.2.1, 8.2.2.3).

- GANomaly's DCGAN pyramid: 4x4 stride-2 convolutions + BatchNorm + LeakyReLU(0.2) down to a 4x4-ish map,
  then a "valid" convolution over the whole map to a latent vector (:func:`dcgan_encoder`); the mirror with
  transposed convolutions + ReLU (:func:`dcgan_decoder`); the discriminator is the encoder's pyramid with a
  one-unit head, its pyramid output the feature map of the feature-matching loss
  (:func:`dcgan_discriminator`).
- DRAEM's reconstructive sub-network: an encoder-decoder without skip connections (two 3x3 conv + BN + ReLU
  per level, max-pool down, bilinear up-sampling + conv up; :func:`reconstructive_autoencoder`).

Both start with the package's stems (:func:`tfad.networks.blocks.image_stem`, ``image_head``), so a CPU
preset can fold 4x4 pixels into channels first, as the residual families do.
"""

from __future__ import annotations

import keras
from keras import layers

from tfad.networks.blocks import double_conv, image_head, image_stem

#: GANomaly's (DCGAN's) slope of the encoder and discriminator activations.
LEAKY_SLOPE = 0.2


def _dcgan_pyramid(
    inputs: keras.KerasTensor,
    stem: str,
    stem_filters: int,
    stem_stride: int,
    widths: list[int],
    name: str,
) -> keras.KerasTensor:
    # the stem, then one 4x4 stride-2 conv + BN + LeakyReLU per width (DCGAN's down-sampling)
    x = image_stem(inputs, stem, stem_filters, stem_stride, name)
    x = layers.LeakyReLU(LEAKY_SLOPE, name=f"{name}_stem_lrelu")(x)
    for s, width in enumerate(widths):
        x = layers.Conv2D(width, 4, strides=2, padding="same", use_bias=False, name=f"{name}_s{s}_conv")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_s{s}_bn")(x)
        x = layers.LeakyReLU(LEAKY_SLOPE, name=f"{name}_s{s}_lrelu")(x)
    return x


def dcgan_encoder(
    image_size: int,
    channels: int,
    stem: str,
    stem_filters: int,
    stem_stride: int,
    widths: list[int],
    latent_dim: int,
    name: str,
) -> keras.Model:
    """GANomaly's encoder: image ``[S, S, C]`` -> latent vector ``[latent_dim]``.

    The last feature map (side ``S / (stem_stride * 2**len(widths))``) is reduced by one "valid"
    convolution whose kernel covers it whole, as DCGAN's final 4x4 convolution does on its 4x4 map.
    """
    inputs = keras.Input((image_size, image_size, channels), name=f"{name}_input")
    x = _dcgan_pyramid(inputs, stem, stem_filters, stem_stride, widths, name)
    code = layers.Conv2D(latent_dim, x.shape[1], padding="valid", name=f"{name}_code")(x)
    return keras.Model(inputs, layers.Flatten(name=f"{name}_flatten")(code), name=name)


def dcgan_discriminator(
    image_size: int,
    channels: int,
    stem: str,
    stem_filters: int,
    stem_stride: int,
    widths: list[int],
    name: str = "critic",
) -> keras.Model:
    """GANomaly's discriminator: image -> (pyramid feature map for the feature-matching L_adv, real/fake
    logit ``[1]``); the encoder's architecture with a one-unit head."""
    inputs = keras.Input((image_size, image_size, channels), name=f"{name}_input")
    features = _dcgan_pyramid(inputs, stem, stem_filters, stem_stride, widths, name)
    logit = layers.Conv2D(1, features.shape[1], padding="valid", name=f"{name}_logit")(features)
    return keras.Model(inputs, [features, layers.Flatten(name=f"{name}_flatten")(logit)], name=name)


def dcgan_decoder(
    image_size: int,
    channels: int,
    stem: str,
    stem_filters: int,
    stem_stride: int,
    widths: list[int],
    latent_dim: int,
    name: str = "decoder",
) -> keras.Model:
    """GANomaly's decoder, the encoder's mirror: latent ``[latent_dim]`` -> image in [0, 1] (sigmoid).

    A transposed convolution expands the vector to the encoder's last map; each level then doubles H and W
    with a 4x4 stride-2 transposed convolution + BN + ReLU down to the stem's width.
    """
    side = image_size // (stem_stride * 2 ** len(widths))
    inputs = keras.Input((latent_dim,), name=f"{name}_input")
    x = layers.Reshape((1, 1, latent_dim), name=f"{name}_reshape")(inputs)
    x = layers.Conv2DTranspose(widths[-1], side, padding="valid", use_bias=False, name=f"{name}_expand")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_expand_bn")(x)
    x = layers.ReLU(name=f"{name}_expand_relu")(x)
    for s in reversed(range(len(widths))):
        width = widths[s - 1] if s else stem_filters
        x = layers.Conv2DTranspose(
            width, 4, strides=2, padding="same", use_bias=False, name=f"{name}_s{s}_upconv"
        )(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_s{s}_bn")(x)
        x = layers.ReLU(name=f"{name}_s{s}_relu")(x)
    outputs = image_head(x, stem, channels, stem_stride, stem_filters, name)
    return keras.Model(inputs, outputs, name=name)


def reconstructive_autoencoder(
    image_size: int,
    channels: int,
    stem_stride: int,
    base_width: int,
    depth: int,
    name: str = "reconstructive",
) -> keras.Model:
    """DRAEM's reconstructive sub-network: image -> reconstruction in [0, 1] (sigmoid), same shape.

    After a pixel-unshuffle stem (``stem_stride``; 1 = full resolution), ``depth`` levels of two
    3x3 conv + BN + ReLU with widths ``base_width * 2**level`` (max-pool between levels), then the mirror:
    bilinear up-sampling, a 3x3 conv + BN + ReLU and two more per level. No skip connections: the
    bottleneck must forget an anomaly to restore the normal appearance under it.
    """
    inputs = keras.Input((image_size, image_size, channels), name=f"{name}_input")
    x = image_stem(inputs, "space_to_depth", base_width, stem_stride, name) if stem_stride > 1 else inputs
    for d in range(depth):
        if d:
            x = layers.MaxPooling2D(2, name=f"{name}_pool{d}")(x)
        x = double_conv(x, base_width * 2**d, f"{name}_down{d}")
    for d in reversed(range(depth - 1)):
        width = base_width * 2**d
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up{d}")(x)
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_up{d}_conv")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_up{d}_bn")(x)
        x = layers.ReLU(name=f"{name}_up{d}_relu")(x)
        x = double_conv(x, width, f"{name}_dec{d}")
    stem = "space_to_depth" if stem_stride > 1 else "conv"
    outputs = image_head(x, stem, channels, stem_stride, base_width, name)
    return keras.Model(inputs, outputs, name=name)
