"""The ResGANAD family (003 s. 8.2.2.5): a wide residual autoencoder GAN trained on good images and P_q.

The trained family to read first (docs/architecture.md, "How to add a family"). This folder: ``networks``
(architecture, presets and the Keras networks E1, decoder, E2, critic), ``trainer`` (the ``keras.Model``
with the GAN ``train_step``), ``scoring`` (the patch score, 1-SSIM or map-max, and the heatmap: the
function the SavedModel runs). This module is the family's entry in the registry (``tfad.families``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tfad.families.base import ModelFamily


class ResGANADFamily(ModelFamily):
    """ResGANAD: wide residual autoencoder GAN, 1-SSIM or map-max score (003 s. 8.2.2.5)."""

    name = "resganad"
    title = "ResGANAD"
    default_preset = "line-cpu"
    default_learning_rate = 1.5e-4

    def presets(self) -> dict[str, Any]:  # noqa: D102
        from tfad.families.resganad.networks import PRESETS

        return PRESETS

    def preset(self, name: str, **overrides: Any) -> Any:  # noqa: D102
        from tfad.families.resganad.networks import preset

        return preset(name, **overrides)

    def networks(self, arch: Any, config: Any = None, build: dict | None = None) -> Any:  # noqa: D102
        from tfad.families.resganad.networks import ResGANADNetworks

        return ResGANADNetworks(arch)

    def trainer(self, networks: Any, config: Any, steps_per_epoch: int, records: Any) -> Any:  # noqa: D102
        import keras

        from tfad.families.resganad.trainer import ResGANADLossWeights, ResGANADTrainer

        t = config.training
        lw = t.loss_weights

        def schedule():
            return keras.optimizers.schedules.CosineDecayRestarts(
                t.learning_rate,
                first_decay_steps=max(1, round(t.restart_epochs * steps_per_epoch)),
                t_mul=1.0,
                m_mul=t.restart_factor,
                alpha=0.0,
            )

        trainer = ResGANADTrainer(
            networks,
            ResGANADLossWeights(lw.adversarial, lw.contextual, lw.latent, lw.noise, lw.huber, lw.ssim),
        )
        trainer.compile(
            generator_optimizer=keras.optimizers.Adam(schedule(), beta_1=t.adam_beta_1),
            critic_optimizer=keras.optimizers.Adam(schedule(), beta_1=t.adam_beta_1),
        )
        return trainer

    def score_function(self, inference_model: Any, config: Any) -> Callable[[Any], dict]:  # noqa: D102
        from tfad.families.resganad.scoring import score_images

        r = config.resganad
        return lambda images: score_images(
            inference_model, images, r.patch_score, r.score_map, r.score_filter_size
        )

    def score_description(self, config: Any) -> dict[str, Any]:  # noqa: D102
        r = config.resganad
        heatmap = "per-image min-max normalised |X - X_hat|"
        if r.patch_score == "ssim":
            return {"name": "1-ssim", "patch_score": "ssim", "higher_is_anomalous": True, "heatmap": heatmap}
        size = r.score_filter_size
        error = "local 1-SSIM" if r.score_map == "ssim" else "|X - X_hat|"
        return {
            "name": f"max of the {size}x{size} mean-filtered {error} map",
            "patch_score": "map-max",
            "score_map": r.score_map,
            "score_filter_size": size,
            "higher_is_anomalous": True,
            "heatmap": heatmap,
        }
