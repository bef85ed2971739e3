"""Model lifecycle for the Python reference server (same rules as cc/model_manager.cc).

Each model has a base path with numbered version directories; the highest version that loads and warms
up serves; new versions are picked up by polling and swapped in atomically; a version that fails is
reported and the previous one keeps serving; a failed version is retried only when its files change.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfad.evaluation.scorer import score_paths_agree
from tfad.families import runtime_family
from tfad.rundir import MANIFEST_FILE, SAVEDMODEL_RUNTIME, SCORE_PATHS_ATOL, SCORE_PATHS_RTOL
from tfad.serving.contract import Manifest, load_manifest

log = logging.getLogger("tfad.serving")

_VERSION_RE = re.compile(r"^[1-9][0-9]{0,17}$")


@dataclass(frozen=True)
class VersionDir:
    """A numbered version directory and a fingerprint that changes when its files do."""

    version: int
    path: Path
    fingerprint: str


def _stat_part(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return "-"
    return f"{st.st_mtime_ns}:{st.st_size}"


def scan_versions(base_path: str | Path) -> list[VersionDir]:
    """Version directories under ``base_path``, highest first (non-numeric names ignored). Raises OSError."""
    base = Path(base_path)
    out = []
    for entry in os.scandir(base):
        if _VERSION_RE.match(entry.name) and entry.is_dir():
            p = Path(entry.path)
            parts = [
                p,
                p / "saved_model.pb",
                p / MANIFEST_FILE,
                p / "variables",
                p / "variables/variables.index",
            ]
            out.append(VersionDir(int(entry.name), p, "|".join(_stat_part(x) for x in parts)))
    return sorted(out, key=lambda v: -v.version)


def scan_model_names(models_root: str | Path) -> list[str]:
    """Subdirectories of ``models_root`` that hold at least one version directory."""
    names = []
    for entry in sorted(os.scandir(models_root), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        try:
            if scan_versions(entry.path):
                names.append(entry.name)
        except OSError:
            continue
    return names


class RunFailed(RuntimeError):
    """TensorFlow failed or its outputs violate the contract."""


class Servable:
    """One loaded, warmed-up model version (immutable). ``run`` is thread-safe.

    ``runner`` maps uint8 images ``[n, H, W, C]`` to a dict with at least ``score`` and ``heatmap``
    (anything ``np.asarray`` takes): a SavedModel signature, or a family's own runner (e.g. the blob
    analyzer, no TensorFlow).
    """

    def __init__(self, name: str, version: int, path: Path, manifest: Manifest, runner) -> None:
        self.name, self.version, self.path, self.manifest = name, version, path, manifest
        self._runner = runner

    def run(self, images: np.ndarray, want_heatmaps: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores [n] and (optionally) heatmaps [n, H, W] for uint8 images [n, H, W, C]."""
        scores_only = getattr(self._runner, "scores_only", None)
        try:
            if want_heatmaps or scores_only is None:
                outputs = self._runner(images)
                scores = np.asarray(outputs["score"])
                heatmaps = np.asarray(outputs["heatmap"]) if want_heatmaps else None
            else:  # the export's score-only signature: no heatmap ops run
                scores, heatmaps = np.asarray(scores_only(images)), None
        except Exception as err:  # TensorFlow and the analyzers raise many types; all mean "no verdict"
            raise RunFailed(f"model run failed: {err}") from err
        n, h, w = images.shape[0], images.shape[1], images.shape[2]
        if scores.shape != (n,) or not np.issubdtype(scores.dtype, np.floating):
            raise RunFailed(f"output 'score' has shape {list(scores.shape)}, expected [{n}] float")
        if heatmaps is not None and (heatmaps.shape[0] != n or heatmaps.size != n * h * w):
            raise RunFailed(
                f"output 'heatmap' has shape {list(heatmaps.shape)}, expected [{n},{h},{w}] float32"
            )
        scores = scores.astype(np.float32)  # the wire format (float in the proto)
        return scores, None if heatmaps is None else heatmaps.reshape(n, h, w).astype(np.float32)


def _savedmodel_runner(version_dir: VersionDir, manifest: Manifest):
    import tensorflow as tf

    from tfad.scoring.native import register_ops_for

    try:
        register_ops_for(version_dir.path)  # the fused scoring kernels, if the export's graph uses them
        loaded = tf.saved_model.load(str(version_dir.path), tags=["serve"])
    except Exception as err:
        raise ValueError(f"SavedModel load failed: {err}") from err
    if manifest.signature_name not in loaded.signatures:
        raise ValueError(
            f"signature '{manifest.signature_name}' not found (has: {', '.join(loaded.signatures.keys())})"
        )
    signature = loaded.signatures[manifest.signature_name]

    def run(images: np.ndarray) -> dict:
        outputs = signature(**{manifest.signature_input: tf.constant(images)})
        return {"score": outputs["score"].numpy(), "heatmap": outputs["heatmap"].numpy()}

    if manifest.score_only_signature:
        if manifest.score_only_signature not in loaded.signatures:
            raise ValueError(
                f"signature '{manifest.score_only_signature}' (the manifest's signature.score_only) not "
                f"found (has: {', '.join(loaded.signatures.keys())})"
            )
        score_only = loaded.signatures[manifest.score_only_signature]
        run.scores_only = lambda images: score_only(**{manifest.signature_input: tf.constant(images)})[
            "score"
        ].numpy()
    run.keepalive = loaded  # the signature needs its SavedModel object alive
    return run


def load_servable(name: str, version_dir: VersionDir, warmup_batch: int) -> tuple[Servable, float]:
    """Load and warm up a version; returns (servable, load_ms). Raises on any contract violation."""
    start = time.monotonic()
    manifest = load_manifest(version_dir.path)
    if manifest.version != version_dir.version:
        raise ValueError(
            f"manifest says version {manifest.version} but the directory is version {version_dir.version}"
        )
    if manifest.name != name:
        raise ValueError(
            f'manifest says model "{manifest.name}" but it is in the directory of model "{name}"'
        )
    if manifest.runtime == SAVEDMODEL_RUNTIME:
        runner = _savedmodel_runner(version_dir, manifest)
    else:  # a family's own export format (blob analysis: its parameters, no TensorFlow)
        try:
            runner = runtime_family(manifest.runtime).load_exported(
                version_dir.path, manifest.height, manifest.channels
            )
        except (OSError, ValueError) as err:
            raise ValueError(f"{manifest.runtime} model load failed: {err}") from err
    servable = Servable(name, version_dir.version, version_dir.path, manifest, runner)
    rng = np.random.default_rng(12345)
    warm = rng.integers(
        0, 256, (max(1, warmup_batch), manifest.height, manifest.width, manifest.channels), np.uint8
    )
    scores, _ = servable.run(warm, want_heatmaps=True)
    if not np.isfinite(scores).all():
        raise ValueError("warm-up run gave a non-finite score")
    # The score-only path is warmed up too (a request without heatmaps must not pay for its first run) and
    # must decide as the full one on these images (the export writes both from one function).
    scores_only, _ = servable.run(warm, want_heatmaps=False)
    agree, worst = score_paths_agree(scores, scores_only)
    if not agree:
        raise ValueError(
            "the score-only signature's warm-up scores differ from the full signature's "
            f"(max |d| {worst:.3g}, tolerance {SCORE_PATHS_ATOL:g} + {SCORE_PATHS_RTOL:g} x |score|)"
        )
    return servable, (time.monotonic() - start) * 1000.0


@dataclass
class VersionRecord:
    """What the server knows about one version (GetModelStatus)."""

    version: int
    state: str  # loading | available | retired | failed
    error: str = ""
    state_since_unix_s: float = 0.0
    load_ms: float = 0.0
    fingerprint: str = ""


class ModelStats:
    """Request counters and a window of the last 1024 latencies."""

    def __init__(self, window: int = 1024) -> None:
        self._lock = threading.Lock()
        self.counts = {"total": 0, "ACCEPT": 0, "REJECT": 0, "INCOMPLETE": 0, "INVALID": 0}
        self._total: list[float] = []
        self._inference: list[float] = []
        self._window = window

    def record(self, outcome: str, total_ms: float = 0.0, inference_ms: float = 0.0) -> None:
        with self._lock:
            self.counts["total"] += 1
            self.counts[outcome] += 1
            if outcome == "INVALID":
                return
            self._total = (self._total + [total_ms])[-self._window :]
            self._inference = (self._inference + [inference_ms])[-self._window :]

    def snapshot(self) -> dict:
        with self._lock:
            total = np.array(self._total) if self._total else np.zeros(0)
            return {
                **self.counts,
                "p50": _nearest_rank(total, 50),
                "p99": _nearest_rank(total, 99),
                "max": float(total.max()) if total.size else 0.0,
                "inference_mean": float(np.mean(self._inference)) if self._inference else 0.0,
            }


def _nearest_rank(values: np.ndarray, q: float) -> float:
    if values.size == 0:
        return 0.0
    s = np.sort(values)
    rank = int(np.clip(np.ceil(q / 100.0 * s.size), 1, s.size))
    return float(s[rank - 1])


class ModelSlot:
    """One named model: its serving version, version records and stats."""

    def __init__(self, name: str, base_path: Path, warmup_batch: int) -> None:
        self.name, self.base_path, self.warmup_batch = name, Path(base_path), warmup_batch
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._current: Servable | None = None
        self._records: dict[int, VersionRecord] = {}
        self.stats = ModelStats()

    def current(self) -> Servable | None:
        with self._lock:
            return self._current

    def versions(self) -> list[VersionRecord]:
        with self._lock:
            return [self._records[v] for v in sorted(self._records, reverse=True)]

    def _set(
        self, version: int, state: str, error: str = "", load_ms: float = 0.0, fingerprint: str = ""
    ) -> None:
        with self._lock:
            rec = self._records.setdefault(version, VersionRecord(version, state))
            rec.state, rec.error, rec.state_since_unix_s = state, error, time.time()
            if load_ms:
                rec.load_ms = load_ms
            if fingerprint:
                rec.fingerprint = fingerprint

    def poll(self) -> None:
        """One scan-and-load cycle."""
        with self._poll_lock:
            try:
                versions = scan_versions(self.base_path)
            except OSError as err:
                log.warning("event=model_scan_failed model=%s error=%r", self.name, str(err))
                return
            current = self.current()
            for v in versions:
                if current is not None and v.version == current.version:
                    break
                with self._lock:
                    rec = self._records.get(v.version)
                    if rec is not None and rec.state == "failed" and rec.fingerprint == v.fingerprint:
                        continue
                self._set(v.version, "loading", fingerprint=v.fingerprint)
                log.info("event=model_loading model=%s version=%d path=%s", self.name, v.version, v.path)
                try:
                    servable, load_ms = load_servable(self.name, v, self.warmup_batch)
                except Exception as err:  # any failure leaves the previous version serving
                    self._set(v.version, "failed", error=str(err), fingerprint=v.fingerprint)
                    log.error(
                        "event=model_load_failed model=%s version=%d error=%r serving_version=%s",
                        self.name,
                        v.version,
                        str(err),
                        current.version if current else "none",
                    )
                    continue
                with self._lock:
                    self._current = servable
                    if current is not None:
                        old = self._records[current.version]
                        old.state, old.state_since_unix_s = "retired", time.time()
                self._set(v.version, "available", load_ms=load_ms, fingerprint=v.fingerprint)
                log.info(
                    "event=model_available model=%s version=%d load_ms=%.1f replaced_version=%s",
                    self.name,
                    v.version,
                    load_ms,
                    current.version if current else "none",
                )
                break


class ModelManager:
    """All served models plus the polling thread."""

    def __init__(
        self, models_root: str | Path, names: list[str] | None = None, warmup_batch: int = 60
    ) -> None:
        root = Path(models_root)
        names = list(names or [])
        if not names:
            names = scan_model_names(root)
            if not names:
                raise FileNotFoundError(f"no models under {root} (expected <name>/<version>/ directories)")
        self.slots = [ModelSlot(n, root / n, warmup_batch) for n in names]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_all(self) -> None:
        """One poll of every model. The poller's last line of defence (as cc/model_manager.cc PollAll): an
        unexpected exception is logged and the slot keeps its serving version; the next poll tries again,
        instead of the polling thread ending and hot reload stopping silently."""
        for slot in self.slots:
            try:
                slot.poll()
            except Exception as err:  # noqa: BLE001 - anything, or the poller thread dies
                log.error("event=model_poll_exception model=%s error=%r", slot.name, str(err))

    def start_polling(self, interval_s: float) -> None:
        if interval_s <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.poll_all()

        self._thread = threading.Thread(target=loop, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def find(self, name: str) -> ModelSlot | None:
        if not name:
            return self.slots[0] if self.slots else None
        return next((s for s in self.slots if s.name == name), None)

    def name_list(self) -> str:
        return ", ".join(s.name for s in self.slots)

    def all_serving(self) -> bool:
        return bool(self.slots) and all(s.current() is not None for s in self.slots)
