"""The plain convolutional autoencoder (issue 16 item 1, seed 004): its two losses and its score on
constructed inputs, a tiny training whose loss falls, the run restoring exactly the trained weights, each
variant's fit -> export -> both servers, and resumption."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfad.cli import main
from tfad.config import from_dict

# 32x32 patches, two stages: an 8x8x16 map, a 16-dimensional code; seconds per fit on 2 cores.
TINY = {"base_width": 8, "max_width": 16, "stages": 2, "latent_dim": 16}


def ae_config(root: Path, output_dir: Path, variant: str = "plain", **training):
    return from_dict(
        {
            "name": f"ae-{variant}",
            "output_dir": str(output_dir),
            "model": {"family": "autoencoder", "preset": "line", "overrides": dict(TINY)},
            "data": {"root": str(root), "image_size": 32, "validation_fraction": 0.34},
            "training": {
                "epochs": 2,
                "batch_size": 4,
                "steps_per_epoch": 5,
                "validation_steps": 1,
                "checkpoint_every_steps": 5,
                "learning_rate": 2e-3,
                "seed": 0,
                **training,
            },
            "autoencoder": {"variant": variant},
            "calibration": {"run_k": 1, "run_n": 2},
        }
    )


def constant(value: float, shape=(1, 16, 16, 1)) -> tf.Tensor:
    return tf.fill(shape, np.float32(value))


def test_mse_ssim_loss_of_constant_images_is_the_hand_computed_value() -> None:
    from tfad.losses.autoencoder import mse_ssim_loss

    target, reconstruction = constant(0.0), constant(0.1)
    # constant images: no variance, so SSIM is its luminance term alone, (2 mu_x mu_y + C1) / (mu_x^2 +
    # mu_y^2 + C1) with C1 = 0.01^2, here C1 / (0.1^2 + C1); the MSE is 0.1^2. (A black target keeps it
    # exact in float32: between two grey levels the variance terms are differences of nearly equal numbers,
    # whose rounding moves SSIM by 1e-4 against C2 = 0.03^2.)
    ssim = 1e-4 / (0.1**2 + 1e-4)
    expected = 0.1 * 0.01 + 0.9 * (1 - ssim)
    assert float(mse_ssim_loss(target, reconstruction)) == pytest.approx(expected, rel=1e-5)
    assert float(mse_ssim_loss(target, reconstruction, 1.0, 0.0)) == pytest.approx(0.01, rel=1e-5)
    assert float(mse_ssim_loss(target, reconstruction, 0.0, 2.0)) == pytest.approx(2 * (1 - ssim), rel=1e-5)
    assert float(mse_ssim_loss(target, target)) == pytest.approx(0.0, abs=1e-6)


def test_masked_loss_weighs_the_mean_errors_of_clean_and_corrupted_pixels() -> None:
    from tfad.losses.autoencoder import masked_reconstruction_loss

    target = np.full((2, 8, 8, 1), 0.5, np.float32)
    reconstruction = target.copy()
    mask = np.zeros((2, 8, 8, 1), np.float32)
    # image 0: a 4x4 corrupted patch (16 of 64 pixels) reconstructed 0.5 off, the rest 0.1 off
    mask[0, :4, :4] = 1.0
    reconstruction[0] += 0.1
    reconstruction[0, :4, :4] = 0.0
    # image 1: nothing corrupted, 0.2 off everywhere: only its clean term counts
    reconstruction[1] += 0.2
    lam = 0.9
    expected = ((1 - lam) * 0.1**2 + lam * 0.5**2 + (1 - lam) * 0.2**2) / 2
    got = float(masked_reconstruction_loss(tf.constant(target), tf.constant(reconstruction), mask, lam))
    assert got == pytest.approx(expected, rel=1e-6)
    # each term is a mean over its own pixels, whatever their number: image 0's mask grown to the top half
    # (32 pixels: the 16 at error 0.5 and 16 at 0.1) averages both errors; the clean term stays 0.1^2
    bigger = mask.copy()
    bigger[0, :4, :] = 1.0
    mixed = float(masked_reconstruction_loss(tf.constant(target), tf.constant(reconstruction), bigger, lam))
    expected_mixed = ((1 - lam) * 0.01 + lam * (0.25 + 0.01) / 2 + (1 - lam) * 0.04) / 2
    assert mixed == pytest.approx(expected_mixed, rel=1e-6)
    # the same error on a twice larger corrupted area costs the same
    reconstruction_big = reconstruction.copy()
    reconstruction_big[0, :4, :] = 0.0
    same = masked_reconstruction_loss(tf.constant(target), tf.constant(reconstruction_big), bigger, lam)
    assert float(same) == pytest.approx(expected, rel=1e-6)
    # a one-channel mask applies to every channel of a 3-channel image (the norms count channels)
    rgb = float(
        masked_reconstruction_loss(
            tf.constant(np.repeat(target, 3, -1)), tf.constant(np.repeat(reconstruction, 3, -1)), mask, lam
        )
    )
    assert rgb == pytest.approx(expected, rel=1e-6)
    assert float(masked_reconstruction_loss(tf.constant(target), tf.constant(target), mask, lam)) == 0.0


def test_score_is_alpha_mse_plus_one_minus_alpha_times_one_minus_ssim() -> None:
    from tfad.families.autoencoder.scoring import combined_score, mse_score, score_images

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32, 1)).astype(np.uint8)
    x = images.astype(np.float32) / 255.0
    reconstructions = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    mse = ((x - reconstructions) ** 2).mean(axis=(1, 2, 3))
    # tf.image.ssim: an independent implementation of the same SSIM (11x11 Gaussian window, sigma 1.5)
    ssim = tf.image.ssim(tf.constant(x), tf.constant(reconstructions), max_val=1.0).numpy()
    # alpha = 1: the MSE and nothing else (bit for bit the MSE term; NumPy sums in another order)
    np.testing.assert_array_equal(
        combined_score(x, reconstructions, 1.0).numpy(), mse_score(x, reconstructions).numpy()
    )
    np.testing.assert_allclose(combined_score(x, reconstructions, 1.0).numpy(), mse, rtol=1e-6)
    np.testing.assert_allclose(combined_score(x, reconstructions, 0.0).numpy(), 1 - ssim, atol=2e-5)
    np.testing.assert_allclose(
        combined_score(x, reconstructions, 0.3).numpy(), 0.3 * mse + 0.7 * (1 - ssim), atol=2e-5
    )
    # the serving function: the same score of its own reconstruction, the min-max |X - X_hat| heatmap
    out = score_images(lambda batch, training: tf.constant(reconstructions), tf.constant(images), 0.3)
    np.testing.assert_allclose(out["score"].numpy(), 0.3 * mse + 0.7 * (1 - ssim), atol=2e-5)
    diff = np.abs(x - reconstructions)[..., 0]
    low, high = diff.min(axis=(1, 2), keepdims=True), diff.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out["heatmap"].numpy(), (diff - low) / (high - low), atol=1e-5)
    np.testing.assert_array_equal(out["reconstruction"].numpy(), reconstructions)


@pytest.mark.parametrize("variant", ["plain", "self-supervised"])
def test_a_tiny_training_run_lowers_the_loss(variant) -> None:
    from tfad.families.autoencoder.networks import PRESETS, AutoencoderNetworks
    from tfad.families.autoencoder.trainer import AutoencoderLoss, AutoencoderTrainer

    tf.keras.utils.set_random_seed(0)
    arch = dataclasses.replace(PRESETS["line"], image_size=32, **TINY)
    trainer = AutoencoderTrainer(AutoencoderNetworks(arch), AutoencoderLoss(variant=variant))
    trainer.compile_with_adam(2e-3)
    # smooth images (a few gradients) and a corrupted square in each
    ramp = np.linspace(0.2, 0.8, 32, dtype=np.float32)
    clean = np.stack([np.add.outer(ramp * a, ramp * (1 - a))[..., None] / 1.0 for a in (0.2, 0.4, 0.6, 0.8)])
    mask = np.zeros_like(clean)
    mask[:, 8:16, 8:16] = 1.0
    corrupted = np.where(mask > 0, 1.0 - clean, clean)
    batch = {"image": tf.constant(corrupted), "target": tf.constant(clean), "noise_mask": tf.constant(mask)}
    step = tf.function(trainer.train_step)
    losses = []
    for _ in range(60):
        trainer.reset_metrics()  # each step's own loss, not the running mean
        losses.append(float(step(batch)["total_loss"][0]))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.6 * first, (first, last)


@pytest.mark.parametrize("variant", ["plain", "self-supervised"])
def test_each_variant_fits_restores_exports_and_both_servers_serve_it(variant, tiny_vials, tmp_path) -> None:
    from tests.serving.serving_testutils import assert_servers_score_like_python
    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset
    from tfad.training.fit import fit
    from tfad.training.runs import load_run

    config = ae_config(tiny_vials, tmp_path / "runs", variant)
    trained = {}

    def keep_weights(trainer) -> None:
        parts = trainer.networks.checkpoint_parts()
        trained.update({f"{k}/{w.path}": w.numpy() for k, part in parts.items() for w in part.weights})

    result = fit(config, progress=False, on_train_end=keep_weights)
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["global_step"] == 10
    # every weight (BatchNorm statistics included) restored exactly: a layer the checkpoint missed would keep
    # its initial weights and the export parity below could not tell
    restored = load_run(result.run_dir).inference_model
    restored_weights = {}
    for k in ("encoder", "decoder"):
        restored_weights.update({f"{k}/{w.path}": w.numpy() for w in restored.get_layer(k).weights})
    assert restored_weights.keys() == trained.keys() and len(trained) > 10
    for name, value in trained.items():
        np.testing.assert_array_equal(restored_weights[name], value, err_msg=name)
    calibrate = ["calibrate", str(result.run_dir), "--data", str(tiny_vials), "--no-progress"]
    assert main([*calibrate, "--policy", "false-reject-budget", "--false-reject-budget", "0.5"]) == 0
    models = tmp_path / "savedmodels"
    assert main(["export", str(result.run_dir), "--savedmodels", str(models)]) == 0  # verifies parity first
    version = models / f"ae-{variant}" / "1"
    manifest = json.loads((version / "tfad_manifest.json").read_text())
    assert manifest["model_family"] == "autoencoder" and manifest["score"]["variant"] == variant
    assert manifest["score"]["alpha"] == 0.1 and manifest["autoencoder"]["score_alpha"] == 0.1
    assert manifest["signature"]["outputs"] == ["score", "heatmap", "reconstruction"]
    if variant != "plain":
        return  # the servers run the same graph for both variants: served once
    records = read_dataset(str(tiny_vials), "test")
    images = load_images(records, (32, 32), 1)
    assert_servers_score_like_python(
        version, images, [r.region for r in records], tmp_path, score_atol=1e-5, cycle_budget_ms=10000
    )


def test_an_interrupted_fit_resumes_to_the_same_weights(tiny_vials, tmp_path) -> None:
    from tfad.training.fit import fit

    def weights_of(into: dict):
        def keep(trainer) -> None:
            into.update({w.path: w.numpy() for w in trainer.networks.encoder.weights})

        return keep

    straight, resumed = {}, {}
    straight_config = ae_config(tiny_vials, tmp_path / "a", "self-supervised")
    fit(straight_config, progress=False, on_train_end=weights_of(straight))
    config = ae_config(tiny_vials, tmp_path / "b", "self-supervised")
    first = fit(config, progress=False, should_stop=lambda step: step >= 3)
    assert first.status == "interrupted" and first.global_step == 3
    second = fit(config, resume=True, progress=False, on_train_end=weights_of(resumed))
    assert second.status == "finished" and second.global_step == 10
    # the optimizer state and the P_q stream continue where they stopped: the same weights as without a stop
    for name, value in straight.items():
        np.testing.assert_allclose(resumed[name], value, rtol=1e-3, atol=1e-4, err_msg=name)
