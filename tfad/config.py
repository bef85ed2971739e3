"""Training configuration: YAML files validated into frozen dataclasses (the public entry point).

The schema (sections, defaults, generic checks) is :mod:`tfad.schema`; what depends on the model family
(its defaults, the checks of the sections it reads, its architecture) is the family's (:mod:`tfad.families`).
This module puts both together for the drivers, the CLI and the tests; the families themselves import
:mod:`tfad.schema`, never this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tfad import schema
from tfad.families import family, names
from tfad.schema import Config, ConfigError, dump_config, require

__all__ = ["Config", "ConfigError", "architecture", "dump_config", "from_dict", "load_config", "validate"]


def validate(config: Config) -> Config:
    """Range and cross-field checks; returns ``config`` with the family defaults filled in (preset, learning
    rate) or raises ConfigError."""
    schema.check_name(config)
    families = names()
    require(config.model.family in families, f"model.family: one of {families}, got {config.model.family!r}")
    model_family = family(config.model.family)
    # A validated config states every family default explicitly (run.json, manifests, --resume).
    config = model_family.with_defaults(config)
    schema.check(config, fits_from_shards=model_family.trainable)
    for entry in map(family, families):  # every section is checked, also those of other families
        entry.validate_config(config)
    try:
        model_family.architecture(config)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model: {err}") from err
    return config


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
