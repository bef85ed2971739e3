"""MhBC-PatchCore (Mahalanobis-Based Clusters PatchCore, 003 s. 8.3.5): bounded-memory fitting pieces.

- :class:`StreamingCovariance`: online per-position mean and covariance (003 s. 8.3.5.4 and Appendix C),
  float64 sums of the features and of their outer products; ``finalize`` adds ``eps I`` (003 Eq. D.8) and
  returns the Cholesky factor ``L`` (003 Eq. 8.35).
- :func:`project`: ``z = L^-1 (x - mu)`` by ``tf.linalg.triangular_solve`` (003 Eq. 8.36-8.37, D.3), so
  ``||z||`` is the Mahalanobis distance (003 Eq. D.4) and Euclidean distances between projections of the
  same position are Mahalanobis distances.
- :class:`CumulativeKMeans`: the cumulative (streaming) k-means of 003 s. 8.3.5.5.1 over projected
  features, replacing PatchCore's full memory bank; memory ``K x D`` whatever the number of images.
- :func:`mhbc_patch_distances`: the score, 1-NN Euclidean distance of the projected test features to the
  centroids (003 s. 8.3.5.6, Eq. 8.40).

Covariance layout: per position, as 003 defines it (``Sigma in R^{H0 x W0 x C x C}``, s. 8.3.5.4) and
notes/methods.md reads it; its ablation (Table 8.3) found a single pooled covariance worse. ``pooled=True``
keeps one ``[D, D]`` matrix for all positions (that ablation) when ``P x D x D`` float64 is too large.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfad.families.embedding.product_quantization import exact_nearest_distance, kmeans_plus_plus

# Rows per block when assigning points to centroids (a [rows, K] float32 block: 8192 x 1024 x 4 B = 32 MB).
_ASSIGN_ROWS = 8192


class StreamingCovariance:
    """Online mean and covariance of patch features, per position (or pooled over positions).

    ``update`` takes feature batches ``[N, P, D]`` (numpy or TensorFlow). The sums are float64 and taken
    about a fixed shift (the first batch's mean), which keeps ``sum(x x^T) - n mu mu^T`` free of the
    cancellation the raw formula of 003 Eq. C.2 suffers when the mean is large against the spread.

    Memory (float64): ``P x D x D + 2 P x D`` values per position layout (1024 x 300 x 300 -> 737 MB), or
    ``D x D + 2 D`` pooled; flat in the number of images.
    """

    def __init__(self, positions: int, dim: int, pooled: bool = False) -> None:
        self.positions, self.dim, self.pooled = int(positions), int(dim), bool(pooled)
        cells = 1 if self.pooled else self.positions
        self.count = 0  # images seen
        self._shift: np.ndarray | None = None  # [cells, D]
        self._sum = np.zeros((cells, self.dim), dtype=np.float64)
        self._outer = np.zeros((cells, self.dim, self.dim), dtype=np.float64)

    @property
    def samples(self) -> int:
        """Feature vectors behind each covariance matrix (images, times P when pooled)."""
        return self.count * (self.positions if self.pooled else 1)

    def update(self, features: np.ndarray | tf.Tensor) -> None:
        """Accumulate a batch of features ``[N, P, D]``."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 3 or x.shape[1:] != (self.positions, self.dim):
            raise ValueError(f"features must be [N, {self.positions}, {self.dim}], got {x.shape}")
        if x.shape[0] == 0:
            return
        # [cells, n, D]: per position the images are the samples; pooled, every (image, position) is one
        x = x.reshape(1, -1, self.dim) if self.pooled else x.transpose(1, 0, 2)
        if self._shift is None:
            self._shift = x.mean(axis=1)
        x = x - self._shift[:, None, :]
        self._sum += x.sum(axis=1)
        self._outer += np.matmul(x.transpose(0, 2, 1), x)
        self.count += int(features.shape[0])

    def mean(self) -> np.ndarray:
        """Mean ``[cells, D]`` float64 (cells = P, or 1 when pooled)."""
        if self.count == 0:
            raise ValueError("no features seen")
        return self._shift + self._sum / self.samples

    def covariance(self, ddof: int = 1) -> np.ndarray:
        """Covariance ``[cells, D, D]`` float64, normalised by ``n - ddof``.

        ``ddof=1`` (default) is the unbiased estimate of 003 Eq. B.3/B.5 and ``np.cov``'s default;
        ``ddof=0`` is 003 Appendix C's ``sum_x2 / n - mu mu^T``.
        """
        n = self.samples
        if n - ddof <= 0:
            raise ValueError(f"need more than {ddof} samples per position, got {n}")
        centred_mean = self._sum / n  # mean of the shifted data
        outer = self._outer - n * centred_mean[:, :, None] * centred_mean[:, None, :]
        cov = outer / (n - ddof)
        return 0.5 * (cov + cov.transpose(0, 2, 1))  # exact symmetry for the Cholesky factorisation

    def finalize(self, eps: float = 0.01, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``(mean [cells, D], cholesky_lower [cells, D, D])`` float32 of ``Sigma + eps I`` (003 Eq. D.8-D.9).

        ``cells`` is P, or 1 when pooled (then both broadcast over the positions in :func:`project`). The
        factorisation runs in float64; a non-positive-definite matrix (``eps`` 0 with fewer samples than
        dimensions) raises ``numpy.linalg.LinAlgError``.
        """
        cov = self.covariance(ddof) + eps * np.eye(self.dim)[None]
        cholesky = np.linalg.cholesky(cov)
        return self.mean().astype(np.float32), cholesky.astype(np.float32)


# Reference form (triangular solve) of the whitening; the served graph uses the precomputed W = L^-1 of
# fitter._whitening (a plain matmul) and the tests check both give the Mahalanobis distance.
def project(features: tf.Tensor, mean: tf.Tensor, cholesky: tf.Tensor) -> tf.Tensor:
    """``z = L^-1 (x - mu)`` per position (003 Eq. 8.36-8.37): ``[N, P, D]`` -> ``[N, P, D]``.

    ``mean [P, D]`` and ``cholesky [P, D, D]`` (lower), or ``[1, D]`` / ``[1, D, D]`` (pooled, broadcast over
    the positions). Solved with ``tf.linalg.triangular_solve`` instead of inverting L. ``||z||`` is the
    Mahalanobis distance of x to the position's Gaussian (003 Eq. D.4), and ``||z1 - z2||`` the Mahalanobis
    distance between two features of the same position (003 Eq. B.8), whatever the mean.
    """
    features = tf.convert_to_tensor(features)
    mean = tf.convert_to_tensor(mean, dtype=features.dtype)
    cholesky = tf.convert_to_tensor(cholesky, dtype=features.dtype)
    centred = features - mean[None]
    if cholesky.shape[0] == 1:
        # pooled: one solve with every (image, position) as a right-hand side; broadcasting L over P
        # would materialise P copies of it
        shape = tf.shape(centred)
        flat = tf.transpose(tf.reshape(centred, tf.stack([-1, shape[2]])))  # [D, N*P]
        z = tf.linalg.triangular_solve(cholesky[0], flat, lower=True)
        return tf.reshape(tf.transpose(z), shape)
    # per position: [P, D, N], the images are the right-hand sides of position p's system
    z = tf.linalg.triangular_solve(cholesky, tf.transpose(centred, [1, 2, 0]), lower=True)
    return tf.transpose(z, [2, 0, 1])


class CumulativeKMeans:
    """Cumulative (streaming) k-means over projected features (003 s. 8.3.5.5.1, Eq. 8.38).

    Each centroid is the running mean of every point ever assigned to it: a batch is assigned to the
    nearest current centroids, then ``c_j <- (n_j c_j + sum of its new points) / (n_j + b_j)`` with
    per-centroid counts ``n_j`` (mini-batch k-means with 1/n learning rates, Sculley 2010). The centroids
    are seeded by k-means++ on the first batch(es) once at least ``n_centroids`` points arrived (buffered
    until then; at most ``16 K`` of them sampled for the seeding), deterministically from ``seed``.

    Memory: centroids ``K x D`` float64 and counts ``K``, plus the seeding buffer (< ``K x D``, freed once
    seeded) - independent of the number of updates.
    """

    def __init__(self, n_centroids: int, dim: int, seed: int = 0) -> None:
        if n_centroids < 1:
            raise ValueError(f"n_centroids must be >= 1, got {n_centroids}")
        self.n_centroids, self.dim = int(n_centroids), int(dim)
        self._rng = np.random.default_rng(seed)
        self._centroids: np.ndarray | None = None  # [K, D] float64 once seeded
        self._counts = np.zeros(self.n_centroids, dtype=np.int64)
        self._buffer: list[np.ndarray] = []  # points seen before seeding (fewer than K)
        self.seen = 0

    @property
    def seeded(self) -> bool:
        """Whether the centroids exist (at least ``n_centroids`` points seen)."""
        return self._centroids is not None

    @property
    def counts(self) -> np.ndarray:
        """Points assigned to each centroid so far ``[K]`` int64."""
        return self._counts.copy()

    @property
    def centroids(self) -> np.ndarray:
        """Centroids ``[K, D]`` float32; before seeding, the (fewer than K) points seen so far."""
        if self._centroids is None:
            if not self._buffer:
                return np.zeros((0, self.dim), dtype=np.float32)
            return np.concatenate(self._buffer).astype(np.float32)
        return self._centroids.astype(np.float32)

    def update(self, projected_batch: np.ndarray | tf.Tensor) -> None:
        """Fold a batch of projected features ``[B, D]`` into the centroids."""
        x = np.asarray(projected_batch, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"projected_batch must be [B, {self.dim}], got {x.shape}")
        if len(x) == 0:
            return
        self.seen += len(x)
        if self._centroids is None:
            self._buffer.append(x)
            if sum(len(b) for b in self._buffer) < self.n_centroids:
                return
            x = np.concatenate(self._buffer)
            self._buffer = []
            # k-means++ is K sequential passes: seed from at most 16 K of the points (all are assigned below)
            pool = (
                x
                if len(x) <= 16 * self.n_centroids
                else x[self._rng.choice(len(x), 16 * self.n_centroids, replace=False)]
            )
            self._centroids = kmeans_plus_plus(pool.astype(np.float32), self.n_centroids, self._rng).astype(
                np.float64
            )
        labels = self._assign(x)
        # per-centroid sums of the batch: sort by label, then one reduceat (np.add.at is far slower)
        order = np.argsort(labels, kind="stable")
        hit, starts, batch_counts = np.unique(labels[order], return_index=True, return_counts=True)
        sums = np.add.reduceat(x[order], starts, axis=0)
        total = self._counts[hit] + batch_counts
        self._centroids[hit] = (self._counts[hit, None] * self._centroids[hit] + sums) / total[:, None]
        self._counts[hit] = total

    def _assign(self, x: np.ndarray) -> np.ndarray:
        """Nearest centroid of each row (squared Euclidean, float32 blocks; only the ranking is needed)."""
        centroids = self._centroids.astype(np.float32)
        centroid_sq = np.einsum("kd,kd->k", centroids, centroids)
        labels = np.empty(len(x), dtype=np.int64)
        for start in range(0, len(x), _ASSIGN_ROWS):
            block = x[start : start + _ASSIGN_ROWS].astype(np.float32)
            labels[start : start + len(block)] = np.argmin(
                centroid_sq[None] - 2.0 * block @ centroids.T, axis=1
            )
        return labels


def mhbc_patch_distances(
    features: tf.Tensor, mean: tf.Tensor, cholesky: tf.Tensor, centroids: tf.Tensor, chunk: int | None = None
) -> tf.Tensor:
    """MhBC-PatchCore patch scores ``[N, P]``: 1-NN Euclidean distance of the projected features (003 Eq.
    8.40) to the centroids ``[K, D]`` (:func:`exact_nearest_distance`, memory ``N P x chunk`` float32)."""
    z = project(features, mean, cholesky)
    n, p, d = tf.shape(z)[0], tf.shape(z)[1], tf.shape(z)[2]
    distances = exact_nearest_distance(tf.reshape(z, tf.stack([n * p, d])), centroids, chunk=chunk)
    return tf.reshape(distances, tf.stack([n, p]))
