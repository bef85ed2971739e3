"""Training configuration: YAML files validated into frozen dataclasses (the public entry point).

The schema (sections, defaults, generic checks) is :mod:`tfad.schema`; what depends on the model family
(its defaults, the checks of the sections it reads, its architecture) is the family's (:mod:`tfad.families`).
This module puts both together for the drivers, the CLI and the tests; the families themselves import
:mod:`tfad.schema`, never this module.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml

from tfad import schema
from tfad.families import family, names
from tfad.families.base import ModelFamily
from tfad.schema import Config, ConfigError, dump_config, require

__all__ = ["Config", "ConfigError", "architecture", "dump_config", "from_dict", "load_config", "validate"]


def validate(config: Config) -> Config:
    """Range and cross-field checks of every key; returns ``config`` with the family defaults filled in
    (preset, learning rate) or raises ConfigError naming the key. The files and folders it names are
    checked by :func:`tfad.schema.check_paths` when training starts (a finished run stays usable without
    them)."""
    schema.check_name(config)
    families = names()
    require(config.model.family in families, f"model.family: one of {families}, got {config.model.family!r}")
    model_family = family(config.model.family)
    # A validated config states every family default explicitly (run.json, manifests, --resume).
    config = model_family.with_defaults(config)
    schema.check(config, fits_from_shards=model_family.trainable)
    for entry in map(family, families):  # every section is checked, also those of other families
        entry.validate_config(config)
    _check_architecture(config, model_family)
    return config


#: The config key that sets each architecture field the family takes from the config, not from overrides.
_KNOB_KEYS = {
    "image_size": "data.image_size",
    "channels": "data.channels",
    "num_classes": "supervised.classes",
}


def _check_architecture(config: Config, model_family: ModelFamily) -> None:
    """ConfigError naming ``model.preset``, the ``model.overrides.<knob>`` or the data key the family's
    architecture rejects."""
    preset, overrides = config.model.preset, config.model.overrides
    presets = model_family.presets()
    require(
        preset in presets,
        f"model.preset: unknown {model_family.title} preset {preset!r}; choose one of {sorted(presets)}",
    )
    knobs = model_family.data_knobs(config)
    for name in overrides:
        # the family would silently replace them by the config's values
        require(
            name not in knobs,
            f"model.overrides.{name}: set by {_KNOB_KEYS.get(name, 'the config')}, not by an override",
        )
    hints = typing.get_type_hints(type(presets[preset]))
    for name, value in overrides.items():
        if name in hints:  # an unknown knob is the preset's error, with the valid names (below)
            schema.check_type(value, hints[name], f"model.overrides.{name}")
    size, channels = config.data.image_size, config.data.channels
    schema.check_entries(
        lambda values: model_family.preset(preset, **{**values, **knobs}),
        overrides,
        "model.overrides",
        # overrides may be what makes a preset take a small input: only blamed on the data without them
        otherwise=f"data.image_size {size} / data.channels {channels} do not fit model.preset {preset!r}",
    )


def architecture(config: Config) -> Any:
    """The validated architecture of the configured model (preset + overrides + data size).

    Raises ValueError naming the bad preset or knob.
    """
    return family(config.model.family).architecture(config)


def from_dict(data: dict[str, Any]) -> Config:
    """Build and validate a Config from a nested dict."""
    return validate(schema.parse(data))


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file. Raises ConfigError / FileNotFoundError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "config file not found", str(path))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    try:
        return from_dict(data or {})
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
