"""The GRD-Net family (003 s. 8.2.2.4, ch. 9): residual GANomaly + discriminative U-Net, ROI focal loss.

This folder: ``networks`` (architecture, presets, the generator, critic and U-Net), ``trainer`` (the
``keras.Model`` with three optimizers and the plateau learning rate), ``scoring`` (the patch score: by
default the maximum of the mean-filtered anomaly map, shared with the segmentation family
(``tfad.scoring.discriminative``), or 1-SSIM of the reconstruction). This module is the family's entry in
the registry (``tfad.families``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tfad.families.base import ModelFamily
from tfad.schema import Config, require


class GRDNetFamily(ModelFamily):
    """GRD-Net: residual GANomaly + discriminative U-Net with ROI focal loss (003 s. 8.2.2.4, ch. 9)."""

    name = "grdnet"
    title = "GRD-Net"
    default_preset = "crae"
    default_learning_rate = 1e-4

    def presets(self) -> dict[str, Any]:  # noqa: D102
        from tfad.families.grdnet.networks import PRESETS

        return PRESETS

    def preset(self, name: str, **overrides: Any) -> Any:  # noqa: D102
        from tfad.families.grdnet.networks import preset

        return preset(name, **overrides)

    def validate_config(self, config: Config) -> None:  # noqa: D102
        from tfad.losses.discriminative import ROI_LOSS_VARIANTS

        # the other grdnet.* keys: their schema rules (tfad.schema); the loss names are the loss module's
        g = config.grdnet
        require(
            g.roi_loss in ROI_LOSS_VARIANTS,
            f"grdnet.roi_loss: one of {ROI_LOSS_VARIANTS}, got {g.roi_loss!r}",
        )
        require(
            g.patch_score != "ssim" or not g.inference_roi,
            "grdnet.patch_score: ssim scores the whole patch and cannot honour grdnet.inference_roi; "
            "use map-max (or no inference ROI)",
        )

    def networks(self, arch: Any, config: Any = None, build: dict | None = None) -> Any:  # noqa: D102
        from tfad.families.grdnet.networks import GRDNetNetworks

        return GRDNetNetworks(arch)

    def trainer(self, networks: Any, config: Any, steps_per_epoch: int, records: Any) -> Any:  # noqa: D102
        from tfad.families.grdnet.trainer import GRDNetTrainer

        trainer = GRDNetTrainer(networks, config.grdnet)
        trainer.compile_with_adam(config.training.learning_rate, config.training.adam_beta_1)
        return trainer

    def score_function(self, inference_model: Any, config: Any) -> Callable[[Any], dict]:  # noqa: D102
        from tfad.families.grdnet.scoring import score_images

        roi = inference_roi(config)
        g = config.grdnet
        return lambda images: score_images(inference_model, images, g.patch_score, g.score_filter_size, roi)

    def score_description(self, config: Any) -> dict[str, Any]:  # noqa: D102
        g = config.grdnet
        if g.patch_score == "ssim":
            score = {
                "name": "1-ssim between the input and the generator's reconstruction",
                "patch_score": "ssim",
            }
        else:
            size = g.score_filter_size
            score = {
                "name": f"max of the {size}x{size} mean-filtered anomaly map",
                "patch_score": "map-max",
                "score_filter_size": size,
            }
        return {
            **score,
            "higher_is_anomalous": True,
            "heatmap": "anomaly map A of the discriminative U-Net in [0, 1]"
            + (" times the inference ROI" if g.inference_roi else ""),
            "inference_roi": g.inference_roi,
        }


def inference_roi(config: Any):
    """The configured GRD-Net inference ROI as a 0/1 ``[H, W]`` float array at model size, or None.

    Raises FileNotFoundError / CorruptImageError naming the file.
    """
    path = config.grdnet.inference_roi
    if not path:
        return None
    from tfad.data.decode import load_binary_mask

    if not Path(path).is_file():
        raise FileNotFoundError(2, "grdnet.inference_roi mask not found", str(path))
    size = config.data.image_size
    return load_binary_mask(path, (size, size), None)[..., 0].astype("float32")
