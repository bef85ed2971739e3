"""The blob-analysis baseline (003 s. 4.2, docs/blob.md): scikit-image and OpenCV, no TensorFlow.

The fitted family to read first (docs/architecture.md, "How to add a family"): no gradient training, one
streaming pass over the good training images (the optional background reference), its result saved in the
run and reloaded by :meth:`BlobFamily.load_fitted`. This folder: ``parameters`` (the knobs, validated),
``analyzer`` (the pipeline, its fit and its saved form). This module is the family's entry in the
registry (``tfad.families``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tfad.families.base import ModelFamily
from tfad.schema import Config, check_entries

BLOB_DIR = "blob"  # the fitted analyzer, in a run directory and in an exported version


class BlobFamily(ModelFamily):
    """The classic blob-analysis baseline (003 s. 4.2), scikit-image, no TensorFlow (docs/blob.md)."""

    name = "blob"
    title = "blob analysis"
    default_preset = "standard"
    trainable = False
    tensorflow = False
    runtime = "python-blob"  # the analyzer's parameters, run by the Python server and tfad eval/predict
    outputs = ("score", "heatmap")

    def validate_config(self, config: Config) -> None:  # noqa: D102
        # blob.max_reference_images and blob.roi: their schema rules. The parameters are checked whatever
        # the family, each named blob.parameters.<name> (numpy only: no cost to the other families).
        from tfad.families.blob.parameters import BlobParameters

        check_entries(BlobParameters.from_dict, config.blob.parameters, "blob.parameters")

    def presets(self) -> dict[str, Any]:  # noqa: D102
        return {"standard": BlobArchitecture()}

    def preset(self, name: str, **overrides: Any) -> Any:  # noqa: D102
        from tfad.networks.presets import select_preset

        return select_preset(self.presets(), name, "blob", overrides)

    def fit_without_training(  # noqa: D102
        self, config: Any, records: list, train: list, validation: list, run_dir: Any, progress: bool = True
    ) -> dict[str, Any]:
        # The analyzer (the reference image of ``background: reference``) is fitted on every good image of
        # the training split (no validation is needed), streamed; saved under ``run_dir/blob``.
        import numpy as np

        from tfad.data.pipeline import make_dataset
        from tfad.data.records import LABEL_GOOD

        analyzer = self.new_analyzer(config)
        if analyzer.params.background == "reference":
            good = [r for r in records if r.label == LABEL_GOOD]
            size = config.data.image_size
            dataset = make_dataset(
                good, (size, size), channels=config.data.channels, batch_size=32, name="blob-reference"
            )
            batches = (np.round(b["image"].numpy() * 255).astype(np.uint8) for b in dataset)
            analyzer.fit(batches, max_reference_images=config.blob.max_reference_images)
        analyzer.save(run_dir / BLOB_DIR)
        return {
            "parameters": analyzer.params.to_dict(),
            **dict(getattr(analyzer, "reference_stats", {}) or {}),
        }

    def load_fitted(self, run_dir: Any, config: Any, info: dict[str, Any]) -> Any:  # noqa: D102
        from tfad.families.blob.analyzer import BlobAnalyzer

        if info.get("status") != "finished" or not (run_dir / BLOB_DIR).is_dir():
            raise FileNotFoundError(2, "the run was not fitted yet (run tfad fit)", str(run_dir / BLOB_DIR))
        return BlobAnalyzer.load(run_dir / BLOB_DIR)

    def save_exported(self, inference_model: Any, folder: Path) -> None:  # noqa: D102
        inference_model.save(folder / BLOB_DIR)

    def load_exported(self, folder: Path, image_size: int, channels: int) -> Any:  # noqa: D102
        from tfad.families.blob.analyzer import BlobAnalyzer

        analyzer = BlobAnalyzer.load(folder / BLOB_DIR)
        if (analyzer.image_size, analyzer.channels) != (image_size, channels):
            raise ValueError("blob analyzer input size/channels differ from the manifest's input")
        return analyzer

    def new_analyzer(self, config: Any) -> Any:
        """An unfitted :class:`~tfad.families.blob.analyzer.BlobAnalyzer` from the config (ROI resized to the
        input)."""
        from tfad.families.blob.analyzer import BlobAnalyzer
        from tfad.families.blob.parameters import BlobParameters

        roi = None
        if config.blob.roi:
            from tfad.data.decode import load_binary_mask

            if not Path(config.blob.roi).is_file():
                raise FileNotFoundError(2, "blob.roi mask not found", str(config.blob.roi))
            size = config.data.image_size
            roi = load_binary_mask(config.blob.roi, (size, size), None)[..., 0]
        params = BlobParameters.from_dict(config.blob.parameters)
        return BlobAnalyzer(params, config.data.image_size, config.data.channels, roi=roi)

    def score_function(self, inference_model: Any, config: Any) -> Callable[[Any], dict]:  # noqa: D102
        return inference_model  # the BlobAnalyzer: uint8 images -> {"score", "heatmap"} (numpy)

    def score_description(self, config: Any) -> dict[str, Any]:  # noqa: D102
        return {
            "name": "largest surviving blob's area x mean contrast (0 when no blob survives)",
            "higher_is_anomalous": True,
            "heatmap": "contrast on the surviving blobs' pixels, 0 elsewhere (not renormalised)",
        }


@dataclass(frozen=True)
class BlobArchitecture:
    """The blob family's input size (its parameters are ``blob.parameters``)."""

    image_size: int = 256
    channels: int = 1

    def validate(self) -> None:
        """ValueError naming a bad input size or channel count."""
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return asdict(self)
