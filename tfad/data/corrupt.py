"""Corrupt-file accounting shared by the pipelines, ``load_images`` and ``tfad datasets info``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from tfad.data.decode import decode_image_file, load_binary_mask
from tfad.data.errors import CorruptImageError
from tfad.data.records import ImageRecord

log = logging.getLogger("tfad.data.pipeline")


class CorruptFileCounter:
    """Thread-safe record of the corrupt files a pipeline skipped.

    Attributes read by callers: :attr:`count` (skipped samples, summed over passes), :attr:`paths`
    (distinct bad files), :attr:`reasons` (path -> reason), :attr:`passes_completed` and
    :attr:`per_pass` (skipped samples per completed pass).
    """

    def __init__(self, name: str = "dataset", records_per_pass: int | None = None) -> None:
        self.name = name
        self.records_per_pass = records_per_pass
        self._lock = threading.Lock()
        self._reasons: dict[str, str] = {}
        self._count = 0
        self._processed = 0
        self._this_pass = 0
        self.per_pass: list[int] = []

    def record(self, path: str, reason: str) -> None:
        """Note one skipped sample because of ``path`` (without counting it as processed)."""
        with self._lock:
            self._count += 1
            self._this_pass += 1
            self._reasons.setdefault(path, reason)

    def processed(self, corrupt: tuple[str, str] | None = None) -> None:
        """Note one record processed; ``corrupt`` = (path, reason) when it was skipped.

        Logs the summary when a pass (``records_per_pass`` records) completes. With parallel decoding
        and ``repeat``, a skip right at a pass boundary may be attributed to the neighbouring pass; the
        totals are exact.
        """
        with self._lock:
            if corrupt is not None:
                self._count += 1
                self._this_pass += 1
                self._reasons.setdefault(*corrupt)
            self._processed += 1
            if not self.records_per_pass or self._processed % self.records_per_pass:
                return
            skipped, self._this_pass = self._this_pass, 0
            self.per_pass.append(skipped)
            pass_number = len(self.per_pass)
        if skipped:
            log.warning(
                "%s: pass %d over %d records skipped %d corrupt sample(s); %s",
                self.name,
                pass_number,
                self.records_per_pass,
                skipped,
                self._describe_paths(),
            )

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    @property
    def paths(self) -> list[str]:
        with self._lock:
            return sorted(self._reasons)

    @property
    def reasons(self) -> dict[str, str]:
        with self._lock:
            return dict(self._reasons)

    @property
    def passes_completed(self) -> int:
        with self._lock:
            return len(self.per_pass)

    def _describe_paths(self, limit: int = 5) -> str:
        with self._lock:
            items = sorted(self._reasons.items())
        shown = "; ".join(f"{p}: {r}" for p, r in items[:limit])
        more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
        return f"{len(items)} distinct file(s): {shown}{more}"

    def summary(self) -> str:
        """One-line human summary."""
        if not self.count:
            return f"{self.name}: no corrupt files"
        return f"{self.name}: {self.count} sample(s) skipped, {self._describe_paths()}"

    def log_summary(self) -> None:
        """Log :meth:`summary` (warning when something was skipped, info otherwise)."""
        (log.warning if self.count else log.info)("%s", self.summary())

    def as_dict(self) -> dict:
        """JSON-friendly counts and paths for reports."""
        return {"skipped_samples": self.count, "files": self.reasons, "per_pass": list(self.per_pass)}


def scan_corrupt_files(
    records: Sequence[ImageRecord],
    channels: int = 1,
    progress: bool = False,
) -> CorruptFileCounter:
    """Decode every image, mask and ROI of ``records`` once; returns the counter of bad files.

    Used by ``tfad datasets info``; ``progress`` shows a tqdm bar.
    """
    counter = CorruptFileCounter("scan", records_per_pass=None)
    iterator = records
    if progress:
        from tqdm import tqdm

        iterator = tqdm(records, desc="checking images", unit="img")
    checked_roi: set[str] = set()
    for record in iterator:
        try:
            decoded = decode_image_file(record.path, channels)
            if record.mask_path:
                load_binary_mask(record.mask_path, decoded.shape[:2], decoded.shape[:2])
            if record.roi_path and record.roi_path not in checked_roi:
                load_binary_mask(record.roi_path, decoded.shape[:2], decoded.shape[:2])
                checked_roi.add(record.roi_path)
        except CorruptImageError as err:
            counter.record(err.path, err.reason)
    return counter
