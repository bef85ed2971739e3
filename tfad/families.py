"""The model families ``tfad fit`` trains, and how each is built, trained and scored.

One entry per ``model.family``. Everything family-specific that the shared machinery (``tfad fit``, run
loading, scoring, export) needs goes through :class:`ModelFamily`, so adding a family touches this file, its
networks (``tfad.models``), its losses, its trainer (``tfad.training``) and its score function
(``tfad.scoring``) - not the CLI, calibration, evaluation or the servers.

Every family's serving contract is the same: uint8 images ``[N, H, W, C]`` in, ``score`` [N] (higher = more
anomalous), ``heatmap`` [N, H, W] and ``reconstruction`` [N, H, W, C] out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ModelFamily:
    """Base of a family entry. Heavy imports happen inside the methods (the CLI starts fast)."""

    name: str = ""
    title: str = ""
    default_preset: str = ""
    default_learning_rate: float = 1e-4

    def presets(self) -> dict[str, Any]:
        """Preset name -> architecture."""
        raise NotImplementedError

    def preset(self, name: str, **overrides: Any) -> Any:
        """The validated architecture of preset ``name`` with ``overrides``; ValueError naming the problem."""
        raise NotImplementedError

    def networks(self, arch: Any) -> Any:
        """All networks of the family (``checkpoint_parts``, ``inference_parts``, ``build_inference_model``,
        ``parameter_counts``)."""
        raise NotImplementedError

    def trainer(self, networks: Any, config: Any, steps_per_epoch: int) -> Any:
        """The compiled training wrapper (a ``keras.Model`` with ``train_step``/``test_step``)."""
        raise NotImplementedError

    def score_function(self, inference_model: Any, config: Any) -> Callable[[Any], dict]:
        """uint8 images -> ``{"score", "heatmap", "reconstruction"}``: the function Python scoring runs and
        the SavedModel signature traces."""
        raise NotImplementedError

    def score_description(self, config: Any) -> dict[str, Any]:
        """The manifest's ``score`` block."""
        raise NotImplementedError


class ResGANADFamily(ModelFamily):
    """ResGANAD: wide residual autoencoder GAN, 1-SSIM score (003 s. 8.2.2.5)."""

    name = "resganad"
    title = "ResGANAD"
    default_preset = "line-cpu"
    default_learning_rate = 1.5e-4

    def presets(self) -> dict[str, Any]:  # noqa: D102
        from tfad.models.resganad import PRESETS

        return PRESETS

    def preset(self, name: str, **overrides: Any) -> Any:  # noqa: D102
        from tfad.models.resganad import preset

        return preset(name, **overrides)

    def networks(self, arch: Any) -> Any:  # noqa: D102
        from tfad.models.resganad import ResGANADNetworks

        return ResGANADNetworks(arch)

    def trainer(self, networks: Any, config: Any, steps_per_epoch: int) -> Any:  # noqa: D102
        import keras

        from tfad.training.resganad import ResGANADLossWeights, ResGANADTrainer

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
        from tfad.scoring.reconstruction import score_images

        return lambda images: score_images(inference_model, images)

    def score_description(self, config: Any) -> dict[str, Any]:  # noqa: D102
        return {
            "name": "1-ssim",
            "higher_is_anomalous": True,
            "heatmap": "per-image min-max normalised |X - X_hat|",
        }


class GRDNetFamily(ModelFamily):
    """GRD-Net: residual GANomaly + discriminative U-Net with ROI focal loss (003 s. 8.2.2.4, ch. 9)."""

    name = "grdnet"
    title = "GRD-Net"
    default_preset = "crae"
    default_learning_rate = 1e-4

    def presets(self) -> dict[str, Any]:  # noqa: D102
        from tfad.models.grdnet import PRESETS

        return PRESETS

    def preset(self, name: str, **overrides: Any) -> Any:  # noqa: D102
        from tfad.models.grdnet import preset

        return preset(name, **overrides)

    def networks(self, arch: Any) -> Any:  # noqa: D102
        from tfad.models.grdnet import GRDNetNetworks

        return GRDNetNetworks(arch)

    def trainer(self, networks: Any, config: Any, steps_per_epoch: int) -> Any:  # noqa: D102
        from tfad.training.grdnet import GRDNetTrainer

        trainer = GRDNetTrainer(networks, config.grdnet)
        trainer.compile_with_adam(config.training.learning_rate, config.training.adam_beta_1)
        return trainer

    def score_function(self, inference_model: Any, config: Any) -> Callable[[Any], dict]:  # noqa: D102
        from tfad.scoring.discriminative import score_anomaly_map

        roi = inference_roi(config)
        size = config.grdnet.score_filter_size
        return lambda images: score_anomaly_map(inference_model, images, size, roi)

    def score_description(self, config: Any) -> dict[str, Any]:  # noqa: D102
        return {
            "name": f"max of the {config.grdnet.score_filter_size}x{config.grdnet.score_filter_size} "
            "mean-filtered anomaly map",
            "higher_is_anomalous": True,
            "heatmap": "anomaly map A of the discriminative U-Net in [0, 1]"
            + (" times the inference ROI" if config.grdnet.inference_roi else ""),
            "inference_roi": config.grdnet.inference_roi,
        }


def inference_roi(config: Any):
    """The configured GRD-Net inference ROI as a 0/1 ``[H, W]`` float array at model size, or None.

    Raises FileNotFoundError / CorruptImageError naming the file.
    """
    path = config.grdnet.inference_roi
    if not path:
        return None
    from pathlib import Path

    from tfad.data.decode import load_binary_mask

    if not Path(path).is_file():
        raise FileNotFoundError(2, "grdnet.inference_roi mask not found", str(path))
    size = config.data.image_size
    return load_binary_mask(path, (size, size), None)[..., 0].astype("float32")


_FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (ResGANADFamily(), GRDNetFamily())}


def family(name: str) -> ModelFamily:
    """The family entry for ``model.family`` ``name``; ValueError listing the families."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; choose one of {sorted(_FAMILIES)}") from None
