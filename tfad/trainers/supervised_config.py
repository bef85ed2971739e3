"""The checks of the ``supervised`` config section, shared by the two supervised families (classifier,
segmentation). No TensorFlow here: the families' entries import it when the registry loads."""

from __future__ import annotations

from tfad.schema import Config, require


def check_supervised_section(config: Config) -> None:
    """ConfigError naming a bad value of the ``supervised`` section (read by both supervised families)."""
    sv = config.supervised
    require(
        0.0 <= sv.synthetic_probability <= 1.0,
        f"supervised.synthetic_probability must be in [0, 1], got {sv.synthetic_probability}",
    )
    require(
        sv.class_weighting in ("balanced", "none"),
        f"supervised.class_weighting: balanced or none, got {sv.class_weighting!r}",
    )
    require(
        sv.segmentation_loss in ("dice+bce", "dice+focal"),
        f"supervised.segmentation_loss: dice+bce or dice+focal, got {sv.segmentation_loss!r}",
    )
    require(sv.focal_gamma >= 0, f"supervised.focal_gamma must be >= 0, got {sv.focal_gamma}")
    require(
        sv.score_filter_size >= 1 and sv.score_filter_size % 2 == 1,
        f"supervised.score_filter_size must be a positive odd integer, got {sv.score_filter_size}",
    )
    if sv.classes is not None:
        require(
            len(sv.classes) >= 2 and sv.classes[0] == "good" and len(set(sv.classes)) == len(sv.classes),
            f"supervised.classes: at least two distinct names, 'good' first, got {sv.classes}",
        )
