"""The checks of the ``supervised`` config section, shared by the two supervised families (classifier,
segmentation). No TensorFlow here: the families' entries import it when the registry loads."""

from __future__ import annotations

from tfad.schema import Config, require


def check_supervised_section(config: Config) -> None:
    """ConfigError naming a bad ``supervised.classes`` (the section's other keys are checked by their
    schema rules, :mod:`tfad.schema`)."""
    sv = config.supervised
    if sv.classes is not None:
        require(
            len(sv.classes) >= 2 and sv.classes[0] == "good" and len(set(sv.classes)) == len(sv.classes),
            f"supervised.classes: at least two distinct names, 'good' first, got {sv.classes}",
        )
