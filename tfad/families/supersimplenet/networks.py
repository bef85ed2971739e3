"""SuperSimpleNet's networks (001; methods.md): frozen backbone features -> adaptor -> segmentation and
classification heads.

- ``extractor``: the shared EfficientNet-Lite0 (``tfad.backbones``), frozen; its features are resized to one
  grid (:attr:`~SuperSimpleNetArchitecture.grid_size`), concatenated and locally averaged
  (:func:`tfad.backbones.feature_map`).
- ``adaptor``: a 1x1 convolution D -> D (the paper's linear feature adaptor).
- ``heads``: from the (perturbed, in training) adapted features ``[N, g, g, D]`` to ``map_logits``
  ``[N, g, g, 1]`` and ``score_logit`` ``[N]``. Unsupervised and supervised: segmentation head (1x1 conv,
  BatchNorm, LeakyReLU, 1x1 conv) and a classification head on the features and the map (k x k conv block,
  global max + mean of its output and of the map, a dense layer); the map's contribution is a stop-gradient,
  as in the paper. Weak (image labels only): no segmentation head; the classification head is a conv block,
  global average pooling and a dense layer, and the map is its class activation map (CAM): the dense
  layer applied at every cell, whose mean over the grid is the image logit.

The inference model maps images in [0, 1] to ``{"anomaly_map": sigmoid(map) upsampled to the image and
Gaussian-blurred [N, H, W, 1], "map_logits": the same before the sigmoid, "score_logit": [N]}``. It runs the
adaptor and heads in their folded form (:mod:`tfad.families.supersimplenet.folding`): the same function of the
same variables as training's layers in inference mode, faster to serve (docs/performance.md).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import layers

from tfad.backbones import backbone_taps, build_feature_extractor, feature_map, upsample_blur
from tfad.families.supersimplenet.folding import classification_features, segmentation_logits
from tfad.families.supersimplenet.presets import SuperSimpleNetArchitecture


def class_activation_map(conv_features: tf.Tensor, dense: layers.Dense) -> tf.Tensor:
    """CAM of a GAP head: ``dense`` (units 1) applied at every cell of ``[N, g, g, C]`` -> ``[N, g, g, 1]``.

    Its mean over the grid equals ``dense(GAP(conv_features))`` (the head's image logit): GAP and a linear
    layer commute.
    """
    kernel, bias = dense.kernel, dense.bias
    return tf.einsum("nhwc,ck->nhwk", conv_features, kernel) + bias


class SuperSimpleNetHeads(keras.Model):
    """Adapted features ``[N, g, g, D]`` -> ``{"map_logits" [N, g, g, 1], "score_logit" [N]}``."""

    def __init__(self, arch: SuperSimpleNetArchitecture, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.weak = arch.regime == "weak"
        init = keras.initializers.GlorotNormal(seed=0)
        # Each layer is an attribute (not a list): tf.train.Checkpoint, which saves and restores runs,
        # tracks attributes of a Keras 3 model but not the layers inside a Python list.
        if not self.weak:
            self.seg_hidden = layers.Conv2D(
                arch.segmentation_hidden, 1, kernel_initializer=init, name="seg_hidden"
            )
            self.seg_bn = layers.BatchNormalization(name="seg_bn")
            self.seg_out = layers.Conv2D(1, 1, use_bias=False, kernel_initializer=init, name="seg_out")
        self.cls_conv = layers.Conv2D(
            arch.classification_channels, arch.classification_kernel, padding="same", kernel_initializer=init,
            name="cls_conv",
        )  # fmt: skip
        self.cls_bn = layers.BatchNormalization(name="cls_bn")
        self.score_dense = layers.Dense(1, kernel_initializer=init, name="cls_dense")
        if self.weak:  # its kernel is used at every cell (the CAM) before any pooled call could build it
            self.score_dense.build((None, arch.classification_channels))

    def classify(self, x: tf.Tensor, training: bool) -> tf.Tensor:
        """The classification head's conv block: k x k conv, BatchNorm, ReLU."""
        return tf.nn.relu(self.cls_bn(self.cls_conv(x), training=training))

    def call(self, features: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:  # noqa: D102
        if self.weak:
            return self.weak_outputs(self.classify(features, training))
        m = self.seg_hidden(features)
        m = tf.nn.leaky_relu(self.seg_bn(m, training=training), alpha=0.2)
        m = self.seg_out(m)
        m_detached = tf.stop_gradient(m)  # the classification loss does not train the segmentation head
        h = self.classify(tf.concat([features, m_detached], axis=-1), training)
        return {"map_logits": m, "score_logit": self.score_logit(h, m_detached)}

    def score_logit(self, conv_features: tf.Tensor, map_logits: tf.Tensor) -> tf.Tensor:
        """``[N]``: the dense layer on the global max and mean of the conv block's output and of the map."""
        pooled = tf.concat(
            [
                tf.reduce_max(conv_features, axis=[1, 2]),
                tf.reduce_mean(conv_features, axis=[1, 2]),
                tf.reduce_max(map_logits, axis=[1, 2]),
                tf.reduce_mean(map_logits, axis=[1, 2]),
            ],
            axis=-1,
        )
        return self.score_dense(pooled)[:, 0]

    def weak_outputs(self, conv_features: tf.Tensor) -> dict[str, tf.Tensor]:
        """The weak regime's outputs from its conv block's output: the CAM and its mean."""
        cam = class_activation_map(conv_features, self.score_dense)
        return {"map_logits": cam, "score_logit": tf.reduce_mean(cam, axis=[1, 2, 3])}


class SuperSimpleNetInference(keras.Model):
    """Images in [0, 1] ``[N, H, W, C]`` -> ``{"anomaly_map" [N, H, W, 1] in (0, 1), "map_logits" (its
    logits), "score_logit" [N]}``."""

    def __init__(self, networks: SuperSimpleNetNetworks, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arch = networks.arch
        self.extractor, self.adaptor, self.heads = networks.extractor, networks.adaptor, networks.heads

    def call(self, images: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:  # noqa: D102
        # The heads' folded form (tfad.families.supersimplenet.folding): the same function in inference mode.
        a, heads, adaptor = self.arch, self.heads, self.adaptor.get_layer("adaptor_conv")
        maps = backbone_taps(images, self.extractor, a.backbone_input_size)
        # In an exported score function that reads only the map, TensorFlow prunes the classification head.
        if heads.weak:
            out = heads.weak_outputs(classification_features(maps, None, adaptor, heads, a))
        else:
            map_logits = segmentation_logits(maps, adaptor, heads, a)
            h = classification_features(maps, map_logits, adaptor, heads, a)
            out = {"map_logits": map_logits, "score_logit": heads.score_logit(h, map_logits)}
        size = self.arch.image_size
        logits = upsample_blur(out["map_logits"], size, self.arch.blur_sigma)  # resize + blur as products
        return {"anomaly_map": tf.sigmoid(logits), "map_logits": logits, "score_logit": out["score_logit"]}


class SuperSimpleNetNetworks:
    """The family's networks: frozen ``extractor``, trained ``adaptor`` and ``heads``."""

    def __init__(self, arch: SuperSimpleNetArchitecture, pretrained: bool = True) -> None:
        arch.validate()
        self.arch = arch
        taps = tuple(arch.tap_list())
        self.extractor = build_feature_extractor(
            arch.backbone_input_size, arch.channels, taps, weights="package" if pretrained else None
        )
        self.extractor.trainable = False
        d, g = arch.feature_channels, arch.grid_size
        init = keras.initializers.GlorotNormal(seed=0)
        inputs = keras.Input((g, g, d), name="features")
        self.adaptor = keras.Model(
            inputs, layers.Conv2D(d, 1, kernel_initializer=init, name="adaptor_conv")(inputs), name="adaptor"
        )
        self.heads = SuperSimpleNetHeads(arch, name="heads")
        self.heads(tf.zeros([1, g, g, d]))  # build

    def features(self, images: tf.Tensor) -> tf.Tensor:
        """Images in [0, 1] -> backbone features ``[N, g, g, D]`` (before the adaptor)."""
        a = self.arch
        return feature_map(images, self.extractor, a.backbone_input_size, a.grid_size, a.local_average)

    def checkpoint_parts(self) -> dict[str, keras.Model]:
        """Every network, by checkpoint name (the frozen backbone too: a run is restored without the
        package's weights and audited with exactly the weights it was trained on)."""
        return {"extractor": self.extractor, "adaptor": self.adaptor, "heads": self.heads}

    def inference_parts(self) -> dict[str, keras.Model]:
        """The networks the inference path needs (all of them)."""
        return self.checkpoint_parts()

    def build_inference_model(self) -> keras.Model:
        """Images -> ``{"anomaly_map", "score_logit"}`` (the score function's input)."""
        model = SuperSimpleNetInference(self, name="supersimplenet")
        size, channels = self.arch.image_size, self.arch.channels
        model(tf.zeros([1, size, size, channels]))
        return model

    def inference_gflops(self) -> float:
        """Analytic GFLOP per image of the unfolded layers (:meth:`SuperSimpleNetArchitecture.gflops`); the
        served, folded graph does fewer (docs/performance.md)."""
        return self.arch.gflops()["total"]

    def parameter_counts(self) -> dict[str, int]:
        """Trained and frozen parameters."""
        return {
            "trained": int(self.adaptor.count_params() + self.heads.count_params()),
            "frozen_backbone": int(self.extractor.count_params()),
        }


def score_images(model: SuperSimpleNetInference, images: tf.Tensor, score: str = "classification") -> dict:
    """The serving contract on uint8 ``images`` ``[N, H, W, C]``: ``score`` [N] = the classification logit
    (``score="classification"``, the paper's) or the maximum of the blurred map logits (``"map-max"``);
    ``heatmap`` [N, H, W] = the anomaly map in (0, 1)."""
    outputs = model(tf.cast(images, tf.float32) / 255.0, training=False)
    if score == "map-max":  # the logits, not the sigmoid: no ties where the sigmoid rounds to 1.0
        value = tf.reduce_max(outputs["map_logits"], axis=[1, 2, 3])
    else:
        value = outputs["score_logit"]
    return {"score": value, "heatmap": outputs["anomaly_map"][..., 0]}
