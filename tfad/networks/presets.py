"""Preset selection and knob checks shared by the architecture dataclasses of every model family."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, TypeVar

Arch = TypeVar("Arch")


def select_preset(presets: dict[str, Arch], name: str, family_title: str, overrides: dict[str, Any]) -> Arch:
    """``presets[name]`` with ``overrides`` applied and validated.

    Raises:
        ValueError: unknown preset (listing the presets), unknown knob (listing the knobs), or the
            architecture's own ``validate()`` complaint.
    """
    if name not in presets:
        raise ValueError(f"unknown {family_title} preset {name!r}; choose one of {sorted(presets)}")
    known = {f.name for f in fields(presets[name])}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown architecture field(s) {unknown}; valid: {sorted(known)}")
    arch = replace(presets[name], **overrides)
    arch.validate()
    return arch


def require_positive_ints(arch: Any, names: tuple[str, ...]) -> None:
    """ValueError naming the first of ``names`` that is not a positive integer on ``arch``."""
    for name in names:
        value = getattr(arch, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"model.{name} must be a positive integer, got {value!r}")
