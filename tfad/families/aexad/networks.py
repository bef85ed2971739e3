"""AE-XAD's networks (000 s. 3.1; methods.md): a pretrained encoder and the two-branch decoder.

- ``extractor``: the early blocks of the shared EfficientNet-Lite0 (``tfad.backbones``; frozen unless
  ``train_encoder``); its taps on one grid give the latent map ``[N, g, g, C]`` (presets.py says how it
  stands for the seed's 28x28x64).
- ``decoder``: a functional Keras model, latent -> reconstruction ``[N, H, W, channels]`` in (0, 1):

  - b1, fixed (no weights): the latent bilinearly upsampled to the image size, then tanh;
  - b2, trained: a 3x3 conv, then per x2 upsampling a transposed conv and a 3x3 conv (SELU throughout,
    the seed's activation, LeCun-normal initialised as SELU wants), and a 1x1 conv back to the C latent
    channels so that b2 and b1 have one shape;
  - the fusion ``b2 + b1 * b2`` (:func:`fuse_branches`): b1 modulates b2 multiplicatively;
  - a 3x3 conv and a sigmoid: the reconstruction.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import layers

from tfad.backbones import build_feature_extractor, feature_map
from tfad.families.aexad.presets import AEXADArchitecture
from tfad.networks.blocks import ImageHeadConv2D
from tfad.networks.flops import count_flops


def fuse_branches(b1: Any, b2: Any) -> Any:
    """The decoder's fusion ``b2 + b1 * b2`` of the fixed branch ``b1`` and the trained branch ``b2`` (same
    shape; tensors or Keras symbolic tensors)."""
    return keras.ops.add(b2, keras.ops.multiply(b1, b2))


def build_decoder(arch: AEXADArchitecture) -> keras.Model:
    """The two-branch decoder of the module docstring: ``[N, g, g, C]`` -> ``[N, H, W, channels]``."""
    g, c = arch.grid_size, arch.latent_channels
    widths = arch.widths()
    init = keras.initializers.LecunNormal(seed=0)
    latent = keras.Input((g, g, c), name="latent")
    b1 = layers.UpSampling2D(2**arch.upsamplings, interpolation="bilinear", name="b1_upsample")(latent)
    b1 = layers.Activation("tanh", name="b1_tanh")(b1)
    h = layers.Conv2D(widths[0], 3, padding="same", activation="selu", kernel_initializer=init,
                      name="b2_conv0")(latent)  # fmt: skip
    for i, width in enumerate(widths[1:], start=1):
        h = layers.Conv2DTranspose(width, 4, strides=2, padding="same", activation="selu",
                                   kernel_initializer=init, name=f"b2_up{i}")(h)  # fmt: skip
        h = layers.Conv2D(width, 3, padding="same", activation="selu", kernel_initializer=init,
                          name=f"b2_conv{i}")(h)  # fmt: skip
    b2 = layers.Conv2D(c, 1, kernel_initializer=init, name="b2_project")(h)
    fused = fuse_branches(b1, b2)
    out_init = keras.initializers.GlorotUniform(seed=0)
    out = ImageHeadConv2D(arch.channels, 3, activation="sigmoid", kernel_initializer=out_init,
                          name="output")(fused)  # fmt: skip
    return keras.Model(latent, out, name="decoder")


class AEXADInference(keras.Model):
    """Images in [0, 1] ``[N, H, W, C]`` -> ``{"reconstruction" [N, H, W, C] in (0, 1)}``."""

    def __init__(self, networks: AEXADNetworks, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.networks_arch = networks.arch
        # attributes, not a list: tf.train.Checkpoint tracks these (docs/architecture.md)
        self.extractor, self.decoder = networks.extractor, networks.decoder

    def call(self, images: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:  # noqa: D102
        a = self.networks_arch
        latent = feature_map(images, self.extractor, a.backbone_input_size, a.grid_size)
        return {"reconstruction": self.decoder(latent, training=training)}


class AEXADNetworks:
    """The family's networks: the pretrained ``extractor`` and the ``decoder``."""

    def __init__(self, arch: AEXADArchitecture, pretrained: bool = True) -> None:
        arch.validate()
        self.arch = arch
        self.extractor = build_feature_extractor(
            arch.backbone_input_size, arch.channels, tuple(arch.tap_list()),
            weights="package" if pretrained else None,
        )  # fmt: skip
        # Frozen (the seed's AE-XAD) unless train_encoder; feature_map runs it in inference mode either
        # way, so its BatchNorm statistics stay ImageNet's and only its weights can move.
        self.extractor.trainable = arch.train_encoder
        self.decoder = build_decoder(arch)

    def latent(self, images: tf.Tensor) -> tf.Tensor:
        """Images in [0, 1] -> the latent map ``[N, g, g, C]``."""
        a = self.arch
        return feature_map(images, self.extractor, a.backbone_input_size, a.grid_size)

    def reconstruct(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Images in [0, 1] -> their reconstruction in (0, 1)."""
        return self.decoder(self.latent(images), training=training)

    def trainable_variables(self) -> list:
        """What the optimizer updates: the decoder (and the encoder with ``train_encoder``)."""
        encoder = self.extractor.trainable_variables if self.arch.train_encoder else []
        return [*self.decoder.trainable_variables, *encoder]

    def checkpoint_parts(self) -> dict[str, keras.Model]:
        """Every network, by checkpoint name (the frozen encoder too: a restored run keeps exactly the weights
        it was trained with, without the package's file)."""
        return {"extractor": self.extractor, "decoder": self.decoder}

    def inference_parts(self) -> dict[str, keras.Model]:
        """The networks the inference path needs (all of them)."""
        return self.checkpoint_parts()

    def build_inference_model(self) -> keras.Model:
        """Images -> ``{"reconstruction"}`` (the score function's input)."""
        model = AEXADInference(self, name="aexad")
        size, channels = self.arch.image_size, self.arch.channels
        model(tf.zeros([1, size, size, channels]))
        return model

    def inference_gflops(self) -> float:
        """GFLOP per image: the encoder's analytic count and the decoder's convolutions."""
        return self.arch.backbone_gflops() + count_flops(self.decoder) / 1e9

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the inference path, and how many of them are trained / frozen."""
        encoder = int(self.extractor.count_params())
        decoder = int(self.decoder.count_params())
        trained = decoder + (encoder if self.arch.train_encoder else 0)
        frozen = encoder + decoder - trained
        return {"inference": encoder + decoder, "trained": trained, "frozen_backbone": frozen}
