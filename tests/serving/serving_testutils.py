"""Helpers of the serving suite: constants, product layout, starting the C++ and Python servers."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CC_SERVER = REPO / "bazel-bin" / "cc" / "tfad_server"
MODEL = "fixture"
REGIONS = ("R0", "R1", "R2", "R3")
# Fixture scores: smooth patches ~0.031, spotted patches ~0.036 (tests/fixtures/servable.py).
THRESHOLD = 0.0335


def contract_manifest(**changes):
    """The serving contract's small test model, as cc/tests/test_util.h ManifestJson writes it: "vials" v1,
    8x8x1, resize "reject", thresholds R0 0.5 and R1 0.25, no default; ``changes`` replace fields."""
    from tfad.serving.contract import Manifest

    base = Manifest(
        name="vials", version=1, height=8, width=8, channels=1, resize="reject",
        region_thresholds={"R0": 0.5, "R1": 0.25}, default_threshold=None,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def add_raw(request, region: str = "R0", w: int = 8, h: int = 8, c: int = 1, vial: int = 0, value: int = 100):
    """A raw uint8 patch of one gray ``value`` added to the InspectRequest ``request`` (the added Patch)."""
    from tfad.serving.protos import pb

    return request.patches.add(
        region=region,
        vial=vial,
        encoding=pb.IMAGE_ENCODING_RAW_UINT8,
        width=w,
        height=h,
        channels=c,
        data=bytes([value]) * (w * h * c),
    )


def product_layout(n: int = 60) -> tuple[list[str], list[int], list[int]]:
    """Regions, frames and vials of an n-patch product (frames x 5 vials x 4 regions)."""
    regions = [REGIONS[i % 4] for i in range(n)]
    vials = [(i // 4) % 5 for i in range(n)]
    frames = [i // 20 for i in range(n)]
    return regions, frames, vials


def built_or_skip(binary: Path) -> Path:
    """``binary``, a Bazel output; fails in CI (CI=true) and skips locally when it was not built."""
    if binary.exists():
        return binary
    message = f"{binary.name} not built ({binary} missing): run `make cc-build` (bash scripts/build_cc.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def cc_binary_or_skip() -> Path:
    """The built C++ server (:func:`built_or_skip`)."""
    return built_or_skip(CC_SERVER)


@dataclass
class ServerHandle:
    """A running server of either kind."""

    kind: str
    target: str
    models_root: Path
    stop: Callable[[], None]
    log: Callable[[], str]
    pid: int | None = None  # the C++ server's process (None: the Python server runs in this process)


def start_cc_server(models_root: Path, log_path: Path, **flags) -> ServerHandle:
    """Start bazel-bin/cc/tfad_server on a free loopback port; wait until it serves."""
    binary = cc_binary_or_skip()
    args = [str(binary), f"--models_root={models_root}", "--listen=127.0.0.1:0", "--warmup_batch=4"]
    args += [f"--{k}={v}" for k, v in flags.items()]
    log_file = open(log_path, "w")  # noqa: SIM115 (closed in stop)
    proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    port = None
    while time.monotonic() < deadline and port is None:
        if proc.poll() is not None:
            log_file.close()
            pytest.fail(f"tfad_server exited with {proc.returncode}:\n{log_path.read_text()}")
        m = re.search(r"event=serving .*port=(\d+)", log_path.read_text())
        port = int(m.group(1)) if m else None
        time.sleep(0.05)
    if port is None:
        proc.kill()
        pytest.fail(f"tfad_server did not start within 60 s:\n{log_path.read_text()}")

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()

    return ServerHandle("cc", f"127.0.0.1:{port}", models_root, stop, log_path.read_text, proc.pid)


def start_py_server(models_root: Path, **flags) -> ServerHandle:
    """Start the Python reference server in this process on a free loopback port."""
    from tfad.serving.server import ServerConfig, start_server

    config = ServerConfig(models_root=str(models_root), listen="127.0.0.1:0", warmup_batch=4, **flags)
    running = start_server(config)
    return ServerHandle("python", f"127.0.0.1:{running.port}", models_root, running.stop, lambda: "")


def start_server_of_kind(kind: str, models_root: Path, log_dir: Path, **flags) -> ServerHandle:
    if kind == "cc":
        return start_cc_server(models_root, log_dir / f"cc-{models_root.name}.log", **flags)
    return start_py_server(models_root, **flags)


def split_threshold(scores) -> tuple[float, float]:
    """A threshold in the widest gap between two of the middle half of ``scores`` (at least two distinct; the
    widest gap anywhere if the middle half is one value), so that both decisions occur, and half that gap, by
    which every score clears the threshold: ``(threshold, half_gap)``."""
    import numpy as np

    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    if len(np.unique(ordered)) < 2:
        raise ValueError(f"need two distinct scores to split, got {ordered.tolist()}")
    gaps = np.diff(ordered)
    low, high = len(ordered) // 4, max(len(ordered) // 4 + 1, (3 * len(ordered)) // 4)
    if gaps[low:high].max() == 0:  # the middle half is one value: the widest gap anywhere
        low, high = 0, len(gaps)
    widest = low + int(np.argmax(gaps[low:high]))
    return float((ordered[widest] + ordered[widest + 1]) / 2), float(gaps[widest] / 2)


def export_with_thresholds(
    version_dir: Path, thresholds: dict[str, float], default: float, root: Path
) -> Path:
    """A copy of the export ``version_dir`` under ``root`` (SavedModel files symlinked, own manifest) whose
    per-region thresholds are ``thresholds`` and whose default is ``default``; its version directory."""
    import json

    copy = root / "models" / version_dir.parent.name / version_dir.name
    copy.mkdir(parents=True)
    for item in version_dir.iterdir():
        if item.name != "tfad_manifest.json":
            (copy / item.name).symlink_to(item.resolve())
    manifest = json.loads((version_dir / "tfad_manifest.json").read_text())
    manifest["thresholds"] = {**manifest["thresholds"], "regions": thresholds, "default": default}
    (copy / "tfad_manifest.json").write_text(json.dumps(manifest, indent=2))
    return copy


def assert_servers_score_like_python(
    version_dir: Path,
    images,
    regions: list[str],
    log_dir: Path,
    kinds: tuple[str, ...] = ("cc", "python"),
    score_atol: float = 1e-5,
    cycle_budget_ms: int = 60000,
) -> None:
    """Serve the exported model ``version_dir`` (``<models>/<name>/<version>``) with each server kind and
    check, for one product of ``images`` (uint8 ``[N, H, W, C]``), that scores, patch decisions, the verdict
    and every heatmap equal the Python scoring of the same SavedModel (``tfad.evaluation.scorer``), and that
    the same product without heatmaps (the export's score-only signature) gets the same scores and verdict.

    The servers serve a copy of the export whose thresholds split this product's scores (``split_threshold``):
    each region's own where they split clearly, else a default that splits the whole product's. Patches within
    float noise of their threshold are left out. The decisions compared then include both outcomes on any
    machine, whatever a small test model's calibration gave.
    Heatmaps travel as 8-bit PNGs: equal to the reference within half a grey level (+ the score tolerance).
    ``cycle_budget_ms``: the servers' budget; 60 s by default, so that a complete verdict does not depend on
    the machine's speed or load (the 450 ms budget has its own test).
    """
    import cv2
    import numpy as np

    from tfad.evaluation.scorer import load_scorer
    from tfad.serving.client import InspectionClient, build_request

    expected = load_scorer(version_dir)(images)
    region_of = np.array(regions)
    default, _ = split_threshold(expected["score"])
    per_region = {}  # a region whose own scores split clearly gets its own threshold, the others the default
    for region in sorted(set(regions)):
        own = expected["score"][region_of == region]
        if len(set(own.tolist())) > 1 and split_threshold(own)[1] > 10 * score_atol:
            per_region[region] = split_threshold(own)[0]
    thresholds = np.array([per_region.get(r, default) for r in regions])
    version_dir = export_with_thresholds(version_dir, per_region, default, log_dir / "thresholds_split")
    # Patches scoring within float noise of their threshold could flip either way: leave them out.
    clear = np.abs(expected["score"] - thresholds) > 10 * score_atol
    images, regions = images[clear], [r for r, keep in zip(regions, clear, strict=True) if keep]
    expected = {k: v[clear] for k, v in expected.items()}
    expected_rejected = expected["score"] > thresholds[clear]
    assert expected_rejected.any() and not expected_rejected.all(), "the product's scores barely vary"
    n = len(images)
    request = build_request(
        images, regions, [0] * n, list(range(n)), product_id="P-family", run_id="r", heatmaps="all"
    )
    # the same product without heatmaps: the servers run the export's score-only signature
    without_heatmaps = build_request(
        images, regions, [0] * n, list(range(n)), product_id="P-family", run_id="r", heatmaps="none"
    )
    for kind in kinds:
        handle = start_server_of_kind(
            kind, version_dir.parent.parent, log_dir, cycle_budget_ms=cycle_budget_ms
        )
        try:
            with InspectionClient(handle.target) as client:
                client.wait_ready(30)
                result = client.inspect_request(request, timeout_s=60)
                scores_only = client.inspect_request(without_heatmaps, timeout_s=60)
        finally:
            handle.stop()
        assert scores_only.verdict == result.verdict, (kind, scores_only)
        assert [p.rejected for p in scores_only.patches] == expected_rejected.tolist(), kind
        assert not any(p.heatmap_png for p in scores_only.patches), kind
        np.testing.assert_allclose(
            [p.score for p in scores_only.patches], expected["score"], atol=score_atol, err_msg=kind
        )
        assert result.verdict == ("REJECT" if expected_rejected.any() else "ACCEPT"), (kind, result)
        scores = np.array([p.score for p in result.patches])
        np.testing.assert_allclose(scores, expected["score"], atol=score_atol, err_msg=kind)
        assert [p.rejected for p in result.patches] == expected_rejected.tolist(), kind
        for p in result.patches:
            decoded = cv2.imdecode(np.frombuffer(p.heatmap_png, np.uint8), cv2.IMREAD_UNCHANGED)
            reference = np.clip(expected["heatmap"][p.index], 0, 1) * 255
            assert decoded.shape == reference.shape, kind
            assert np.max(np.abs(decoded.astype(np.float32) - reference)) <= 0.51 + 255 * score_atol, kind
