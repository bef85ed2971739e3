"""Fitting the embedding family: streaming passes over the good training images, no gradient steps.

- PaDiM (full / diagonal): one pass accumulating per-cell float64 moments -> mean and whitening ``L^-1``.
- PatchCore: one pass collecting every patch feature (bounded by ``max_bank_features``), then the greedy
  k-centre coreset (and the product quantiser when asked).
- MhBC-PatchCore: one pass for the per-cell covariance, a second pass feeding whitened features to the
  cumulative k-means; memory is flat in the number of images (moments and centroids only).

The heatmap's [0, 1] scale is then fitted on held-out normal images (the validation products, else the
training images): 0 at the median map value, 0.5 at the 99th percentile of normal patch scores.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from tfad.backbones import build_feature_extractor, flops_per_image
from tfad.families.embedding.coreset import greedy_coreset
from tfad.families.embedding.mhbc import CumulativeKMeans, StreamingCovariance
from tfad.families.embedding.model import BankModel, EmbeddingModel, GaussianModel, patch_features
from tfad.families.embedding.presets import EmbeddingArchitecture
from tfad.families.embedding.product_quantization import fit_product_quantizer

log = logging.getLogger(__name__)

TAP_CHANNELS = {"stride4": 24, "stride8": 40, "stride16": 112}  # EfficientNet-Lite0 stage outputs
PQ_CENTROIDS = 256

Batches = Callable[[], Iterable[Any]]  # a fresh pass: float images [B, H, W, C] in [0, 1]


def channel_subset(arch: EmbeddingArchitecture) -> np.ndarray | None:
    """PaDiM's seeded random channel subset (sorted indices into the concatenated taps), or None (all)."""
    total = sum(TAP_CHANNELS[t] for t in arch.tap_list())
    if not arch.feature_channels or arch.feature_channels >= total:
        return None
    rng = np.random.default_rng(arch.seed)
    return np.sort(rng.choice(total, arch.feature_channels, replace=False)).astype(np.int32)


def feature_dim(arch: EmbeddingArchitecture) -> int:
    """Channels of the aggregated patch features."""
    subset = channel_subset(arch)
    return len(subset) if subset is not None else sum(TAP_CHANNELS[t] for t in arch.tap_list())


def inference_cost(arch: EmbeddingArchitecture, bank_size: int | None = None) -> dict[str, float]:
    """Analytic cost of scoring one patch (multiply-add = 2 FLOP): the backbone up to its deepest tap, the
    distance to the normal model, and the normal model's bytes (float32). ``bank_size``: PatchCore's
    coreset rows (PQ re-ranking is counted as the table look-ups plus ``pq_top_k`` exact distances)."""
    cells, dim = arch.grid_size**2, feature_dim(arch)
    backbone = flops_per_image(arch.backbone_input_size, tuple(arch.tap_list()))
    if arch.method == "padim":
        distance, stored = 2.0 * cells * dim * dim, cells * dim * (dim + 1)
    elif arch.method == "padim-diagonal":
        distance, stored = 2.0 * cells * dim, 2 * cells * dim
    elif arch.method == "mhbc-patchcore":
        distance = 2.0 * cells * dim * (dim + arch.mhbc_centroids)
        stored = cells * dim * (dim + 1) + arch.mhbc_centroids * dim
    else:
        rows = bank_size or 0
        if arch.pq_subspaces:  # distance tables, one look-up per sub-space per row, exact top-K re-ranking
            distance = cells * (
                2.0 * PQ_CENTROIDS * dim + rows * arch.pq_subspaces + 2.0 * arch.pq_top_k * dim
            )
            stored = rows * dim + rows * arch.pq_subspaces + PQ_CENTROIDS * dim
        else:
            distance, stored = 2.0 * cells * rows * dim, rows * dim
    return {
        "backbone_gflops": backbone / 1e9,
        "distance_gflops": distance / 1e9,
        "gflops": (backbone + distance) / 1e9,
        "normal_model_mb": 4.0 * stored / 2**20,
    }


def build_model(
    arch: EmbeddingArchitecture, build: dict[str, Any] | None = None, weights: str | None = "package"
) -> EmbeddingModel:
    """The inference model of ``arch``; ``build`` (run.json's ``network_build``) sizes a fitted bank.

    ``weights`` is the backbone's (``"package"``: the pip package's ImageNet weights; None when the whole
    model's fitted weights are loaded afterwards)."""
    build = build or {}
    cells, dim = arch.grid_size**2, feature_dim(arch)
    if arch.method == "patchcore":
        normal = BankModel(
            int(build.get("bank_size", 1)), dim, arch.pq_subspaces, PQ_CENTROIDS, arch.pq_top_k, name="bank"
        )
    else:
        normal = GaussianModel(
            cells,
            dim,
            diagonal=arch.method == "padim-diagonal",
            centroids=int(build.get("centroids", 0)) if arch.method == "mhbc-patchcore" else 0,
            name="gaussian",
        )
    extractor = build_feature_extractor(
        arch.backbone_input_size, arch.channels, tuple(arch.tap_list()), weights=weights
    )
    model = EmbeddingModel(arch, extractor, normal, channel_subset(arch), name="embedding")
    model(tf.zeros([1, arch.image_size, arch.image_size, arch.channels]))  # build every weight
    return model


def _whitening(moments: StreamingCovariance, eps: float) -> np.ndarray:
    # W = L^-1 per cell (L L^T = Sigma + eps I, in float64): the Mahalanobis distance is ||W (x - mu)|| and
    # scoring is then a plain batched matmul.
    covariance = moments.covariance() + eps * np.eye(moments.dim)[None]
    cholesky = np.linalg.cholesky(covariance)
    eye = np.broadcast_to(np.eye(moments.dim), cholesky.shape)
    return np.linalg.solve(cholesky, eye).astype(np.float32)


def _bar(total: int, what: str, progress: bool) -> tqdm:
    return tqdm(total=total, desc=what, unit="img", disable=not progress, dynamic_ncols=True, mininterval=1.0)


def _feature_batches(features_fn, batches: Batches, total: int, what: str, progress: bool) -> Iterator:
    bar = _bar(total, what, progress)
    for images in batches():
        features = features_fn(images)
        bar.update(int(features.shape[0]))
        yield features
    bar.close()


def fit_state(
    arch: EmbeddingArchitecture, extractor: keras.Model, batches: Batches, total_images: int, progress: bool
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The fitted statistics of ``arch`` over the training images: ``(state, build)`` where ``state`` is
    what the normal-model layer's ``assign`` takes and ``build`` sizes the layer (run.json)."""
    subset = channel_subset(arch)
    features_fn = tf.function(lambda x: patch_features(x, arch, extractor, subset), reduce_retracing=True)
    cells, dim = arch.grid_size**2, feature_dim(arch)

    def moments_pass(what: str) -> StreamingCovariance:
        moments = StreamingCovariance(cells, dim)
        for features in _feature_batches(features_fn, batches, total_images, what, progress):
            moments.update(features.numpy())
        return moments

    if arch.method == "padim-diagonal":
        moments = moments_pass("fit PaDiM (diagonal)")
        variance = np.diagonal(moments.covariance(), axis1=1, axis2=2) + arch.covariance_eps
        inverse_std = (1.0 / np.sqrt(variance)).astype(np.float32)
        return {"mean": moments.mean().astype(np.float32), "inverse_std": inverse_std}, {
            "images": moments.count
        }
    if arch.method == "padim":
        moments = moments_pass("fit PaDiM")
        state = {
            "mean": moments.mean().astype(np.float32),
            "whitening": _whitening(moments, arch.covariance_eps),
        }
        return state, {"images": moments.count}
    if arch.method == "mhbc-patchcore":
        moments = moments_pass("MhBC pass 1/2: covariance")
        mean, whitening = moments.mean().astype(np.float32), _whitening(moments, arch.covariance_eps)
        kmeans = CumulativeKMeans(arch.mhbc_centroids, dim, seed=arch.seed)
        what = "MhBC pass 2/2: k-means"
        for features in _feature_batches(features_fn, batches, total_images, what, progress):
            z = tf.einsum("pde,npe->npd", whitening, features - mean[None])
            kmeans.update(tf.reshape(z, [-1, dim]).numpy())
        state = {"mean": mean, "whitening": whitening, "centroids": kmeans.centroids}
        return state, {"images": moments.count, "centroids": int(kmeans.centroids.shape[0])}
    # PatchCore: collect, cap, coreset
    cap = arch.max_bank_features or total_images * cells
    rng = np.random.default_rng(arch.seed)
    bank = np.empty((min(cap, total_images * cells), dim), np.float32)
    filled = seen = 0
    for features in _feature_batches(features_fn, batches, total_images, "PatchCore: collect", progress):
        flat = features.numpy().reshape(-1, dim)
        if filled + len(flat) <= len(bank):
            bank[filled : filled + len(flat)] = flat
            filled += len(flat)
            seen += len(flat)
            continue
        for row in flat:  # reservoir sampling keeps a uniform sample when the bank is capped
            if filled < len(bank):
                bank[filled] = row
                filled += 1
            else:
                j = rng.integers(0, seen + 1)
                if j < len(bank):
                    bank[j] = row
            seen += 1
    bank = bank[:filled]
    n_select = max(1, math.ceil(arch.coreset_fraction * len(bank)))
    log.info("PatchCore: greedy coreset of %d of %d patch features", n_select, len(bank))
    bar = _bar(n_select, "PatchCore: coreset", progress)

    def on_progress(done: int, total: int) -> None:
        bar.n = done
        bar.refresh()

    index = greedy_coreset(
        bank, n_select, projection_dim=arch.coreset_projection_dim, seed=arch.seed, progress=on_progress
    )
    bar.close()
    state: dict[str, np.ndarray] = {"bank": bank[index]}
    build: dict[str, Any] = {
        "images": total_images,
        "collected_features": int(len(bank)),
        "bank_size": n_select,
    }
    if arch.pq_subspaces:
        if dim % arch.pq_subspaces:
            raise ValueError(f"pq_subspaces {arch.pq_subspaces} must divide the feature dimension {dim}")
        quantizer = fit_product_quantizer(state["bank"], arch.pq_subspaces, PQ_CENTROIDS, seed=arch.seed)
        state.update(codebooks=quantizer.codebooks, codes=quantizer.encode(state["bank"]))
    return state, build


def heatmap_range(model: EmbeddingModel, batches: Batches) -> tuple[float, float]:
    """(low, high) of the heatmap scale from normal images: low = median map value, and 0.5 on the scale
    at the 99th percentile of their patch scores."""
    call = tf.function(lambda x: model(x)["anomaly_map"], reduce_retracing=True)
    values, scores = [], []
    for images in batches():
        maps = call(images).numpy()
        scores.append(maps.reshape(len(maps), -1).max(axis=1))
        values.append(np.median(maps.reshape(len(maps), -1), axis=1))
    low = float(np.median(np.concatenate(values)))
    high = low + 2.0 * max(float(np.percentile(np.concatenate(scores), 99)) - low, 1e-6)
    return low, high
