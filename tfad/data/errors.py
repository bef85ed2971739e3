"""Errors raised by ``tfad.data``."""

from __future__ import annotations


class DataError(ValueError):
    """A data set is missing, malformed or inconsistent. The message names the offending path."""


class CorruptImageError(DataError):
    """An image, mask or ROI file cannot be read or decoded. ``path`` is the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"corrupt or unreadable image file {path!r}: {reason}")
        self.path = path
        self.reason = reason
