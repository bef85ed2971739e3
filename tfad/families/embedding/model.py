"""The embedding family's inference network: pretrained features -> distance to the normal model -> map.

``EmbeddingModel`` maps images in [0, 1] ``[N, H, W, C]`` to ``{"anomaly_map": [N, H, W, 1]}`` (a distance,
higher = more anomalous, Gaussian-blurred at image size) and ``{"heatmap": [N, H, W, 1]}`` (the same map on
a fixed [0, 1] scale fitted on normal images). The fitted statistics are non-trainable weights of the normal
model layer, so a run's ``.weights.h5`` and the exported SavedModel carry them: the C++ server serves the
family like any other, with no file beside the graph.

Normal models (one layer each; ``features`` are ``[N, P, D]``, P grid cells, D channels):

- :class:`GaussianModel` (PaDiM, 002 Eq. 5.6): per-cell mean and whitening matrix ``W = L^-1`` with
  ``L L^T = Sigma + eps I``; distance ``||W (x - mu)||`` is the Mahalanobis distance. The diagonal variant
  keeps ``1 / sigma`` per channel. MhBC-PatchCore shares the whitening and adds a centroid bank in the
  whitened space (003 s. 8.3.5).
- :class:`BankModel` (PatchCore): 1-NN Euclidean distance to a coreset memory bank, optionally product-
  quantised with exact re-ranking of the top-K candidates (002 s. 6.3).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfad.backbones import backbone_taps, feature_grid, upsample_blur
from tfad.families.embedding.presets import EmbeddingArchitecture
from tfad.families.embedding.product_quantization import exact_nearest_distance, pq_nearest_distance


def _weight(layer: keras.layers.Layer, name: str, shape: tuple[int, ...], dtype: str = "float32"):
    return layer.add_weight(name=name, shape=shape, dtype=dtype, initializer="zeros", trainable=False)


class GaussianModel(keras.layers.Layer):
    """Per-cell Gaussian (PaDiM), full or diagonal, optionally with MhBC centroids in the whitened space."""

    def __init__(self, cells: int, dim: int, diagonal: bool = False, centroids: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        self.cells, self.dim, self.diagonal, self.n_centroids = cells, dim, diagonal, centroids
        self.mean = _weight(self, "mean", (cells, dim))
        if diagonal:
            self.inverse_std = _weight(self, "inverse_std", (cells, dim))
        else:
            self.whitening = _weight(self, "whitening", (cells, dim, dim))
        if centroids:
            self.centroids = _weight(self, "centroids", (centroids, dim))

    def whiten(self, features: tf.Tensor) -> tf.Tensor:
        """``[N, P, D]`` -> whitened ``[N, P, D]`` (``W (x - mu)`` per cell)."""
        centred = features - self.mean[None]
        if self.diagonal:
            return centred * self.inverse_std[None]
        return tf.einsum("pde,npe->npd", self.whitening, centred)

    def call(self, features: tf.Tensor) -> tf.Tensor:
        """``[N, P, D]`` -> distances ``[N, P]``."""
        z = self.whiten(features)
        if not self.n_centroids:
            return tf.sqrt(tf.reduce_sum(tf.square(z), axis=-1))
        n, p = tf.shape(z)[0], tf.shape(z)[1]
        flat = tf.reshape(z, [-1, self.dim])
        return tf.reshape(exact_nearest_distance(flat, self.centroids), [n, p])

    def assign(self, state: dict[str, np.ndarray]) -> None:
        """Set the fitted statistics (:func:`tfad.families.embedding.fitter` output)."""
        self.mean.assign(state["mean"])
        if self.diagonal:
            self.inverse_std.assign(state["inverse_std"])
        else:
            self.whitening.assign(state["whitening"])
        if self.n_centroids:
            self.centroids.assign(state["centroids"])


class BankModel(keras.layers.Layer):
    """PatchCore's memory bank: 1-NN distance, exact or product-quantised with exact re-ranking."""

    def __init__(self, size: int, dim: int, pq_subspaces: int = 0, pq_centroids: int = 256, top_k: int = 16,
                 **kwargs: Any):  # fmt: skip
        super().__init__(**kwargs)
        self.size, self.dim, self.pq_subspaces, self.top_k = size, dim, pq_subspaces, top_k
        self.bank = _weight(self, "bank", (size, dim))
        if pq_subspaces:
            self.codebooks = _weight(self, "codebooks", (pq_subspaces, pq_centroids, dim // pq_subspaces))
            self.codes = _weight(self, "codes", (size, pq_subspaces), dtype="int32")

    def call(self, features: tf.Tensor) -> tf.Tensor:
        """``[N, P, D]`` -> distances ``[N, P]``."""
        n, p = tf.shape(features)[0], tf.shape(features)[1]
        flat = tf.reshape(features, [-1, self.dim])
        if self.pq_subspaces:
            distances = pq_nearest_distance(flat, self.codebooks, self.codes, self.bank, self.top_k)
        else:
            distances = exact_nearest_distance(flat, self.bank)
        return tf.reshape(distances, [n, p])

    def assign(self, state: dict[str, np.ndarray]) -> None:
        """Set the fitted bank (and quantiser)."""
        self.bank.assign(state["bank"])
        if self.pq_subspaces:
            self.codebooks.assign(state["codebooks"])
            self.codes.assign(state["codes"].astype(np.int32))


def patch_features(
    images: tf.Tensor, arch: EmbeddingArchitecture, extractor: keras.Model, channel_index: np.ndarray | None
) -> tf.Tensor:
    """Images in [0, 1] ``[N, H, W, C]`` -> aggregated patch features ``[N, P, D]``: the backbone's tapped
    stages upsampled to the finest grid and concatenated, the channel subset, the local k x k mean, the
    border cells dropped (P = ``arch.grid_size ** 2``)."""
    grid = arch.backbone_input_size // arch.finest_stride
    maps = backbone_taps(images, extractor, arch.backbone_input_size)
    if channel_index is not None:
        maps = _select_channels(maps, np.asarray(channel_index))
    features = feature_grid(maps, grid, arch.local_average)
    b = arch.border_cells
    if b:
        features = features[:, b:-b, b:-b, :]
    inner = grid - 2 * b
    return tf.reshape(features, [-1, inner * inner, features.shape[-1]])


def _select_channels(maps: list[tf.Tensor], channel_index: np.ndarray) -> list[tf.Tensor]:
    # The resize, the concatenation and the local mean act on each channel alike, so the subset is taken from
    # each tap before them (the same values, bit for bit): the grid is built for the kept channels only. The
    # fitter's subset is sorted, so the taps' subsets keep its order.
    if np.any(np.diff(channel_index) <= 0):
        raise ValueError("the channel subset must be sorted and without repeats (the fitter's always is)")
    selected, first = [], 0
    for tap in maps:
        channels = int(tap.shape[-1])
        local = channel_index[(channel_index >= first) & (channel_index < first + channels)] - first
        if len(local):
            selected.append(tf.gather(tap, tf.constant(local.astype(np.int32)), axis=-1))
        first += channels
    return selected


class EmbeddingModel(keras.Model):
    """Images in [0, 1] -> ``{"anomaly_map", "heatmap"}`` ``[N, H, W, 1]``; see the module docstring."""

    def __init__(self, arch: EmbeddingArchitecture, extractor: keras.Model, normal_model: keras.layers.Layer,
                 channel_index: np.ndarray | None, **kwargs: Any):  # fmt: skip
        super().__init__(**kwargs)
        self.arch = arch
        self.extractor = extractor
        self.normal_model = normal_model
        self.channel_index = None if channel_index is None else np.asarray(channel_index, np.int32)
        # heatmap = clip((map - low) / (high - low), 0, 1), fitted on normal images (fitter.heatmap_scale)
        self.heatmap_range = self.add_weight(
            name="heatmap_range", shape=(2,), initializer="zeros", trainable=False
        )

    def features(self, images: tf.Tensor) -> tf.Tensor:
        """Images in [0, 1] ``[N, H, W, C]`` -> aggregated patch features ``[N, P, D]`` (P = grid cells)."""
        return patch_features(images, self.arch, self.extractor, self.channel_index)

    def distance_grid(self, images: tf.Tensor) -> tf.Tensor:
        """Distances on the feature grid ``[N, g, g, 1]`` (border cells restored by edge replication)."""
        distances = self.normal_model(self.features(images))
        inner = self.arch.grid_size
        grid = tf.reshape(distances, [-1, inner, inner, 1])
        b = self.arch.border_cells
        if b:
            grid = tf.pad(grid, [[0, 0], [b, b], [b, b], [0, 0]], mode="SYMMETRIC")
        return grid

    def call(self, images: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:  # noqa: D102
        scaled, low, scale = self._scaled_map(images)
        return {"anomaly_map": scaled * scale + low, "heatmap": tf.clip_by_value(scaled, 0.0, 1.0)}

    def score_and_heatmap(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """Images in [0, 1] -> ``score`` [N] (the maximum of the anomaly map) and ``heatmap`` [N, H, W, 1]
        (as :meth:`call`'s), without writing the image-size anomaly map itself."""
        scaled, low, scale = self._scaled_map(images)
        # the scale is positive: the maximum of the affine map is the affine map of the maximum
        score = tf.reduce_max(scaled, axis=[1, 2, 3]) * scale + low
        return {"score": score, "heatmap": tf.clip_by_value(scaled, 0.0, 1.0)}

    def _scaled_map(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        # (anomaly map - low) / scale at image size, low and scale: the heatmap's fitted [0, 1] scale
        # (fitter.heatmap_range). The bilinear resize and the blur, one matrix product per axis (far faster on
        # CPU than the resize and a 33-tap blur of the full-size map), have weights that sum to one, so the
        # affine map passes through them: applied to the g x g grid instead of the image-size map, it saves
        # two passes over the image (2.6 GHz Intel Xeon, AVX2 code: docs/performance.md).
        low, high = self.heatmap_range[0], self.heatmap_range[1]
        scale = tf.maximum(high - low, 1e-12)
        grid = (self.distance_grid(images) - low) / scale
        return upsample_blur(grid, self.arch.image_size, self.arch.blur_sigma), low, scale


def score_images(model: EmbeddingModel, images: tf.Tensor) -> dict[str, tf.Tensor]:
    """The serving contract on uint8 ``images`` ``[N, H, W, C]``: ``score`` [N] = max of the blurred
    distance map, ``heatmap`` [N, H, W] on the fitted [0, 1] scale."""
    outputs = model.score_and_heatmap(tf.cast(images, tf.float32) / 255.0)
    return {"score": outputs["score"], "heatmap": outputs["heatmap"][..., 0]}
