"""The GANomaly and DRAEM baselines (issue 16, item 3): their losses and scores on constructed inputs, DRAEM's
training inputs, a tiny training of each whose loss falls, the CPU presets' cost, and each family's
fit -> checkpoint restore -> export -> both servers."""

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

# 32x32 patches, a few thousand parameters: seconds per fit on 2 cores.
TINY = {
    "ganomaly": {"stem_stride": 2, "stages": 2, "base_width": 4, "stem_filters": 4, "latent_dim": 8},
    "draem": {
        "stem_stride": 2, "base_width": 4, "depth": 3, "unet_stem_stride": 2, "unet_base_width": 4,
        "unet_depth": 3,
    },
}  # fmt: skip


def baseline_config(family: str, root: Path, output_dir: Path, **extra):
    return from_dict(
        {
            "name": f"tiny-{family}",
            "output_dir": str(output_dir),
            "model": {"family": family, "preset": "line", "overrides": dict(TINY[family])},
            "data": {"root": str(root), "image_size": 32, "validation_fraction": 0.34},
            "training": {
                "epochs": 2,
                "batch_size": 4,
                "steps_per_epoch": 3,
                "validation_steps": 1,
                "learning_rate": 2e-3,
                "seed": 0,
            },
            "calibration": {"run_k": 1, "run_n": 2},
            **extra,
        }
    )


# ---------------------------------------------------------------- GANomaly: losses and score, by hand


def test_ganomaly_losses_match_a_hand_computation() -> None:
    from tfad.losses.baselines import ganomaly_generator_losses

    target = tf.constant(np.full((1, 2, 2, 1), 0.5, np.float32))
    reconstruction = tf.constant(np.array([0.5, 0.7, 0.1, 0.5], np.float32).reshape(1, 2, 2, 1))
    real = tf.constant([[1.0, 2.0, 3.0]])
    fake = tf.constant([[1.0, 0.0, 4.0]])
    z, z_hat = tf.constant([[0.0, 1.0], [2.0, 2.0]]), tf.constant([[1.0, 1.0], [2.0, -1.0]])
    parts = ganomaly_generator_losses(target, reconstruction, real, fake, z, z_hat)
    adv = (0 + 4 + 1) / 3  # mean squared feature difference
    con = (0 + 0.2 + 0.4 + 0) / 4  # mean absolute pixel difference
    enc = (1 + 0 + 0 + 9) / 4  # mean squared latent difference
    assert float(parts["adv_loss"]) == pytest.approx(adv, rel=1e-6)
    assert float(parts["con_loss"]) == pytest.approx(con, rel=1e-6)
    assert float(parts["enc_loss"]) == pytest.approx(enc, rel=1e-6)
    assert float(parts["generator_loss"]) == pytest.approx(1 * adv + 50 * con + 1 * enc, rel=1e-6)
    weighted = ganomaly_generator_losses(target, reconstruction, real, fake, z, z_hat, 2.0, 10.0, 0.5)
    assert float(weighted["generator_loss"]) == pytest.approx(2 * adv + 10 * con + 0.5 * enc, rel=1e-6)


def test_ganomaly_score_is_the_latent_distance_and_the_heatmap_the_absolute_error() -> None:
    from tfad.families.ganomaly.scoring import latent_distance, score_images

    z = np.array([[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]], np.float32)
    z_hat = np.array([[0.0, 3.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0]], np.float32)
    np.testing.assert_allclose(latent_distance(tf.constant(z), tf.constant(z_hat)).numpy(), [5 / 4, 0.0])
    images = np.zeros((2, 4, 4, 1), np.uint8)
    images[0, 1, 2] = 255
    reconstruction = np.full((2, 4, 4, 1), 0.25, np.float32)

    def model(x, training=False):  # a stand-in inference model with fixed outputs
        return {"reconstruction": tf.constant(reconstruction), "latent": tf.constant(z),
                "latent_reconstruction": tf.constant(z_hat)}  # fmt: skip

    out = score_images(model, tf.constant(images))
    np.testing.assert_allclose(out["score"].numpy(), [1.25, 0.0])
    expected = np.full((2, 4, 4), 0.25, np.float32)
    expected[0, 1, 2] = 0.75  # |1 - 0.25|: not normalised per image
    np.testing.assert_allclose(out["heatmap"].numpy(), expected, rtol=1e-6)


# ---------------------------------------------------------------- DRAEM: losses, map score, inputs


def test_draem_losses_match_a_hand_computation() -> None:
    from tfad.losses.baselines import draem_losses

    rng = np.random.default_rng(0)
    target = rng.uniform(0.2, 0.8, (2, 16, 16, 1)).astype(np.float32)
    mask = np.zeros((2, 16, 16, 1), np.float32)
    mask[0, :4, :4] = 1.0
    anomaly_map = np.where(mask > 0, 0.8, 0.1).astype(np.float32)
    # focal loss (gamma 2): -(1-p)^2 log p on the 16 anomalous pixels, -p^2 log(1-p) on the 496 others
    focal = (16 * -(0.2**2) * math.log(0.8) + 496 * -(0.1**2) * math.log(0.9)) / 512
    exact = draem_losses(target, tf.constant(target), anomaly_map, mask)
    assert float(exact["l2_loss"]) == 0.0 and float(exact["ssim_loss"]) == pytest.approx(0.0, abs=1e-6)
    assert float(exact["focal_loss"]) == pytest.approx(focal, rel=1e-5)
    assert float(exact["total_loss"]) == pytest.approx(focal, rel=1e-5)
    shifted = target + 0.1
    parts = draem_losses(target, tf.constant(shifted), anomaly_map, mask, ssim_weight=2.0, focal_gamma=0.0)
    ssim_term = 1.0 - float(tf.reduce_mean(tf.image.ssim(target, shifted, 1.0)))
    bce = (16 * -math.log(0.8) + 496 * -math.log(0.9)) / 512  # gamma 0: the binary cross-entropy
    assert float(parts["l2_loss"]) == pytest.approx(0.01, rel=1e-4)
    assert float(parts["ssim_loss"]) == pytest.approx(ssim_term, abs=1e-5) and ssim_term > 0.001
    assert float(parts["focal_loss"]) == pytest.approx(bce, rel=1e-5)
    assert float(parts["total_loss"]) == pytest.approx(0.01 + 2 * ssim_term + bce, rel=1e-4)


def test_draem_score_is_the_max_of_the_mean_filtered_map() -> None:
    from tfad.families import family

    anomaly_map = np.zeros((3, 64, 64, 1), np.float32)
    anomaly_map[0, 20:41, 30:51] = 1.0  # a 21x21 blob: one window lies wholly inside it
    anomaly_map[1, 32, 32] = 1.0  # a single hot pixel away from the border: diluted to 1/441
    anomaly_map[2, 0:11, 0:11] = 1.0  # an 11x11 corner blob: the corner's window holds only 11x11 pixels

    def model(x, training=False):
        return {"anomaly_map": tf.constant(anomaly_map), "reconstruction": x}

    config = from_dict({"model": {"family": "draem"}, "draem": {"score_filter_size": 21}})
    out = family("draem").score_function(model, config)(tf.zeros((3, 64, 64, 1), tf.uint8))
    np.testing.assert_allclose(out["score"].numpy(), [1.0, 1 / 441, 1.0], rtol=1e-5)
    np.testing.assert_array_equal(out["heatmap"].numpy(), anomaly_map[..., 0])


def test_draem_training_inputs_differ_from_the_clean_image_exactly_inside_the_mask(tiny_vials) -> None:
    from tfad.data.layouts import read_dataset
    from tfad.families.draem.trainer import training_inputs
    from tfad.training.inputs import training_dataset

    config = baseline_config("draem", tiny_vials, Path("unused"), synthesis={"probability": 1.0})
    records = read_dataset(str(tiny_vials), "train")
    batch = next(iter(training_dataset(records, config, augment=False, batch_size=8)))
    corrupted, clean, mask = (t.numpy() for t in training_inputs(batch))
    inside = mask[..., 0] > 0
    assert inside.any() and not inside.all()
    differs = np.abs(corrupted - clean).max(axis=-1) > 0
    np.testing.assert_array_equal(differs, inside)


# ---------------------------------------------------------------- presets, tiny training


def test_line_presets_are_sized_for_a_cpu_line_pc() -> None:
    from tfad.families.draem.networks import DRAEMNetworks
    from tfad.families.draem.networks import preset as draem_preset
    from tfad.families.ganomaly.networks import GANomalyNetworks
    from tfad.families.ganomaly.networks import preset as ganomaly_preset
    from tfad.networks.flops import count_flops

    # GFLOP per 256x256 grayscale patch of the whole inference path (README's preset table)
    ganomaly = count_flops(GANomalyNetworks(ganomaly_preset("line")).build_inference_model()) / 1e9
    draem = count_flops(DRAEMNetworks(draem_preset("line")).build_inference_model()) / 1e9
    assert 0.2 < ganomaly < 0.3, ganomaly
    assert 0.4 < draem < 0.6, draem
    with pytest.raises(ValueError, match="unknown GANomaly preset"):
        ganomaly_preset("crae")
    with pytest.raises(ValueError, match="stem_stride"):
        ganomaly_preset("line", image_size=96)
    with pytest.raises(ValueError, match="unet_stem_stride"):
        draem_preset("line", image_size=96, unet_depth=5)


def test_tiny_trainings_lower_their_losses() -> None:
    from tfad.families.draem.networks import DRAEMNetworks
    from tfad.families.draem.networks import preset as draem_preset
    from tfad.families.draem.trainer import DRAEMTrainer
    from tfad.families.ganomaly.networks import GANomalyNetworks
    from tfad.families.ganomaly.networks import preset as ganomaly_preset
    from tfad.families.ganomaly.trainer import GANomalyTrainer

    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    # smooth images (a gradient and a blob) that a tiny network can learn to reconstruct
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    clean = np.stack([0.3 + 0.4 * (k / 7) * xx + 0.2 * yy for k in range(8)])[..., None].astype(np.float32)
    mask = np.zeros_like(clean)
    for i in range(8):
        y, x = rng.integers(4, 20, 2)
        mask[i, y : y + 8, x : x + 8] = 1.0
    corrupted = np.where(mask > 0, rng.uniform(0, 1, clean.shape), clean).astype(np.float32)
    batch = {"image": tf.constant(corrupted), "target": tf.constant(clean), "noise_mask": tf.constant(mask)}

    ganomaly = GANomalyTrainer(GANomalyNetworks(ganomaly_preset("line", image_size=32, **TINY["ganomaly"])))
    ganomaly.compile_with_adam(2e-3)
    draem = DRAEMTrainer(DRAEMNetworks(draem_preset("line", image_size=32, **TINY["draem"])))
    draem.compile_with_adam(2e-3, 0.9, total_steps=10_000)
    for trainer, key in ((ganomaly, "con_loss"), (draem, "total_loss")):
        step = tf.function(trainer.train_step)
        losses = []
        for _ in range(60):
            trainer.reset_metrics()  # each step's own loss, not the running mean
            losses.append(float(step(batch)[key][0]))
        first, last = np.mean(losses[:5]), np.mean(losses[-5:])
        assert last < 0.7 * first, (type(trainer).__name__, first, last)


# ---------------------------------------------------------------- fit -> restore -> export -> servers


@pytest.mark.parametrize("family_name", ["ganomaly", "draem"])
def test_each_baseline_fits_restores_exports_and_both_servers_serve_it(
    family_name, tiny_vials, tmp_path
) -> None:
    from tests.serving.serving_testutils import assert_servers_score_like_python
    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset
    from tfad.training.fit import fit
    from tfad.training.runs import load_run

    config = baseline_config(family_name, tiny_vials, tmp_path / "runs")
    trained = {}

    def keep_weights(trainer) -> None:
        parts = trainer.networks.inference_parts()
        trained.update({f"{k}/{w.path}": w.numpy() for k, part in parts.items() for w in part.weights})

    result = fit(config, progress=False, on_train_end=keep_weights)
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["global_step"] == 6
    # the run restores exactly the trained weights of every inference layer (BatchNorm statistics included)
    restored = load_run(result.run_dir).inference_model
    restored_weights = {}
    for layer in restored.layers:
        if isinstance(layer, tf.keras.Model):
            restored_weights.update({f"{layer.name}/{w.path}": w.numpy() for w in layer.weights})
    assert restored_weights.keys() == trained.keys() and trained
    for name, value in trained.items():
        np.testing.assert_array_equal(restored_weights[name], value, err_msg=name)
    calibrate = ["calibrate", str(result.run_dir), "--data", str(tiny_vials), "--no-progress"]
    assert main([*calibrate, "--policy", "false-reject-budget", "--false-reject-budget", "0.5"]) == 0
    models = tmp_path / "savedmodels"
    assert main(["export", str(result.run_dir), "--savedmodels", str(models)]) == 0  # verifies parity first
    version = models / f"tiny-{family_name}" / "1"
    manifest = json.loads((version / "tfad_manifest.json").read_text())
    assert manifest["model_family"] == family_name and family_name in manifest
    assert manifest["signature"]["outputs"] == ["score", "heatmap", "reconstruction"]
    records = read_dataset(str(tiny_vials), "test")
    images = load_images(records, (32, 32), 1)
    assert_servers_score_like_python(
        version, images, [r.region for r in records], tmp_path, score_atol=1e-6, cycle_budget_ms=10000
    )


def test_new_config_sections_have_the_papers_defaults() -> None:
    config = from_dict({"model": {"family": "draem"}})
    assert dataclasses.astuple(config.ganomaly) == (1.0, 50.0, 1.0)
    assert (config.draem.ssim, config.draem.focal_gamma, config.draem.score_filter_size) == (1.0, 2.0, 21)
    assert config.training.learning_rate == 1e-4 and config.training.adam_beta_1 == 0.9
    assert from_dict({"model": {"family": "ganomaly"}}).training.learning_rate == 2e-4
