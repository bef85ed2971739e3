"""Grad-CAM (003 appendix A, Eq. A.1-A.3; Selvaraju et al. 2017) and the serving contract of classifiers.

For a classifier split at its last conv feature map A (``backbone``: image -> A ``[h, w, k]``; ``head``:
A -> logits, see `tfad.families.classifier.networks`) and a class c:

    alpha_k = 1 / (h w) sum_ij d y_c / d A^k_ij          (y_c: the pre-softmax logit of class c)
    L       = ReLU(sum_k alpha_k A^k)                     ([h, w]; only evidence *for* c survives)

L is upsampled bilinearly to the input size and divided by its own maximum (per image), so every heatmap is
in [0, 1] with maximum 1, or all zero when nothing speaks for c. Both functions are TensorFlow graphs only
(``tf.GradientTape`` on A, no Python-side numpy), so they run eagerly, inside ``tf.function`` and as a
``keras.export.ExportArchive`` endpoint alike: :func:`score_classifier` is exactly what the exported
SavedModel runs and what Python scoring runs.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf


def _grad_cam(
    backbone: keras.Model,
    head: keras.Model,
    images: tf.Tensor,
    choose_class: Callable[[tf.Tensor], tf.Tensor],
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(maps [N, H, W], logits [N, K], class_index [N]) with the class chosen from the logits."""
    images = tf.convert_to_tensor(images, tf.float32)
    features = tf.convert_to_tensor(backbone(images, training=False))
    with tf.GradientTape() as tape:
        tape.watch(features)
        logits = tf.convert_to_tensor(head(features, training=False))
        class_index = tf.stop_gradient(tf.cast(choose_class(logits), tf.int32))
        target = tf.gather(logits, class_index, axis=1, batch_dims=1)  # y_c [N], pre-softmax
        # One gradient for the whole batch: d(sum_n y_c[n]) / dA[m] = d y_c[m] / dA[m], because in
        # inference mode (training=False: BatchNorm uses its moving statistics, Dropout is off) image m's
        # logits depend on image m's features only; each image gets its own gradient.
        total = tf.reduce_sum(target)
    gradients = tape.gradient(total, features)  # [N, h, w, k]
    alpha = tf.reduce_mean(gradients, axis=[1, 2], keepdims=True)  # Eq. A.1: [N, 1, 1, k]
    cam = tf.nn.relu(tf.reduce_sum(alpha * features, axis=-1, keepdims=True))  # Eq. A.2: [N, h, w, 1]
    size = list(images.shape[1:3])
    if None in size:
        size = tf.shape(images)[1:3]
    cam = tf.image.resize(cam, size, method="bilinear")[..., 0]  # half-pixel centres, as the data pipeline
    peak = tf.reduce_max(cam, axis=[1, 2], keepdims=True)
    maps = tf.math.divide_no_nan(cam, peak)  # an all-zero map stays zero
    return tf.cast(maps, tf.float32), logits, class_index


def grad_cam(
    backbone: keras.Model, head: keras.Model, images: tf.Tensor, class_index: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Grad-CAM (003 appendix A, Eq. A.1-A.3; Selvaraju et al.) for float images [N, H, W, C] in [0, 1] and
    one class per image (int [N]).

    A = backbone(images); logits = head(A); y_c = logits[n, class_index[n]] (pre-softmax);
    alpha_k = mean over i, j of d y_c / d A^k_ij;  L = ReLU(sum_k alpha_k A^k);
    upsample L bilinearly to [H, W]; normalise each map by its own maximum (a map that is all zero stays
    zero). Both networks run in inference mode (``training=False``).

    Returns (maps [N, H, W] float32 in [0, 1], logits [N, K]).
    """
    class_index = tf.convert_to_tensor(class_index)
    maps, logits, _ = _grad_cam(backbone, head, images, lambda _logits: class_index)
    return maps, logits


def score_classifier(networks, images: tf.Tensor, good_class: int = 0) -> dict[str, tf.Tensor]:
    """The serving contract of classifiers, on uint8 images [N, H, W, C]:
    score [N] = 1 - p(good) (higher = more anomalous; softmax probabilities),
    heatmap [N, H, W] = Grad-CAM of the most probable non-good class of each image,
    probabilities [N, K], predicted_class [N] int32 (argmax over all classes).

    ``networks`` has ``.backbone`` and ``.head`` (``tfad.families.classifier.networks.ClassifierNetworks``),
    or is the model of ``ClassifierNetworks.build_inference_model()`` (its nested models ``backbone`` and
    ``head`` are used). One backbone pass per batch: the class for the heatmap is chosen from the logits
    inside the Grad-CAM tape.
    """
    if hasattr(networks, "backbone") and hasattr(networks, "head"):
        backbone, head = networks.backbone, networks.head
    else:
        # tfad.families.classifier.networks.BACKBONE_NAME / HEAD_NAME
        backbone, head = networks.get_layer("backbone"), networks.get_layer("head")
    x = tf.cast(images, tf.float32) / 255.0

    def most_probable_defect(logits: tf.Tensor) -> tf.Tensor:
        # argmax over the non-good classes: the good class's logit is masked to -inf
        num_classes = tf.shape(logits)[1]
        is_good = tf.equal(tf.range(num_classes), good_class)[None, :]
        masked = tf.where(is_good, tf.constant(-float("inf"), logits.dtype), logits)
        return tf.argmax(masked, axis=1, output_type=tf.int32)

    heatmap, logits, _ = _grad_cam(backbone, head, x, most_probable_defect)
    num_classes = logits.shape[-1]
    if num_classes is not None and not 0 <= good_class < num_classes:
        raise ValueError(f"good_class must be in [0, {num_classes}), got {good_class}")
    probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
    not_good = 1.0 - tf.one_hot(good_class, tf.shape(probabilities)[1], dtype=tf.float32)
    return {
        # = 1 - p(good), summed over the other classes: keeps its resolution for confidently good images
        # (1 - p in float32 is exactly 0 for every p(good) > 1 - 6e-8, which would tie them at calibration)
        "score": tf.reduce_sum(probabilities * not_good[None, :], axis=1),
        "heatmap": heatmap,
        "probabilities": probabilities,
        "predicted_class": tf.argmax(probabilities, axis=1, output_type=tf.int32),
    }
