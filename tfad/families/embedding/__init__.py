"""The embedding-similarity family: PaDiM, PatchCore and MhBC-PatchCore on a pretrained backbone.

Fitted, not trained: one streaming pass over the good training images models their pretrained patch
features (methods.md, "Embedding-similarity family"; 002, 003 s. 8.3); a patch's anomaly map is the
distance of its features to that normal model, Gaussian-blurred (sigma 4), and its score the map's maximum.
The fitted statistics live inside the network's weights, so the exported SavedModel is served unchanged by
both servers.

Layout of this folder: ``presets`` (architecture knobs and presets), ``model`` (the inference network and
its normal-model layers), ``fitter`` (the streaming fit), ``coreset`` / ``product_quantization`` / ``mhbc``
(the memory-bank algorithms). This module is the family's entry in the registry (``tfad.families``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tfad.families.base import ModelFamily

FITTED_DIR = "embedding"  # under the run directory
WEIGHTS_FILE = "model.weights.h5"
FIT_BATCH_SIZE = 16


class EmbeddingFamily(ModelFamily):
    """PaDiM / PatchCore / MhBC-PatchCore (``model.preset``), fitted in one streaming pass."""

    name = "embedding"
    title = "embedding similarity"
    # Sized for the slowest PC kind: `line` would serve 2-3 stations there, `line-fast` 4 x 1/s (estimated;
    # docs/performance.md, "The slow kind, estimated by calibration"). `line` localises better (AUPRO 0.733
    # against 0.645 on magnetic_tile) on PCs that qualify it.
    default_preset = "line-fast"
    trainable = False
    outputs = ("score", "heatmap")

    def presets(self) -> dict[str, Any]:  # noqa: D102
        from tfad.families.embedding.presets import PRESETS

        return PRESETS

    def preset(self, name: str, **overrides: Any) -> Any:  # noqa: D102
        from tfad.networks.presets import select_preset

        return select_preset(self.presets(), name, "embedding", overrides)

    def fit_without_training(  # noqa: D102
        self, config: Any, records: list, train: list, validation: list, run_dir: Path, progress: bool = True
    ) -> dict[str, Any]:
        from tfad.data.errors import DataError
        from tfad.data.pipeline import make_dataset
        from tfad.families.embedding.fitter import build_model, fit_state, heatmap_range, inference_cost

        if len(train) < 2:  # a covariance (PaDiM, MhBC) needs two samples; a bank needs more than one
            raise DataError(
                f"the embedding family needs at least 2 good training images after the validation split, "
                f"got {len(train)} (add images or lower data.validation_fraction)"
            )
        arch = self.architecture(config)
        size = (config.data.image_size, config.data.image_size)

        def batches(records_: list):
            def stream():
                dataset = make_dataset(
                    records_, size, channels=config.data.channels, batch_size=FIT_BATCH_SIZE,
                    on_corrupt=config.data.on_corrupt, name="fit",
                )  # fmt: skip
                return (batch["image"] for batch in dataset)

            return stream

        model = build_model(arch)
        state, build = fit_state(arch, model.extractor, batches(train), len(train), progress=progress)
        fitted = build_model(arch, build, weights=None)
        # the backbone's weights are the pretrained ones: copied, not loaded again from the package
        fitted.extractor.set_weights(model.extractor.get_weights())
        fitted.normal_model.assign(state)
        low, high = heatmap_range(fitted, batches(validation or train))
        fitted.heatmap_range.assign([low, high])
        folder = run_dir / FITTED_DIR
        folder.mkdir(parents=True, exist_ok=True)
        fitted.save_weights(str(folder / WEIGHTS_FILE))
        bank_bytes = sum(int(v.numpy().nbytes) for v in fitted.normal_model.weights)
        cost = inference_cost(arch, build.get("bank_size"))
        return {
            "method": arch.method,
            **{k: v for k, v in build.items()},
            "normal_model_bytes": bank_bytes,
            "heatmap_range": [low, high],
            "heatmap_range_from": "validation" if validation else "train",
            "network_build": build,
            "cost_per_patch": cost,
            "inference_gflops_per_patch": cost["gflops"],
        }

    def load_fitted(self, run_dir: Path, config: Any, info: dict[str, Any]) -> Any:  # noqa: D102
        from tfad.families.embedding.fitter import build_model

        path = run_dir / FITTED_DIR / WEIGHTS_FILE
        if not path.is_file():
            raise FileNotFoundError(2, "fitted embedding model not found", str(path))
        model = build_model(self.architecture(config), info.get("network_build"), weights=None)
        model.load_weights(str(path))
        return model

    def score_function(self, inference_model: Any, config: Any):  # noqa: D102
        from tfad.families.embedding.model import score_images

        return lambda images: score_images(inference_model, images)

    def score_description(self, config: Any) -> dict[str, Any]:  # noqa: D102
        arch = self.architecture(config)
        return {
            "name": f"max of the Gaussian-blurred (sigma {arch.blur_sigma}) {arch.method} distance map",
            "higher_is_anomalous": True,
            "heatmap": "the distance map on a [0, 1] scale fitted on normal images (0 = their median "
            "value, 0.5 = the 99th percentile of their patch scores)",
            "backbone": f"{arch.backbone} ImageNet, input {arch.backbone_input_size}, taps {arch.taps}",
        }
