"""Helpers of the export parity tests: re-score a trained run with another score setting, and run an exported
SavedModel in a fresh Python process (as a server would load it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

_SERVE = (
    "import sys, numpy as np, tensorflow as tf\n"
    "from tfad.scoring.native import register_ops_for\n"
    "register_ops_for(sys.argv[1])\n"
    "model = tf.saved_model.load(sys.argv[1])\n"
    "images = tf.constant(np.load(sys.argv[2]))\n"
    "out = {k: v.numpy() for k, v in model.signatures['serving_default'](images=images).items()}\n"
    "if 'score_only' in model.signatures:\n"
    "    out['score_only_score'] = model.signatures['score_only'](images=images)['score'].numpy()\n"
    "np.savez(sys.argv[3], **out)\n"
)
# Stated tolerance between the two signatures (tfad.serving.models.SCORE_PATHS_*): one function traced twice.
SCORE_PATHS_RTOL, SCORE_PATHS_ATOL = 1e-4, 1e-5


def rescored_copy(run_dir: Path, target: Path, name: str, settings: dict[str, dict[str, Any]]) -> Path:
    """A copy of the trained run ``run_dir`` named ``name`` (its checkpoints, no thresholds) whose
    config.yaml has ``settings`` (section -> {key: value}) changed, e.g. another patch score: the same
    weights, scored differently."""
    shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("thresholds.json", "calibration", "eval"))
    config = yaml.safe_load((target / "config.yaml").read_text())
    config["name"] = name
    for section, values in settings.items():
        config.setdefault(section, {}).update(values)
    (target / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def served_outputs(version_dir: Path, images: np.ndarray, scratch: Path) -> dict[str, np.ndarray]:
    """The outputs of the exported SavedModel in ``version_dir`` on uint8 ``images``, computed in a fresh
    Python process. Checks on the way that the export has a score-only signature (what the servers run
    without heatmaps) and that it scores as ``serving_default`` does."""
    np.save(scratch / "images.npy", images)
    command = [
        sys.executable,
        "-c",
        _SERVE,
        str(version_dir),
        str(scratch / "images.npy"),
        str(scratch / "out.npz"),
    ]
    subprocess.run(command, check=True, timeout=300)
    with np.load(scratch / "out.npz") as served:
        outputs = {key: served[key] for key in served.files}
    assert "score_only_score" in outputs, f"{version_dir} has no score_only signature"
    np.testing.assert_allclose(
        outputs.pop("score_only_score"), outputs["score"], rtol=SCORE_PATHS_RTOL, atol=SCORE_PATHS_ATOL
    )
    return outputs
