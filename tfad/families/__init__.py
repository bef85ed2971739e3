"""The model families ``tfad fit`` trains or fits, one folder each, and their registry (:data:`REGISTRY`).

A family's folder ``tfad/families/<name>/`` holds everything that is only its own: its entry (a
:class:`~tfad.families.base.ModelFamily` in ``__init__.py``), presets and network builders, its Keras
training wrapper or its fitter, its score function. The drivers (``tfad fit``, run loading, scoring, export,
the servers) reach a family only through the :class:`~tfad.families.base.ModelFamily` contract, so adding a
family is its folder plus one line in :data:`REGISTRY` (docs/architecture.md, "How to add a family").

Every family's serving contract is the same: uint8 images ``[N, H, W, C]`` in, ``score`` [N] (higher = more
anomalous) and ``heatmap`` [N, H, W] out, plus family-specific extras (``reconstruction`` [N, H, W, C] of
the reconstruction models, ``probabilities`` [N, K] of the classifier). The TensorFlow families export a
SavedModel with that signature; the blob-analysis baseline (no TensorFlow) exports its parameters and runs
in the Python server only.
"""

from __future__ import annotations

from tfad.families.aexad import AEXADFamily
from tfad.families.autoencoder import AutoencoderFamily
from tfad.families.base import ModelFamily
from tfad.families.blob import BlobFamily
from tfad.families.classifier import ClassifierFamily
from tfad.families.draem import DRAEMFamily
from tfad.families.embedding import EmbeddingFamily
from tfad.families.ganomaly import GANomalyFamily
from tfad.families.grdnet import GRDNetFamily
from tfad.families.resganad import ResGANADFamily
from tfad.families.segmentation import SegmentationFamily
from tfad.families.supersimplenet import SuperSimpleNetFamily
from tfad.rundir import SAVEDMODEL_RUNTIME

#: Every family; ``model.family`` names one of them.
REGISTRY: tuple[ModelFamily, ...] = (
    ResGANADFamily(),
    GRDNetFamily(),
    ClassifierFamily(),
    SegmentationFamily(),
    BlobFamily(),
    EmbeddingFamily(),
    SuperSimpleNetFamily(),
    GANomalyFamily(),
    DRAEMFamily(),
    AutoencoderFamily(),
    AEXADFamily(),
)

_BY_NAME = {entry.name: entry for entry in REGISTRY}


def names() -> tuple[str, ...]:
    """Every ``model.family`` name, in the registry's order."""
    return tuple(_BY_NAME)


def runtimes() -> tuple[str, ...]:
    """Every manifest ``runtime`` an export can have: the SavedModel's, then the families' own."""
    return tuple(dict.fromkeys((SAVEDMODEL_RUNTIME, *(entry.runtime for entry in REGISTRY))))


def runtime_family(runtime: str) -> ModelFamily:
    """The family that reads exports of its own (not SavedModel) ``runtime``; ValueError for another."""
    for entry in REGISTRY:
        if entry.runtime == runtime and runtime != SAVEDMODEL_RUNTIME:
            return entry
    raise ValueError(f"no family exports with runtime {runtime!r}")


def family(name: str) -> ModelFamily:
    """The family entry for ``model.family`` ``name``; ValueError listing the families."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; choose one of {sorted(_BY_NAME)}") from None
