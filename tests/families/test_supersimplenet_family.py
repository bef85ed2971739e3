"""SuperSimpleNet (issue 15): the feature-space noise, its losses and the CAM on constructed inputs, a tiny
training whose loss falls, the feature cache, and each regime's fit -> export -> both servers."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfad.cli import main
from tfad.config import from_dict

# 32x32 patches, the backbone at 32: a 4x4 stride-8 grid upscaled to 8x8, seconds per fit on 2 cores.
TINY = {
    "backbone_input_size": 32,
    "segmentation_hidden": 16,
    "classification_channels": 8,
    "blur_sigma": 1.0,
}


def ssn_config(root: Path, output_dir: Path, regime: str = "unsupervised", **extra):
    return from_dict(
        {
            "name": f"ssn-{regime}",
            "output_dir": str(output_dir),
            "model": {"family": "supersimplenet", "preset": "line", "overrides": dict(TINY)},
            "data": {
                "root": str(root),
                "image_size": 32,
                "validation_fraction": 0.34,
                **({"train_split": "calib"} if regime != "unsupervised" else {}),
            },
            "training": {
                "epochs": 2,
                "batch_size": 4,
                "steps_per_epoch": 5,
                "validation_steps": 1,
                "seed": 0,
            },
            "supersimplenet": {"regime": regime},
            "calibration": {"run_k": 1, "run_n": 2},
            **extra,
        }
    )


def test_feature_noise_is_added_exactly_inside_the_perlin_mask_and_outside_labelled_cells() -> None:
    from tfad.synthesis.feature_noise import noise_masks, perturb

    channel_std = np.linspace(0.5, 8.0, 64).astype(np.float32)  # channels of very different scales
    features = tf.random.stateless_normal([16, 16, 16, 64], [1, 1]) * channel_std
    labelled = np.zeros([16, 16, 16, 1], np.float32)
    labelled[0, :8] = 1.0  # image 0: the top half is a known defect
    seed = tf.constant([3, 7], tf.int64)
    out = perturb(features, tf.constant(labelled), seed, sigma=0.5, threshold=0.0)
    # the masks perturb draws are noise_masks with the first of its split seeds
    masks = noise_masks(16, 16, tf.random.experimental.stateless_split(seed, num=2)[0], 0.0).numpy()
    noise_mask = out["noise_mask"].numpy()
    np.testing.assert_array_equal(noise_mask, masks * (1 - labelled))
    kept = noise_mask.reshape(16, -1).max(axis=1) > 0
    assert kept.any() and not kept.all()  # half of the masks are emptied
    delta = out["features"].numpy() - features.numpy()
    changed = np.abs(delta).max(axis=-1, keepdims=True) > 0
    np.testing.assert_array_equal(changed, noise_mask > 0)  # noise exactly where the mask says
    # the stated sigma, relative to each channel's standard deviation over the batch
    batch_std = features.numpy().reshape(-1, 64).std(axis=0)
    relative = delta[noise_mask[..., 0] > 0] / (0.5 * batch_std)
    assert abs(relative.std() - 1.0) < 0.03 and abs(relative.mean()) < 0.03
    target = out["mask"].numpy()
    np.testing.assert_array_equal(target, np.maximum(labelled, noise_mask))  # labelled cells stay anomalous
    np.testing.assert_array_equal(out["label"].numpy(), target.reshape(16, -1).max(axis=1))


def test_truncated_l1_on_constructed_logits() -> None:
    from tfad.losses.supersimplenet import truncated_l1_loss

    logits = tf.constant([-1.0, 0.2, 1.0, 0.0])
    targets = tf.constant([0.0, 0.0, 1.0, 1.0])
    # normal: max(0, 0.5 - 1) = 0, max(0, 0.5 + 0.2) = 0.7 -> mean 0.35
    # anomalous: max(0, 0.5 - 1) = 0, max(0, 0.5 - 0) = 0.5 -> mean 0.25
    assert float(truncated_l1_loss(logits, targets)) == pytest.approx(0.6, abs=1e-6)
    # far on the right side of the threshold costs nothing; no anomalous cell: only the normal term
    assert float(truncated_l1_loss(tf.constant([-3.0, -0.5]), tf.constant([0.0, 0.0]))) == 0.0
    assert float(truncated_l1_loss(tf.constant([0.0, 4.0]), tf.constant([0.0, 1.0]))) == pytest.approx(0.5)


def test_focal_loss_with_logits_matches_a_hand_computation() -> None:
    from tfad.losses.supersimplenet import focal_loss_with_logits

    def sigmoid(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    p1, p2 = sigmoid(0.0), sigmoid(2.0)
    hand = (-((1 - p1) ** 4) * math.log(p1) - (p2**4) * math.log(1 - p2)) / 2  # target 1 at 0, target 0 at 2
    got = float(focal_loss_with_logits(tf.constant([0.0, 2.0]), tf.constant([1.0, 0.0]), gamma=4.0))
    assert got == pytest.approx(hand, rel=1e-6)
    # gamma 0 is the binary cross-entropy; a confident logit stays finite
    labels, logits = tf.constant([1.0, 0.0]), tf.constant([0.0, 2.0])
    bce = float(tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits)))
    assert float(focal_loss_with_logits(tf.constant([0.0, 2.0]), tf.constant([1.0, 0.0]), 0.0)) == (
        pytest.approx(bce, rel=1e-6)
    )
    assert math.isfinite(float(focal_loss_with_logits(tf.constant([-200.0]), tf.constant([1.0]))))


def test_cam_of_a_gap_head_on_a_constructed_map() -> None:
    from keras import layers

    from tfad.families.supersimplenet.networks import class_activation_map

    dense = layers.Dense(1)
    dense.build((None, 2))
    dense.set_weights([np.array([[2.0], [-1.0]], np.float32), np.array([0.5], np.float32)])
    features = np.zeros([1, 4, 4, 2], np.float32)
    features[0, 1, 2, 0] = 3.0  # one hot cell in the channel the head weighs positively
    features[0, 3, 0, 1] = 1.0  # one in the negatively weighted channel
    cam = class_activation_map(tf.constant(features), dense).numpy()[0, :, :, 0]
    expected = np.full((4, 4), 0.5, np.float32)
    expected[1, 2] = 0.5 + 2 * 3
    expected[3, 0] = 0.5 - 1
    np.testing.assert_allclose(cam, expected, rtol=1e-6)
    gap_logit = dense(tf.reduce_mean(tf.constant(features), axis=[1, 2])).numpy()[0, 0]
    assert cam.mean() == pytest.approx(gap_logit, rel=1e-6)  # the image logit is the CAM's mean


def test_a_tiny_training_run_lowers_the_loss() -> None:
    from tfad.families.supersimplenet.networks import SuperSimpleNetNetworks
    from tfad.families.supersimplenet.presets import PRESETS
    from tfad.families.supersimplenet.trainer import SuperSimpleNetTrainer

    tf.keras.utils.set_random_seed(0)
    arch = dataclasses.replace(PRESETS["line"], image_size=32, **TINY)
    networks = SuperSimpleNetNetworks(arch)
    # noise large enough to be learnt in a few steps (the real sigma needs thousands)
    trainer = SuperSimpleNetTrainer(networks, "unsupervised", 0.5, 0.2, seed=0)
    trainer.compile_with_adam(1e-3, 0.9, total_steps=1000, clip_norm=None)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0.3, 0.7, (8, 32, 32, 1)).astype(np.float32))
    batch = {"features": tf.cast(networks.features(images), tf.float16), "mask": tf.zeros([8, 8, 8, 1]),
             "label": tf.zeros([8])}  # fmt: skip
    step = tf.function(trainer.train_step)
    losses = []
    for _ in range(200):
        trainer.reset_metrics()  # each step's own loss, not the running mean
        losses.append(float(step(batch)["total_loss"][0]))
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < 0.6 * first, (first, last)


def test_feature_cache_is_written_once_and_sized_as_stated(tiny_vials, tmp_path) -> None:
    from tfad.data.layouts import read_dataset
    from tfad.families.supersimplenet.feature_cache import build_cache, bytes_per_image
    from tfad.families.supersimplenet.networks import SuperSimpleNetNetworks
    from tfad.families.supersimplenet.presets import PRESETS

    config = ssn_config(tiny_vials, tmp_path)
    arch = dataclasses.replace(PRESETS["line"], image_size=32, **TINY)
    networks = SuperSimpleNetNetworks(arch)
    records = read_dataset(str(tiny_vials), "train")[:6]
    cache = build_cache(records, networks, config, tmp_path, "train", with_masks=False, progress=False)
    assert len(cache) == 6 and cache.features.dtype == np.float16
    assert bytes_per_image(arch) == 8 * 8 * 152 * 2 and cache.nbytes == 6 * bytes_per_image(arch)
    from tfad.data.decode import load_images

    direct = networks.features(tf.constant(load_images(records, (32, 32), 1), tf.float32) / 255.0).numpy()
    np.testing.assert_allclose(np.asarray(cache.features, np.float32), direct, rtol=2e-3, atol=2e-3)
    stamp = (cache.folder / "features.npy").stat().st_mtime_ns
    again = build_cache(records, networks, config, tmp_path, "train", with_masks=False, progress=False)
    assert again.folder == cache.folder and (again.folder / "features.npy").stat().st_mtime_ns == stamp
    other = build_cache(records[:5], networks, config, tmp_path, "train", with_masks=False, progress=False)
    assert other.folder != cache.folder and len(other) == 5  # another image list: another cache


@pytest.mark.parametrize("regime", ["unsupervised", "supervised", "weak"])
def test_each_regime_fits_exports_and_both_servers_serve_it(regime, tiny_vials, tmp_path) -> None:
    from tests.serving.serving_testutils import assert_servers_score_like_python
    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset
    from tfad.training.fit import fit
    from tfad.training.runs import load_run

    config = ssn_config(tiny_vials, tmp_path / "runs", regime)
    trained = {}

    def keep_weights(trainer) -> None:
        parts = {"adaptor": trainer.networks.adaptor, "heads": trainer.networks.heads}
        trained.update({f"{k}/{w.path}": w.numpy() for k, part in parts.items() for w in part.weights})

    result = fit(config, progress=False, on_train_end=keep_weights)
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["global_step"] == 10
    assert (result.run_dir / "feature_cache").is_dir()  # trained from cached features
    # the run restores exactly the trained weights of every layer (a layer the checkpoint missed would keep
    # its initial weights, and the export parity below could not tell)
    restored = load_run(result.run_dir).inference_model
    parts = {"adaptor": restored.adaptor, "heads": restored.heads}
    restored_weights = {f"{k}/{w.path}": w.numpy() for k, part in parts.items() for w in part.weights}
    assert restored_weights.keys() == trained.keys()
    for name, value in trained.items():
        np.testing.assert_array_equal(restored_weights[name], value, err_msg=name)
    calibrate = ["calibrate", str(result.run_dir), "--data", str(tiny_vials), "--no-progress"]
    assert main([*calibrate, "--policy", "false-reject-budget", "--false-reject-budget", "0.5"]) == 0
    models = tmp_path / "savedmodels"
    assert main(["export", str(result.run_dir), "--savedmodels", str(models)]) == 0  # verifies parity first
    version = models / f"ssn-{regime}" / "1"
    manifest = json.loads((version / "tfad_manifest.json").read_text())
    assert manifest["model_family"] == "supersimplenet" and manifest["score"]["regime"] == regime
    assert manifest["signature"]["outputs"] == ["score", "heatmap"]
    if regime != "unsupervised":
        return  # the servers run the same graph kind for every regime: served once
    records = read_dataset(str(tiny_vials), "test")
    images = load_images(records, (32, 32), 1)
    assert_servers_score_like_python(
        version, images, [r.region for r in records], tmp_path, score_atol=1e-4, cycle_budget_ms=10000
    )


def test_map_max_score_is_the_max_of_the_blurred_map_logits() -> None:
    from tfad.families.supersimplenet.networks import SuperSimpleNetNetworks, score_images
    from tfad.families.supersimplenet.presets import PRESETS

    arch = dataclasses.replace(PRESETS["line"], image_size=32, **TINY)
    model = SuperSimpleNetNetworks(arch).build_inference_model()
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (3, 32, 32, 1)), tf.uint8)
    by_map = score_images(model, images, "map-max")
    by_head = score_images(model, images, "classification")
    # the heatmap is the sigmoid of the map logits: its maximum is the sigmoid of the map-max score
    np.testing.assert_allclose(
        tf.sigmoid(by_map["score"]).numpy(), by_map["heatmap"].numpy().max(axis=(1, 2)), rtol=1e-5
    )
    np.testing.assert_array_equal(by_map["heatmap"].numpy(), by_head["heatmap"].numpy())
    outputs = model(tf.cast(images, tf.float32) / 255.0)
    np.testing.assert_allclose(by_head["score"].numpy(), outputs["score_logit"].numpy(), rtol=1e-6)


@pytest.mark.parametrize("regime", ["unsupervised", "supervised", "weak"])
@pytest.mark.parametrize(("upscale", "kernel"), [(2, 3), (1, 5)])
def test_the_folded_inference_model_equals_the_training_path(regime: str, upscale: int, kernel: int) -> None:
    """Served (folded adaptor, heads and batch normalisations; the hidden layer at the taps' resolutions)
    against what training runs (adaptor and heads on the feature grid), on random weights and statistics."""
    from tfad.backbones import upsample_blur
    from tfad.families.supersimplenet.networks import SuperSimpleNetNetworks
    from tfad.families.supersimplenet.presets import PRESETS

    knobs = {**TINY, "upscale": upscale, "classification_kernel": kernel}
    arch = dataclasses.replace(PRESETS["line"], image_size=32, regime=regime, **knobs)
    # ImageNet weights: features of a real scale (a random backbone's are ~1e-4)
    networks = SuperSimpleNetNetworks(arch)
    rng = np.random.default_rng(7)
    for variable in networks.adaptor.weights + networks.heads.weights:  # every bias and BN offset non-zero
        shape = variable.shape
        value = rng.uniform(0.5, 2.0, shape) if "variance" in variable.path else rng.normal(0, 0.5, shape)
        variable.assign(value.astype(np.float32))
    images = tf.constant(np.random.default_rng(1).uniform(size=(3, 32, 32, 1)), tf.float32)
    served = networks.build_inference_model()(images)
    trained = networks.heads(networks.adaptor(networks.features(images)), training=False)
    logits = upsample_blur(trained["map_logits"], 32, arch.blur_sigma)
    for got, expected in ((served["map_logits"], logits), (served["score_logit"], trained["score_logit"])):
        expected = expected.numpy()
        assert got.shape == expected.shape
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=2e-5 * np.abs(expected).max())
    assert np.abs(trained["score_logit"].numpy()).max() > 0.1  # the check compares non-trivial values


@pytest.mark.parametrize(
    ("regime", "given", "resolved"),
    [
        ("unsupervised", None, "map-max"),
        ("supervised", None, "classification"),
        ("weak", None, "classification"),
        ("supervised", "map-max", "map-max"),  # an explicit choice is kept
        ("unsupervised", "classification", "classification"),
    ],
)
def test_the_score_left_null_is_chosen_by_the_regime(regime, given, resolved) -> None:
    from tfad.config import from_dict

    section = {"regime": regime, **({"score": given} if given else {})}
    config = from_dict({"model": {"family": "supersimplenet"}, "supersimplenet": section})
    assert config.supersimplenet.score == resolved
