"""Reading a training run directory written by ``tfad fit`` (names: :mod:`tfad.rundir`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfad.config import Config, architecture, load_config
from tfad.families import family
from tfad.rundir import BEST_DIR, CHECKPOINT_DIR, CONFIG_FILE, RUN_FILE, RUN_FORMAT


class RunNotFoundError(FileNotFoundError):
    """A path that is not a (trained) run directory; the message says what is missing."""


@dataclass
class TrainedRun:
    """A trained run: its config, run.json, and the inference network restored from the latest checkpoint."""

    run_dir: Path
    config: Config
    info: dict[str, Any]
    inference_model: Any  # keras.Model: the family's inference path (e.g. E1 -> decoder); blob: the analyzer
    checkpoint: str  # the checkpoint restored (fitted families: the run directory)

    @property
    def name(self) -> str:
        """The run's (and exported model's) name."""
        return self.config.name

    def score_function(self):
        """uint8 images -> ``{"score", "heatmap", "reconstruction"}`` (the family's serving function).

        A functional inference model is served with its BatchNorms folded into the convolutions before them
        (:func:`tfad.networks.folding.fold_batch_norms`: the same scores within float rounding, fewer passes
        over the feature maps); the run's weights are final here.
        """
        from tfad.networks.folding import fold_batch_norms, is_functional

        model = self.inference_model
        if is_functional(model):
            model = fold_batch_norms(model)
        return family(self.config.model.family).score_function(model, self.config)


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` looks like a ``tfad fit`` run directory."""
    return (Path(path) / RUN_FILE).is_file() and (Path(path) / CONFIG_FILE).is_file()


def load_run(run_dir: str | Path) -> TrainedRun:
    """Rebuild the networks of a run and restore their weights from its latest checkpoint (the best epoch's
    when early stopping was on); a fitted family's run loads what its fit saved.

    Raises:
        RunNotFoundError: no run.json/config.yaml, or no checkpoint yet.
    """
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise RunNotFoundError(2, "not a tfad run directory (no run.json/config.yaml)", str(run_dir))
    info = json.loads((run_dir / RUN_FILE).read_text())
    if info.get("format") != RUN_FORMAT:
        raise RunNotFoundError(2, f"unsupported run format {info.get('format')!r}", str(run_dir / RUN_FILE))
    config = load_config(run_dir / CONFIG_FILE)
    model_family = family(config.model.family)
    if not model_family.trainable:
        if info.get("status") != "finished":
            raise RunNotFoundError(2, "the run was not fitted yet (run tfad fit)", str(run_dir / RUN_FILE))
        try:
            model = model_family.load_fitted(run_dir, config, info)
        except FileNotFoundError as err:
            raise RunNotFoundError(2, f"the run's fitted model is missing: {err}", str(run_dir)) from err
        return TrainedRun(run_dir, config, info, model, str(run_dir))

    import tensorflow as tf

    best = (info.get("early_stopping") or {}).get("best_epoch")
    source = run_dir / CHECKPOINT_DIR / BEST_DIR if best else run_dir / CHECKPOINT_DIR
    latest = tf.train.latest_checkpoint(str(source))
    if latest is None:
        raise RunNotFoundError(2, "the run has no checkpoint yet (train it first)", str(source))
    networks = model_family.networks(architecture(config), build=info.get("network_build"))
    checkpoint = tf.train.Checkpoint(**networks.inference_parts())
    # Only the inference path is needed; the other networks and optimizer slots are expected to be unused.
    checkpoint.restore(latest).expect_partial().assert_existing_objects_matched()
    return TrainedRun(run_dir, config, info, networks.build_inference_model(), latest)
