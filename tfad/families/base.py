"""The contract between a model family and the drivers (fit, calibrate, eval, export, serving).

A family is either *trained* (gradient steps: ``networks`` + ``trainer``; checkpoints, resume, tf.distribute
come from ``tfad fit``) or *fitted* (``trainable = False``: one streaming pass over the good images in
``fit_without_training``, the result saved in the run and reloaded by ``load_fitted``). The drivers only call
these methods; nothing outside a family tests a family's name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tfad.schema import Config


class ModelFamily:
    """Base of a family entry. Heavy imports happen inside the methods (the CLI starts fast)."""

    name: str = ""
    title: str = ""
    default_preset: str = ""
    default_learning_rate: float = 1e-4
    default_adam_beta_1: float = 0.5  # GANomaly's choice for the GAN families
    default_early_stopping_patience: int = 0  # off
    supervised: bool = False  # trains on labelled images (good + defects) instead of good images + P_q
    trainable: bool = True  # False: fitted without gradient training (fit_without_training)
    tensorflow: bool = True  # scored by a TensorFlow graph (exported as a SavedModel)
    #: The exported manifest's ``runtime``: ``"savedmodel"`` (tfad.rundir.SAVEDMODEL_RUNTIME) for the
    #: TensorFlow families, whose score function the export traces into a SavedModel; a family without
    #: TensorFlow names its own runtime and writes/reads its export with save_exported/load_exported.
    runtime: str = "savedmodel"
    outputs: tuple[str, ...] = ("score", "heatmap", "reconstruction")  # the serving signature's outputs

    def uses_labels(self, config: Config) -> bool:
        """Whether ``config``'s run trains on labelled images (good + defects, with class names) rather than
        good images only; :attr:`supervised` unless the family's config decides (SuperSimpleNet's regime)."""
        return self.supervised

    def with_defaults(self, config: Config) -> Config:
        """``config`` with this family's defaults filled in where it leaves them to the family (``None``):
        ``model.preset``, ``training.learning_rate``, ``adam_beta_1``, ``early_stopping_patience``."""
        model, training = config.model, config.training
        if model.preset is None:
            model = dataclasses.replace(model, preset=self.default_preset)
        defaults = {
            "learning_rate": self.default_learning_rate,
            "adam_beta_1": self.default_adam_beta_1,
            "early_stopping_patience": self.default_early_stopping_patience,
        }
        training = dataclasses.replace(
            training, **{k: v for k, v in defaults.items() if getattr(training, k) is None}
        )
        return dataclasses.replace(config, model=model, training=training)

    def validate_config(self, config: Config) -> None:
        """ConfigError naming a bad value of a config section this family reads (e.g. ``grdnet.*``).

        ``tfad.config`` calls it for every registered family, whichever family the config trains (a bad
        value in a section the run does not use is an error too); a check that only matters when this
        family is the one configured tests ``config.model.family == self.name``. The architecture is
        checked separately (:meth:`architecture`)."""

    def architecture(self, config: Config) -> Any:
        """The validated architecture of ``config``'s model: its preset with ``model.overrides`` and the
        :meth:`data_knobs`; ValueError naming the bad preset or knob."""
        return self.preset(config.model.preset, **{**config.model.overrides, **self.data_knobs(config)})

    def data_knobs(self, config: Any) -> dict[str, Any]:
        """Architecture fields that come from the data/config rather than the preset (input size...)."""
        return {"image_size": config.data.image_size, "channels": config.data.channels}

    def presets(self) -> dict[str, Any]:
        """Preset name -> architecture."""
        raise NotImplementedError

    def preset(self, name: str, **overrides: Any) -> Any:
        """The validated architecture of preset ``name`` with ``overrides``; ValueError naming the problem."""
        raise NotImplementedError

    def networks(self, arch: Any, config: Any = None, build: dict | None = None) -> Any:
        """All networks of the family (``checkpoint_parts``, ``inference_parts``, ``build_inference_model``,
        ``parameter_counts``). ``config`` is given when building for training (e.g. pretrained weights);
        runs restored from a checkpoint are built without it, from the :meth:`build_record` in their
        run.json (``build``)."""
        raise NotImplementedError

    def build_record(self, networks: Any) -> dict[str, Any]:
        """What rebuilding the trained networks needs beyond the architecture (stored in run.json)."""
        return {}

    def trainer(self, networks: Any, config: Any, steps_per_epoch: int, records: Any) -> Any:
        """The compiled training wrapper (a ``keras.Model`` with ``train_step``/``test_step``);
        ``records`` are the training records (e.g. for class weights)."""
        raise NotImplementedError

    def manifest_extras(self, config: Any) -> dict[str, Any]:
        """Family-specific blocks of the exported manifest (e.g. the classifier's class names)."""
        return {}

    def fit_without_training(
        self, config: Any, records: list, train: list, validation: list, run_dir: Path, progress: bool = True
    ) -> dict[str, Any]:
        """Fitted families: fit on the training images (``records`` = every usable image of the training
        split, ``train``/``validation`` = its split by product) and save the result under ``run_dir``;
        ``progress`` shows a progress bar over the pass(es).
        Returns the run.json summary; its optional keys ``network_build`` and ``inference_gflops_per_patch``
        are stored at the top level of run.json."""
        raise NotImplementedError

    def load_fitted(self, run_dir: Path, config: Any, info: dict[str, Any]) -> Any:
        """Fitted families: the inference model saved by :meth:`fit_without_training`; FileNotFoundError
        naming what is missing."""
        raise NotImplementedError

    def save_exported(self, inference_model: Any, folder: Path) -> None:
        """Families with their own :attr:`runtime`: write the fitted model into the export's version
        ``folder`` (beside the manifest)."""
        raise NotImplementedError

    def load_exported(self, folder: Path, image_size: int, channels: int) -> Callable[[Any], dict]:
        """Families with their own :attr:`runtime`: the score function of the export in ``folder`` (uint8
        images -> ``{"score", "heatmap"}``), for the manifest's input ``image_size`` and ``channels``;
        OSError / ValueError naming what is missing or inconsistent."""
        raise NotImplementedError

    def score_function(self, inference_model: Any, config: Any) -> Callable[[Any], dict]:
        """uint8 images -> ``{"score", "heatmap", "reconstruction"}``: the function Python scoring runs and
        the SavedModel signature traces."""
        raise NotImplementedError

    def score_description(self, config: Any) -> dict[str, Any]:
        """The manifest's ``score`` block."""
        raise NotImplementedError
