"""The plain convolutional autoencoder family (seed 004, methods.md; issue 16 item 1).

An encoder of strided convolutions, a narrow bottleneck and a mirrored decoder, trained on good images with
MSE + SSIM (``autoencoder.variant: plain``) or, self-supervised, on P_q-corrupted images with the clean
image as target and the masked loss (``self-supervised``). The patch score is
``alpha * MSE + (1 - alpha) * (1 - SSIM)``, the heatmap the min-max |X - X_hat| of the other
reconstruction families (docs/autoencoder.md).

This folder: ``networks`` (architecture, presets, encoder and decoder), ``trainer`` (the ``keras.Model``
with the ``train_step``), ``scoring`` (the function the SavedModel runs). This module is the family's
entry in the registry (``tfad.families``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from tfad.families.base import ModelFamily
from tfad.schema import Config, require


class AutoencoderFamily(ModelFamily):
    """Plain convolutional autoencoder, MSE + SSIM or self-supervised masked loss (seed 004)."""

    name = "autoencoder"
    title = "autoencoder"
    default_preset = "line"
    default_learning_rate = 1e-4  # seed 004: Adam 1e-4 (Architecture 3, Model II)
    default_adam_beta_1 = 0.9  # Adam's default (the seed's); 0.5 is the GAN families'

    def validate_config(self, config: Config) -> None:  # noqa: D102
        a = config.autoencoder
        require(
            a.mse_weight > 0 or a.ssim_weight > 0,
            "autoencoder.mse_weight / autoencoder.ssim_weight: both 0 leaves the plain variant no loss",
        )

    def presets(self) -> dict[str, Any]:  # noqa: D102
        from tfad.families.autoencoder.networks import PRESETS

        return PRESETS

    def preset(self, name: str, **overrides: Any) -> Any:  # noqa: D102
        from tfad.families.autoencoder.networks import preset

        return preset(name, **overrides)

    def networks(self, arch: Any, config: Any = None, build: dict | None = None) -> Any:  # noqa: D102
        from tfad.families.autoencoder.networks import AutoencoderNetworks

        return AutoencoderNetworks(arch)

    def trainer(self, networks: Any, config: Any, steps_per_epoch: int, records: Any) -> Any:  # noqa: D102
        from tfad.families.autoencoder.trainer import AutoencoderLoss, AutoencoderTrainer

        a, t = config.autoencoder, config.training
        loss = AutoencoderLoss(a.variant, a.mse_weight, a.ssim_weight, a.corrupted_weight)
        trainer = AutoencoderTrainer(networks, loss)
        trainer.compile_with_adam(t.learning_rate, t.adam_beta_1)
        return trainer

    def score_function(self, inference_model: Any, config: Any) -> Callable[[Any], dict]:  # noqa: D102
        from tfad.families.autoencoder.scoring import score_images

        alpha = config.autoencoder.score_alpha
        return lambda images: score_images(inference_model, images, alpha)

    def score_description(self, config: Any) -> dict[str, Any]:  # noqa: D102
        alpha = config.autoencoder.score_alpha
        return {
            "name": f"{alpha:g} * MSE + {1 - alpha:g} * (1 - SSIM)",
            "patch_score": "alpha-mse-ssim",
            "alpha": alpha,
            "higher_is_anomalous": True,
            "heatmap": "per-image min-max normalised |X - X_hat|",
            "variant": config.autoencoder.variant,
        }

    def manifest_extras(self, config: Any) -> dict[str, Any]:  # noqa: D102
        return {"autoencoder": dataclasses.asdict(config.autoencoder)}
