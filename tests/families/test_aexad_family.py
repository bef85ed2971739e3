"""AE-XAD (issue 16 item 2): the per-pixel loss, the decoder's fusion and the mean + std binarisation on
constructed inputs, a tiny training whose loss falls, fit -> export -> both servers on labelled defects,
and the config errors of its keys."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tfad.cli import main
from tfad.config import from_dict
from tfad.schema import ConfigError

# 32x32 patches, the encoder at 32: a 4x4x64 latent map, three upsamplings; seconds per fit on 2 cores.
TINY = {"backbone_input_size": 32, "decoder_width": 16}


def aexad_config(root: Path, output_dir: Path, **extra):
    return from_dict(
        {
            "name": "aexad-tiny",
            "output_dir": str(output_dir),
            "model": {"family": "aexad", "preset": "line", "overrides": dict(TINY)},
            # calib holds labelled defects with masks (train: good products only)
            "data": {
                "root": str(root),
                "image_size": 32,
                "validation_fraction": 0.34,
                "train_split": "calib",
            },
            "training": {
                "epochs": 2,
                "batch_size": 4,
                "steps_per_epoch": 4,
                "validation_steps": 1,
                "seed": 0,
            },
            "aexad": {"blur_sigma": 1.0},
            "calibration": {"run_k": 1, "run_n": 2},
            **extra,
        }
    )


def tiny_networks():
    from tfad.families.aexad.networks import AEXADNetworks
    from tfad.families.aexad.presets import PRESETS

    return AEXADNetworks(dataclasses.replace(PRESETS["line"], image_size=32, **TINY))


def test_pixel_loss_matches_a_hand_computation() -> None:
    from tfad.losses.aexad import aexad_loss, anomalous_weight, pixel_losses

    x = tf.constant([[0.0, 0.5], [1.0, 0.0]])[None, :, :, None]
    rec = tf.constant([[0.1, 0.5], [0.5, 0.8]])[None, :, :, None]
    y = tf.constant([[0.0, 0.0], [1.0, 0.0]])[None, :, :, None]
    # F = 2, D = 4, one anomalous pixel: lambda_y = 1/4
    #   (0, 0) normal:    (0 - 0.1)^2 / (2 - 0)^2        = 0.0025
    #   (0, 1) normal:    (0.5 - 0.5)^2 / (2 - 0.5)^2    = 0
    #   (1, 0) anomalous: 1/4 (2 - 0.5)^2 / (2 - 1)^2    = 0.5625
    #   (1, 1) normal:    (0 - 0.8)^2 / (2 - 0)^2        = 0.16
    assert float(anomalous_weight(y)[0, 0, 0, 0]) == 0.25
    np.testing.assert_allclose(
        pixel_losses(x, rec, y, 2.0).numpy()[0, :, :, 0], [[0.0025, 0.0], [0.5625, 0.16]], rtol=1e-6
    )
    assert float(aexad_loss(x, rec, y, 2.0)) == pytest.approx((0.0025 + 0.5625 + 0.16) / 4, rel=1e-6)
    # F = 3 and every pixel anomalous: lambda_y = 1; (3 - x~)^2 / (3 - x)^2 per pixel
    ones = tf.ones_like(y)
    hand = np.mean([(3 - 0.1) ** 2 / 9, (3 - 0.5) ** 2 / 2.5**2, (3 - 0.5) ** 2 / 4, (3 - 0.8) ** 2 / 9])
    assert float(aexad_loss(x, rec, ones, 3.0)) == pytest.approx(hand, rel=1e-6)
    # no anomalous pixel: lambda_y = 0 and the loss is the normalised squared error alone
    no_defect = np.mean([0.01 / 4, 0.0, 0.25 / 1, 0.64 / 4])
    assert float(aexad_loss(x, rec, tf.zeros_like(y), 2.0)) == pytest.approx(no_defect, rel=1e-6)
    # a batch of both, the second image weighted 0: the first image's loss alone
    batch = [tf.concat([t, t], axis=0) for t in (x, rec)]
    both = aexad_loss(*batch, tf.concat([y, ones], axis=0), 2.0, image_weights=tf.constant([1.0, 0.0]))
    assert float(both) == pytest.approx((0.0025 + 0.5625 + 0.16) / 4, rel=1e-6)
    # a zero denominator (F = 1 at a white pixel; the schema forbids F <= 1) is clamped, not a division by 0
    assert math.isfinite(float(aexad_loss(tf.ones([1, 2, 2, 1]), tf.zeros([1, 2, 2, 1]), ones[:, :2], 1.0)))


def test_fusion_is_b2_plus_b1_times_b2_and_b1_is_the_fixed_tanh_upsampling() -> None:
    import keras

    from tfad.families.aexad.networks import fuse_branches

    b1 = tf.constant([[0.5, -1.0], [0.0, 1.0]])
    b2 = tf.constant([[2.0, 3.0], [4.0, -1.0]])
    np.testing.assert_allclose(fuse_branches(b1, b2).numpy(), [[3.0, 0.0], [4.0, -2.0]])
    # inside the decoder: the output conv sees b2 + b1 * b2 of its own branches, and b1 has no weights
    decoder = tiny_networks().decoder
    probe = keras.Model(
        decoder.input,
        [decoder.get_layer("b1_tanh").output, decoder.get_layer("b2_project").output,
         decoder.get_layer("output").input],
    )  # fmt: skip
    latent = tf.random.stateless_normal([2, 4, 4, 64], [0, 1])
    got_b1, got_b2, fused = (t.numpy() for t in probe(latent))
    np.testing.assert_allclose(fused, got_b2 + got_b1 * got_b2, rtol=1e-5, atol=1e-6)
    expected_b1 = np.tanh(tf.image.resize(latent, [32, 32], method="bilinear").numpy())
    np.testing.assert_allclose(got_b1, expected_b1, rtol=1e-5, atol=1e-5)
    assert not decoder.get_layer("b1_upsample").weights and not decoder.get_layer("b1_tanh").weights


def test_mean_plus_std_binarisation_of_a_constructed_map() -> None:
    from tfad.families.aexad.scoring import binarise_mean_std

    # values 0, 1, 2, 3 four times each: mean 1.5, std sqrt(1.25) = 1.118 -> threshold 2.618: the 3s only
    first = np.repeat(np.arange(4, dtype=np.float32), 4).reshape(4, 4)
    # the same pattern at 10x scale with one larger pixel: its own mean and std (7.5 + ... ) decide
    second = first * 10
    second[0, 0] = 100.0  # mean 21.25, std 24.0 -> threshold 45.25: only that pixel
    maps = tf.constant(np.stack([first, second])[..., None])
    binary = binarise_mean_std(maps).numpy()[..., 0]
    np.testing.assert_array_equal(binary[0], first == 3)
    expected = np.zeros((4, 4))
    expected[0, 0] = 1
    np.testing.assert_array_equal(binary[1], expected)
    assert binarise_mean_std(tf.ones([1, 4, 4, 1])).numpy().sum() == 0  # a flat map has nothing above


def test_score_variants_read_the_filtered_error_map() -> None:
    from tfad.families.aexad.scoring import error_maps, score_images

    model = tiny_networks().build_inference_model()
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (3, 32, 32, 1)), tf.uint8)
    out = {s: score_images(model, images, s, 2.0, 1.0) for s in ("max", "mean", "area")}
    x = tf.cast(images, tf.float32) / 255.0
    maps = error_maps(x, out["max"]["reconstruction"], 2.0, 1.0)
    filtered = maps["filtered"].numpy()[..., 0]
    np.testing.assert_allclose(out["max"]["heatmap"].numpy(), filtered, rtol=1e-6)  # F = 2: within [0, 1]
    np.testing.assert_allclose(out["max"]["score"].numpy(), filtered.max(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(out["mean"]["score"].numpy(), filtered.mean(axis=(1, 2)), rtol=1e-5)
    area = filtered > filtered.mean(axis=(1, 2), keepdims=True) + filtered.std(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out["area"]["score"].numpy(), area.mean(axis=(1, 2)), atol=1 / 1024)
    assert 0 < out["area"]["score"].numpy().min() and out["area"]["score"].numpy().max() < 0.5
    assert out["max"]["reconstruction"].shape == (3, 32, 32, 1)


def test_a_tiny_training_run_lowers_the_loss_and_pushes_labelled_pixels_away() -> None:
    from tfad.families.aexad.trainer import AEXADTrainer
    from tfad.losses.aexad import normalised_error

    tf.keras.utils.set_random_seed(0)
    networks = tiny_networks()
    trainer = AEXADTrainer(networks, scaling=2.0)
    trainer.compile_with_adam(2e-3, 0.9, total_steps=10_000)
    rng = np.random.default_rng(0)
    images = rng.uniform(0.2, 0.5, (8, 32, 32, 1)).astype(np.float32)
    masks = np.zeros((8, 32, 32, 1), np.float32)
    masks[:3, 8:20, 8:20] = 1.0  # three labelled defects
    images[:3, 8:20, 8:20] *= 0.3  # dark, as magnetic_tile's blowholes
    batch = {"image": tf.constant(images), "mask": tf.constant(masks),
             "class": tf.constant([1, 1, 1, 0, 0, 0, 0, 0])}  # fmt: skip
    step = tf.function(trainer.train_step)
    losses = []
    for _ in range(120):
        trainer.reset_metrics()  # each step's own loss, not the running mean
        losses.append(float(step(batch)["total_loss"][0]))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.5 * first, (first, last)
    reconstruction = networks.reconstruct(tf.constant(images)).numpy()
    error = normalised_error(images, reconstruction).numpy()
    inside, outside = error[:3][masks[:3] > 0].mean(), error[masks == 0].mean()
    # the labelled pixels are pushed towards F = 2, i.e. to the sigmoid's ceiling 1 (without the anomalous
    # term they stay near their dark input, ~0.35 after these steps, and the error ratio is ~8)
    assert reconstruction[:3][masks[:3] > 0].mean() > 0.8
    assert inside > 30 * outside, (inside, outside)


def test_without_labelled_defects_it_needs_and_trains_on_synthetic_ones(tiny_vials, tmp_path) -> None:
    from tfad.training.fit import fit

    good_only = {"data": {"root": str(tiny_vials), "image_size": 32}}  # the train split: good products only
    with pytest.raises(ConfigError, match="synthetic_probability"):
        fit(aexad_config(tiny_vials, tmp_path, **good_only), progress=False)
    config = aexad_config(tiny_vials, tmp_path, **good_only, supervised={"synthetic_probability": 0.5})
    result = fit(config, progress=False)
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["global_step"] == 8
    written = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    # P_q defects (with their Perlin masks) are its labelled class
    assert written["supervised"]["classes"] == ["good", "synthetic"]


def test_fits_on_labelled_defects_exports_and_both_servers_serve_it(tiny_vials, tmp_path) -> None:
    from tests.serving.serving_testutils import assert_servers_score_like_python
    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset
    from tfad.training.fit import fit
    from tfad.training.runs import load_run

    calib = read_dataset(str(tiny_vials), "calib")
    assert any(r.label == 1 and r.mask_path for r in calib)  # the fixture's calib split has masked defects
    config = aexad_config(tiny_vials, tmp_path / "runs")
    trained = {}

    def keep_weights(trainer) -> None:
        parts = trainer.networks.checkpoint_parts()
        trained.update({f"{k}/{w.path}": w.numpy() for k, part in parts.items() for w in part.weights})

    result = fit(config, progress=False, on_train_end=keep_weights)
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["global_step"] == 8
    run = load_run(result.run_dir)
    assert run.config.supervised.classes[0] == "good" and len(run.config.supervised.classes) >= 2
    # the run restores exactly the trained weights of every layer (one the checkpoint missed would keep its
    # initial weights, and the export parity below could not tell)
    restored = run.inference_model
    parts = {"extractor": restored.extractor, "decoder": restored.decoder}
    restored_weights = {f"{k}/{w.path}": w.numpy() for k, part in parts.items() for w in part.weights}
    assert restored_weights.keys() == trained.keys()
    initial = tiny_networks().decoder.weights
    assert any(not np.array_equal(w.numpy(), trained[f"decoder/{w.path}"]) for w in initial)  # it trained
    for name, value in trained.items():
        np.testing.assert_array_equal(restored_weights[name], value, err_msg=name)
    calibrate = ["calibrate", str(result.run_dir), "--data", str(tiny_vials), "--no-progress"]
    assert main([*calibrate, "--policy", "false-reject-budget", "--false-reject-budget", "0.5"]) == 0
    models = tmp_path / "savedmodels"
    assert main(["export", str(result.run_dir), "--savedmodels", str(models)]) == 0  # verifies parity first
    version = models / "aexad-tiny" / "1"
    manifest = json.loads((version / "tfad_manifest.json").read_text())
    assert manifest["model_family"] == "aexad" and manifest["score"]["patch_score"] == "max"
    assert manifest["signature"]["outputs"] == ["score", "heatmap", "reconstruction"]
    assert manifest["aexad"] == {"scaling": 2.0, "blur_sigma": 1.0, "score": "max"}
    records = read_dataset(str(tiny_vials), "test")
    images = load_images(records, (32, 32), 1)
    assert_servers_score_like_python(
        version, images, [r.region for r in records], tmp_path, score_atol=1e-4, cycle_budget_ms=10000
    )


def test_config_errors_of_the_aexad_keys(tmp_path, capsys, monkeypatch) -> None:
    # the walk of tests/training/test_config_keys.py, on this family's keys only
    from tests.training.test_config_keys import KEYS, Workspace, invalid_values, run_case

    keys = [k for k in KEYS if k.path.startswith("aexad.") or k.family == "aexad"]
    paths = {k.path for k in keys}
    assert {"aexad.scaling", "aexad.blur_sigma", "aexad.score"} <= paths
    assert {"model.overrides.train_encoder", "model.overrides.decoder_width"} <= paths
    ws = Workspace(tmp_path)
    monkeypatch.chdir(ws.root / "cwd")
    failures = []
    for key in keys:
        wrong, bad = invalid_values(key, ws)
        for value, why in wrong + bad:
            problem = run_case(key, value, ws, capsys)
            if problem:
                failures.append(f"{key.path}: {value!r} ({why}): {problem}")
    assert not failures, "\n".join(failures)
    # the scaling's bound keeps (F - x)^2 > 0 for pixels in [0, 1]; the message names the key
    with pytest.raises(ConfigError, match=r"^aexad.scaling must be in \(1, 100\], got 1.0"):
        from_dict({"model": {"family": "aexad"}, "aexad": {"scaling": 1.0}})
    # an image size the decoder cannot reach from the latent grid by x2 upsamplings
    with pytest.raises(ConfigError, match="backbone_input_size"):
        from_dict({"model": {"family": "aexad", "overrides": {"backbone_input_size": 96}}})
