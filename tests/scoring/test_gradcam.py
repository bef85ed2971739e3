"""Grad-CAM and the classifier serving contract: known answers on hand-built networks, numpy by hand, graph
mode (tf.function, ExportArchive -> SavedModel)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfad.families.classifier.gradcam import grad_cam, score_classifier

SIZE = 32
THRESHOLD = 0.25  # the hand-built backbone's ReLU offset

# Hand-set head: GAP -> Dense, logit_c = sum_k W[k, c] mean_ij A^k_ij. Rows = feature channels.
#   class 0 "good": dark images; 1: only channel 0 (the region); 2: only channel 1 (outside the region);
#   3: negative on channel 0 (no evidence for it anywhere: all-zero map); 4: mixes channels 0 and 2.
HEAD_WEIGHTS = np.array(
    [
        [0.2, 4.0, 0.0, -3.0, 2.0],
        [0.2, 0.0, 4.0, 0.0, 0.0],
        [1.0, 0.0, 0.0, 0.0, -1.0],
    ],
    np.float32,
)


@keras.saving.register_keras_serializable(package="tfad_test")
class RegionChannels(keras.layers.Layer):
    """Fixed features of a grey map v: [ReLU(v - 0.25) x region, ReLU(v - 0.25) x (1 - region), ReLU(0.5 - v)]
    with region = the top-left quadrant."""

    def call(self, x):  # noqa: D102
        h, w = x.shape[1], x.shape[2]
        region = np.zeros((1, h, w, 1), np.float32)
        region[:, : h // 2, : w // 2] = 1.0
        region = tf.constant(region)
        v = tf.nn.relu(x - THRESHOLD)
        return tf.concat([v * region, v * (1.0 - region), tf.nn.relu(0.5 - x)], axis=-1)

    def compute_output_shape(self, input_shape):  # noqa: D102
        return (*input_shape[:-1], 3)


def hand_built(pool: int) -> tuple[keras.Model, keras.Model]:
    """(backbone: image -> A [SIZE/pool, SIZE/pool, 3], head: A -> 5 logits) with fixed weights."""
    image = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.AveragePooling2D(pool)(image) if pool > 1 else image
    backbone = keras.Model(image, RegionChannels()(x))
    side = SIZE // pool
    features = keras.Input((side, side, 3))
    dense = keras.layers.Dense(5)
    head = keras.Model(features, dense(keras.layers.GlobalAveragePooling2D()(features)))
    dense.set_weights([HEAD_WEIGHTS, np.zeros(5, np.float32)])
    return backbone, head


def numpy_features(images: np.ndarray, pool: int) -> np.ndarray:
    n = images.shape[0]
    side = SIZE // pool
    pooled = images[..., 0].reshape(n, side, pool, side, pool).mean(axis=(2, 4))
    region = np.zeros((side, side))
    region[: side // 2, : side // 2] = 1
    v = np.maximum(pooled - THRESHOLD, 0)
    return np.stack([v * region, v * (1 - region), np.maximum(0.5 - pooled, 0)], axis=-1)


def numpy_bilinear(maps: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize [N, h, w] -> [N, size, size] with half-pixel centres (tf.image.resize's sampling)."""

    def along(x: np.ndarray, axis: int) -> np.ndarray:
        n_in = x.shape[axis]
        src = (np.arange(size) + 0.5) * n_in / size - 0.5
        low = np.floor(src)
        frac = src - low
        i0 = np.clip(low, 0, n_in - 1).astype(int)
        i1 = np.clip(low + 1, 0, n_in - 1).astype(int)
        shape = [1] * x.ndim
        shape[axis] = size
        frac = frac.reshape(shape)
        return np.take(x, i0, axis=axis) * (1 - frac) + np.take(x, i1, axis=axis) * frac

    return along(along(maps, 1), 2)


def numpy_grad_cam(features: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Eq. A.1-A.3 by hand from A [N, h, w, k] and d y_c / dA [N, h, w, k], then upsample + normalise."""
    alpha = gradients.mean(axis=(1, 2))  # [N, k]
    cam = np.maximum(np.einsum("nijk,nk->nij", features, alpha), 0)
    up = numpy_bilinear(cam, SIZE)
    peak = up.max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, up / np.where(peak > 0, peak, 1), 0.0)


def sample_images() -> np.ndarray:
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (3, SIZE, SIZE, 1)).astype(np.float32)
    images[1] *= 0.5  # a darker image: its own maximum still normalises to 1
    images[2, : SIZE // 2, : SIZE // 2] *= THRESHOLD  # nothing above the threshold inside the region
    return images


def test_known_answer_region_maps_at_full_resolution() -> None:
    backbone, head = hand_built(pool=1)  # A at input resolution: no upsampling blur, exact regions
    images = sample_images()
    v = np.maximum(images[..., 0] - THRESHOLD, 0)
    inside = np.zeros((SIZE, SIZE), bool)
    inside[: SIZE // 2, : SIZE // 2] = True
    n = len(images)

    maps, logits = grad_cam(backbone, head, tf.constant(images), tf.fill([n], 1))
    maps = maps.numpy()
    assert maps.shape == (n, SIZE, SIZE) and maps.dtype == np.float32
    assert np.all(maps[:, ~inside] == 0.0)  # zero outside the region
    for i in range(2):  # proportional to ReLU(image - 0.25) inside it, maximum 1
        np.testing.assert_allclose(maps[i][inside], v[i][inside] / v[i][inside].max(), atol=1e-6)
        assert maps[i].max() == pytest.approx(1.0)
    assert np.all(maps[2] == 0.0)  # nothing for class 1 in image 2: all zero, not NaN

    maps2 = grad_cam(backbone, head, tf.constant(images), tf.fill([n], 2))[0].numpy()
    assert np.all(maps2[:, inside] == 0.0)  # the opposite region
    for i in range(n):
        np.testing.assert_allclose(maps2[i][~inside], v[i][~inside] / v[i][~inside].max(), atol=1e-6)

    maps3 = grad_cam(backbone, head, tf.constant(images), tf.fill([n], 3))[0].numpy()
    assert np.all(maps3 == 0.0)  # negative dependence only: ReLU leaves nothing

    expected_logits = numpy_features(images, 1).mean(axis=(1, 2)) @ HEAD_WEIGHTS
    np.testing.assert_allclose(logits.numpy(), expected_logits, rtol=1e-5, atol=1e-6)


def test_alpha_upsampling_and_normalisation_match_numpy() -> None:
    pool = 4  # A is 8x8: the map is upsampled 4x
    backbone, head = hand_built(pool)
    images = sample_images()
    features = numpy_features(images, pool)
    side = SIZE // pool
    for c in range(1, 5):
        # GAP + Dense: d y_c / d A^k_ij = W[k, c] / (h w) everywhere
        gradients = np.broadcast_to(HEAD_WEIGHTS[:, c] / side**2, features.shape)
        expected = numpy_grad_cam(features, gradients)
        maps = grad_cam(backbone, head, tf.constant(images), tf.fill([len(images)], c))[0].numpy()
        np.testing.assert_allclose(maps, expected, atol=1e-5, err_msg=f"class {c}")
        assert maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6
    # class 1 at 8x8 -> 32x32: the region's bilinear edge reaches 2 pixels past the quadrant, no further
    maps = grad_cam(backbone, head, tf.constant(images), tf.fill([len(images)], 1))[0].numpy()
    assert np.all(maps[:, SIZE // 2 + 2 :, :] == 0.0) and np.all(maps[:, :, SIZE // 2 + 2 :] == 0.0)
    assert maps[0, : SIZE // 2, : SIZE // 2].max() == pytest.approx(1.0)


def test_nonlinear_head_matches_hand_computed_gradients() -> None:
    # head = 1x1 conv + ReLU -> GAP -> Dense: the gradient varies over i, j, so alpha really is a mean
    rng = np.random.default_rng(1)
    k, m, classes, side, pool = 4, 6, 3, 8, 4
    wb, bb = rng.normal(0, 1, (1, k)).astype(np.float32), rng.normal(0, 0.3, k).astype(np.float32)
    wc, bc = rng.normal(0, 1, (k, m)).astype(np.float32), rng.normal(0, 0.3, m).astype(np.float32)
    wd, bd = rng.normal(0, 1, (m, classes)).astype(np.float32), rng.normal(0, 0.3, classes).astype(np.float32)

    image = keras.Input((SIZE, SIZE, 1))
    conv_b = keras.layers.Conv2D(k, 1, activation="relu")
    backbone = keras.Model(image, conv_b(keras.layers.AveragePooling2D(pool)(image)))
    feats = keras.Input((side, side, k))
    conv_c, dense = keras.layers.Conv2D(m, 1, activation="relu"), keras.layers.Dense(classes)
    head = keras.Model(feats, dense(keras.layers.GlobalAveragePooling2D()(conv_c(feats))))
    conv_b.set_weights([wb[None, None], bb])
    conv_c.set_weights([wc[None, None], bc])
    dense.set_weights([wd, bd])

    # a ramp across the image plus noise: A varies over i, j, so the ReLU gates of the head do too
    ramp = np.linspace(-1.0, 2.0, SIZE)[None, None, :, None]
    images = (ramp + rng.uniform(-0.5, 0.5, (4, SIZE, SIZE, 1))).astype(np.float32)
    class_index = np.array([0, 1, 2, 1], np.int32)
    pooled = images[..., 0].reshape(4, side, pool, side, pool).mean(axis=(2, 4))[..., None]
    a = np.maximum(pooled @ wb + bb, 0)  # [N, h, w, k]
    z = a @ wc + bc  # [N, h, w, m]
    logits = np.maximum(z, 0).mean(axis=(1, 2)) @ wd + bd
    # d y_c / d A_ijk = sum_m W_d[m, c] / (h w) * 1[z_ijm > 0] * W_c[k, m]
    gate = (z > 0) * wd[:, class_index].T[:, None, None, :] / side**2
    gradients = gate @ wc.T
    assert np.ptp(gradients, axis=(1, 2)).max() > 0.1 * np.abs(gradients).max()  # not constant over i, j
    expected = numpy_grad_cam(a, gradients)
    # the pixel-wise variant (gradient x activation, no mean over i, j) differs: the test can tell them apart
    pixelwise = numpy_bilinear(np.maximum((a * gradients).sum(-1), 0), SIZE)
    pixelwise /= np.maximum(pixelwise.max(axis=(1, 2), keepdims=True), 1e-12)
    assert np.abs(pixelwise - expected).max() > 0.05

    maps, got_logits = grad_cam(backbone, head, tf.constant(images), tf.constant(class_index))
    np.testing.assert_allclose(got_logits.numpy(), logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(maps.numpy(), expected, atol=1e-5)
    peaks = maps.numpy().max(axis=(1, 2))  # each map normalised to its own maximum, or all zero
    assert np.all((peaks == 0.0) | (np.abs(peaks - 1.0) < 1e-6)) and np.sum(peaks > 0) >= 2, peaks


class Networks:
    def __init__(self, backbone: keras.Model, head: keras.Model) -> None:
        self.backbone, self.head = backbone, head


def uint8_images() -> np.ndarray:
    images = np.zeros((4, SIZE, SIZE, 1), np.uint8)
    rng = np.random.default_rng(2)
    images[0, :16, :16] = rng.integers(180, 256, (16, 16, 1))  # bright region: class 1 most probable
    images[1, 16:, :] = rng.integers(180, 256, (16, SIZE, 1))  # bright outside: class 2
    images[1, :16, 16:] = 200
    images[2] = 40  # dark: "good"
    images[3] = rng.integers(0, 256, (SIZE, SIZE, 1))
    return images


def test_score_classifier_by_hand() -> None:
    pool = 4
    networks = Networks(*hand_built(pool))
    images = uint8_images()
    out = score_classifier(networks, tf.constant(images))
    assert set(out) == {"score", "heatmap", "probabilities", "predicted_class"}

    x = images.astype(np.float32) / 255.0
    features = numpy_features(x, pool)
    logits = features.mean(axis=(1, 2)) @ HEAD_WEIGHTS
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out["probabilities"].numpy(), p, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out["score"].numpy(), 1.0 - p[:, 0], rtol=1e-5, atol=1e-6)
    predicted = out["predicted_class"].numpy()
    assert predicted.dtype == np.int32
    np.testing.assert_array_equal(predicted, p.argmax(axis=1))
    assert predicted[0] == 1 and predicted[1] == 2 and predicted[2] == 0  # the images do what they should

    defect = 1 + p[:, 1:].argmax(axis=1)  # the most probable non-good class, also for the "good" image 2
    side = SIZE // pool
    gradients = HEAD_WEIGHTS[:, defect].T[:, None, None, :] / side**2 * np.ones_like(features)
    expected = numpy_grad_cam(features, gradients)
    np.testing.assert_allclose(out["heatmap"].numpy(), expected, atol=1e-5)
    assert out["heatmap"].shape == (4, SIZE, SIZE)

    # a confidently good image keeps a positive score (1 - p(good) computed as the sum of the others)
    backbone, head = hand_built(pool)
    head.layers[-1].set_weights([HEAD_WEIGHTS * 60.0, np.zeros(5, np.float32)])
    confident = score_classifier(Networks(backbone, head), tf.constant(images[2:3]))["score"].numpy()
    z = features[2].mean(axis=(0, 1)) @ (HEAD_WEIGHTS * 60.0)
    others = np.exp(z[1:] - z[0]).sum() / (1 + np.exp(z[1:] - z[0]).sum())
    assert 0 < others < 1e-7 and confident[0] == pytest.approx(others, rel=1e-4)

    # another good class: the score and the heatmap's class choice follow it
    out4 = score_classifier(networks, tf.constant(images), good_class=4)
    np.testing.assert_allclose(out4["score"].numpy(), 1.0 - p[:, 4], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="good_class"):
        score_classifier(networks, tf.constant(images), good_class=5)


def test_graph_mode_and_exported_savedmodel(tmp_path) -> None:
    networks = Networks(*hand_built(4))
    images = tf.constant(uint8_images())
    x = tf.cast(images, tf.float32) / 255.0
    classes = tf.constant([1, 2, 4, 3], tf.int32)
    eager_maps, eager_logits = grad_cam(networks.backbone, networks.head, x, classes)
    eager = score_classifier(networks, images)

    graph_maps, graph_logits = tf.function(lambda x, c: grad_cam(networks.backbone, networks.head, x, c))(
        x, classes
    )
    np.testing.assert_allclose(graph_maps.numpy(), eager_maps.numpy(), atol=1e-5)
    np.testing.assert_allclose(graph_logits.numpy(), eager_logits.numpy(), atol=1e-5)

    archive = keras.export.ExportArchive()
    archive.track(networks.backbone)
    archive.track(networks.head)
    archive.add_endpoint(
        name="serving_default",
        fn=lambda images: score_classifier(networks, images),
        input_signature=[tf.TensorSpec([None, SIZE, SIZE, 1], tf.uint8, name="images")],
    )
    archive.add_endpoint(
        name="grad_cam",
        fn=lambda x, c: grad_cam(networks.backbone, networks.head, x, c),
        input_signature=[
            tf.TensorSpec([None, SIZE, SIZE, 1], tf.float32),
            tf.TensorSpec([None], tf.int32),
        ],
    )
    archive.write_out(str(tmp_path / "model"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "model"))

    served = loaded.serving_default(images)
    for key in ("score", "heatmap", "probabilities", "predicted_class"):
        np.testing.assert_allclose(served[key].numpy(), eager[key].numpy(), atol=1e-5, err_msg=key)
    signature = loaded.signatures["serving_default"](images=images)
    np.testing.assert_allclose(signature["heatmap"].numpy(), eager["heatmap"].numpy(), atol=1e-5)
    loaded_maps, loaded_logits = loaded.grad_cam(x, classes)
    np.testing.assert_allclose(loaded_maps.numpy(), eager_maps.numpy(), atol=1e-5)
    np.testing.assert_allclose(loaded_logits.numpy(), eager_logits.numpy(), atol=1e-5)


def test_real_backbone_per_image_independence_in_graph_mode() -> None:
    # inference-mode BatchNorm: one batched gradient gives each image its own Grad-CAM
    from tfad.families.classifier.networks import ClassifierNetworks, preset

    keras.utils.set_random_seed(0)
    networks = ClassifierNetworks(preset("resnet18-small", image_size=64, num_classes=3))
    images = tf.constant(np.random.default_rng(3).integers(0, 256, (3, 64, 64, 1)), tf.uint8)
    batched = tf.function(lambda images: score_classifier(networks, images))(images)
    assert batched["heatmap"].shape == (3, 64, 64)
    heat = batched["heatmap"].numpy()
    assert heat.min() >= 0.0 and heat.max() <= 1.0 + 1e-6
    # the functional inference model (nested "backbone" and "head") scores the same
    np.testing.assert_allclose(
        score_classifier(networks.build_inference_model(), images)["heatmap"].numpy(), heat, atol=1e-5
    )
    for i in range(3):
        single = score_classifier(networks, images[i : i + 1])
        np.testing.assert_allclose(single["heatmap"].numpy()[0], heat[i], atol=1e-5)
        np.testing.assert_allclose(single["probabilities"].numpy()[0], batched["probabilities"][i], atol=1e-5)
