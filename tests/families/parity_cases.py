"""Tiny fits of every family whose scores were recorded before the one-folder-per-family redesign.

``tiny_fit_scores`` drives only the stable public surface (the ``tfad`` CLI and ``load_scorer``), so the same
code ran on main before the move (to record ``RECORDED``) and runs on the moved code in
``test_family_parity.py``. Run this file as a script to print the scores of the checkout it runs in:

    .venv/bin/python tests/families/parity_cases.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

# The architectures below repeat tests/training/conftest.py's tiny ones on purpose: the recorded scores
# belong to these exact values, which must not follow later edits of the shared test configs.
# Four Adam steps of batch 4 on 32x32 patches: enough to move every weight, few enough that float rounding
# differences between CPUs (oneDNN kernels) stay far below the tolerance of the parity test.
TRAINING = {"epochs": 1, "batch_size": 4, "steps_per_epoch": 4, "checkpoint_every_steps": 4,
            "validation_steps": 1, "learning_rate": 2e-3, "seed": 0}  # fmt: skip
CASES: dict[str, dict] = {
    "resganad": {
        "model": {
            "family": "resganad",
            "preset": "line-cpu",
            "overrides": dict(
                stem_stride=2,
                stages=2,
                base_width=8,
                stem_filters=8,
                latent_dim=16,
                critic_base_width=8,
                critic_stages=2,
            ),
        },  # fmt: skip
    },
    "grdnet": {
        "model": {
            "family": "grdnet",
            "preset": "crae",
            "overrides": dict(
                stem_stride=2,
                stages=2,
                base_width=8,
                stem_filters=8,
                code_channels=8,
                dense_dim=64,
                unet_stem_stride=2,
                unet_base_width=8,
                unet_depth=3,
                critic_base_width=8,
                critic_stages=2,
            ),
        },
        "grdnet": {"score_filter_size": 5},
    },  # fmt: skip
    "classifier": {
        "model": {"family": "classifier", "preset": "resnet18-small", "overrides": {"base_width": 8}},
        "data": {"train_split": "calib"},
        "supervised": {"synthetic_probability": 0.3},
    },
    "segmentation": {
        "model": {
            "family": "segmentation",
            "preset": "unet",
            "overrides": {"stem_stride": 2, "base_width": 8, "depth": 3},
        },
        "data": {"train_split": "calib"},
        "supervised": {"synthetic_probability": 0.3, "score_filter_size": 5},
    },  # fmt: skip
    "blob": {"model": {"family": "blob", "preset": "standard"}},
}


def make_data(root: Path) -> Path:
    """The tiny vial line every case fits on (deterministic)."""
    from tfad.data.synth_vials import generate_synth_vials

    generate_synth_vials(str(root), n_products=3, n_runs=2, frames=1, vials=2, image_size=64,
                         n_eval_products=6, defect_rate=0.5, seed=2)  # fmt: skip
    return root


def tiny_fit_scores(case: str, data: Path, work: Path) -> list[float]:
    """Fit ``case`` on ``data``, export it, and score the test split's first 12 patches with the export."""
    from tfad.cli import main
    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset
    from tfad.evaluation.scorer import load_scorer

    spec = CASES[case]
    config = {
        "name": f"parity-{case}",
        "output_dir": str(work / "runs"),
        "model": spec["model"],
        "data": {"root": str(data), "image_size": 32, "validation_fraction": 0.34, **spec.get("data", {})},
        "training": TRAINING,
        **{k: v for k, v in spec.items() if k not in ("model", "data")},
    }
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"{case}.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["fit", str(path), "--no-progress"]) == 0
    run = work / "runs" / f"parity-{case}"
    models = work / "savedmodels"
    assert main(["export", str(run), "--savedmodels", str(models), "--allow-uncalibrated"]) == 0
    records = read_dataset(str(data), "test")[:12]
    images = load_images(records, (32, 32), 1)
    return [float(s) for s in load_scorer(models / f"parity-{case}" / "1")(images)["score"]]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp) / "data")
        out = {case: tiny_fit_scores(case, data, Path(tmp) / case) for case in CASES}
    json.dump(out, sys.stdout, indent=1)
    print()
    np.set_printoptions(precision=8)
