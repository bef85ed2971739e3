"""A tiny vial data set and a tiny trained run, shared by the training/export/CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfad.config import Config, from_dict

# ResGANAD small enough to train in seconds on 32x32 patches (same code paths as line-cpu).
TINY_ARCH = dict(
    stem_stride=2, stages=2, base_width=8, stem_filters=8, latent_dim=16, critic_base_width=8, critic_stages=2
)


# Training knobs shared by every tiny run: a few seconds per epoch on 2 cores.
TINY_TRAINING = dict(
    epochs=3,
    batch_size=8,
    steps_per_epoch=20,
    checkpoint_every_steps=5,
    validation_steps=2,
    learning_rate=2e-3,
)


def tiny_run_config(
    root: Path, output_dir: Path, name: str, model: dict, training: dict, **sections
) -> Config:
    """A complete, valid config of ``model`` on ``root`` at the tiny scale (32x32 patches)."""
    return from_dict(
        {
            "name": name,
            "output_dir": str(output_dir),
            "model": model,
            "data": {"root": str(root), "image_size": 32, "validation_fraction": 0.34},
            "training": {**TINY_TRAINING, **training},
            "calibration": {"run_k": 1, "run_n": 2},
            **sections,
        }
    )


def tiny_config(root: Path, output_dir: Path, name: str = "tiny", **training) -> Config:
    """A complete, valid config training TINY_ARCH on ``root``."""
    model = {"family": "resganad", "preset": "line-cpu", "overrides": TINY_ARCH}
    return tiny_run_config(root, output_dir, name, model, {"restart_epochs": 3.0, **training})


# GRD-Net at the same scale: both bottleneck kinds use these knobs.
TINY_GRDNET_ARCH = dict(
    stem_stride=2,
    stages=2,
    base_width=8,
    stem_filters=8,
    code_channels=8,
    dense_dim=64,
    unet_stem_stride=2,
    unet_base_width=8,
    unet_depth=3,
    critic_base_width=8,
    critic_stages=2,
)


def tiny_grdnet_config(
    root: Path, output_dir: Path, name: str = "tiny-grd", grdnet: dict | None = None, **training
) -> Config:
    """A complete, valid GRD-Net config training TINY_GRDNET_ARCH on ``root``."""
    model = {"family": "grdnet", "preset": "crae", "overrides": TINY_GRDNET_ARCH}
    grdnet_section = {"score_filter_size": 5, **(grdnet or {})}
    return tiny_run_config(root, output_dir, name, model, training, grdnet=grdnet_section)


@pytest.fixture(scope="session")
def tiny_run(tiny_vials, tmp_path_factory):
    """A finished 3-epoch run of tiny_config: (config, FitResult)."""
    from tfad.training.fit import fit

    config = tiny_config(tiny_vials, tmp_path_factory.mktemp("runs"))
    return config, fit(config, progress=False)
