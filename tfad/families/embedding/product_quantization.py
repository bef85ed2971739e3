"""Nearest-neighbour scoring against a PatchCore memory bank: exact, and product-quantised with re-ranking.

- :func:`exact_nearest_distance`: exact 1-NN Euclidean distance (PatchCore's patch score, 002 Eq. 6.3-6.4,
  003 Eq. 8.18), the default scorer.
- :func:`fit_product_quantizer` / :func:`pq_nearest_distance`: the product-quantised memory bank of 002
  s. 6.3 (Jegou et al.). Per 002's PQNN search, a coarse search over the quantised bank keeps the ``top_k``
  candidates, which are re-ranked exactly against the float bank rows. Unlike 002 Alg. 6.1 the query is
  not quantised: the coarse distances are asymmetric (ADC) table look-ups, as notes/methods.md decides.
- :func:`patchcore_image_score`: PatchCore's re-weighted image score (Roth et al. 2022, Eq. 7).

The scoring functions are plain TensorFlow ops (``tf.while_loop`` over chunks, no numpy), usable inside a
``tf.function`` exported to a SavedModel, with the bank as a constant or variable. Memory is bounded by
chunking over the bank: each step holds ``Q x chunk`` float32 distances, ``chunk`` defaulting to
``max(256, 2**24 // Q)`` rows (~64 MB whatever the query count, unless Q > 65536).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

# Distances held per bank chunk when ``chunk`` is not given: 2**24 float32 = 64 MB.
_DISTANCE_BUDGET = 1 << 24
_MIN_CHUNK = 256
# Queries per block of the PQ search: tables 128 x S x K float32 (2.5 MB for S = 19, K = 256) stay in cache;
# 128-2048 measured within the noise of the shared machine, larger not faster.
_PQ_QUERY_BLOCK = 128
# Rows per block in the numpy k-means/encoding (a [rows, K] distance block: 8192 x 256 x 4 B = 8 MB).
_NUMPY_ROWS = 8192


# --------------------------------------------------------------------------------------------------------
# Exact nearest neighbour
# --------------------------------------------------------------------------------------------------------


def _chunk_rows(n_queries: tf.Tensor, n_rows: tf.Tensor, chunk: int | None) -> tf.Tensor:
    """Bank rows per loop step: fixed, or sized so a ``[Q, chunk]`` block stays within the budget."""
    if chunk is not None:
        size = tf.constant(int(chunk), tf.int32)
    else:
        size = tf.maximum(_DISTANCE_BUDGET // tf.maximum(n_queries, 1), _MIN_CHUNK)
    return tf.maximum(tf.minimum(size, n_rows), 1)


def _squared_distances(queries: tf.Tensor, query_sq: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
    """``[Q, R]`` squared distances by ||q||^2 - 2 q.b + ||b||^2 (one matmul), clamped at 0."""
    rows_sq = tf.reduce_sum(tf.square(rows), axis=1)
    d2 = query_sq[:, None] - 2.0 * tf.matmul(queries, rows, transpose_b=True) + rows_sq[None, :]
    return tf.maximum(d2, 0.0)


def _scan_bank(queries: tf.Tensor, bank: tf.Tensor, chunk: int | None, initial: tuple, merge) -> tuple:
    """Fold ``merge(state, d2 [Q, R], row_index [R] int64) -> state`` over the bank in chunks of rows (one
    ``tf.while_loop``, memory ``Q x chunk``); returns the final state."""
    n_queries, n_rows = tf.shape(queries)[0], tf.shape(bank)[0]
    size = _chunk_rows(n_queries, n_rows, chunk)
    n_chunks = (n_rows + size - 1) // size
    query_sq = tf.reduce_sum(tf.square(queries), axis=1)

    def body(i, *state):
        start = i * size
        rows = bank[start : tf.minimum(start + size, n_rows)]
        d2 = _squared_distances(queries, query_sq, rows)
        row_index = tf.range(tf.shape(rows)[0], dtype=tf.int64) + tf.cast(start, tf.int64)
        return (i + 1, *merge(state, d2, row_index))

    _, *state = tf.while_loop(lambda i, *_: i < n_chunks, body, (tf.constant(0), *initial))
    return tuple(state)


def _nearest_squared(queries: tf.Tensor, bank: tf.Tensor, chunk: int | None) -> tuple[tf.Tensor, tf.Tensor]:
    """(min squared distance [Q] by the matmul expansion, argmin index [Q] int64) over bank chunks."""

    def merge(state, d2, row_index):
        best, best_index = state
        chunk_best = tf.reduce_min(d2, axis=1)
        chunk_index = tf.gather(row_index, tf.argmin(d2, axis=1, output_type=tf.int64))
        better = chunk_best < best  # strict: ties keep the lower index, like np.argmin
        return tf.where(better, chunk_best, best), tf.where(better, chunk_index, best_index)

    n_queries = tf.shape(queries)[0]
    initial = (tf.fill([n_queries], tf.constant(np.inf, queries.dtype)), tf.zeros([n_queries], tf.int64))
    best, best_index = _scan_bank(queries, bank, chunk, initial, merge)
    return best, best_index


def exact_nearest_distance(
    queries: tf.Tensor, bank: tf.Tensor, chunk: int | None = None, return_index: bool = False
) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
    """Exact 1-NN Euclidean distance of each query ``[Q, D]`` to the rows of ``bank [M, D]``: ``[Q]``.

    The search uses ||q||^2 - 2 q.b + ||b||^2 (a matmul per bank chunk, clamped at 0); the returned distance
    is then recomputed directly as ||q - b*|| for the chosen row, so it does not carry the expansion's
    float32 cancellation error (which matters for near-duplicates). ``chunk`` bank rows are processed per
    step (memory ``Q x chunk`` float32); None sizes it to ~64 MB. With ``return_index`` also returns the
    argmin row ``[Q]`` int64 (lowest index on ties). ``bank`` must have at least one row.
    """
    queries = tf.convert_to_tensor(queries)
    bank = tf.convert_to_tensor(bank, dtype=queries.dtype)
    _, index = _nearest_squared(queries, bank, chunk)
    distance = tf.norm(queries - tf.gather(bank, index), axis=1)
    return (distance, index) if return_index else distance


def _nearest_k(queries: tf.Tensor, bank: tf.Tensor, k: int, chunk: int | None) -> tuple[tf.Tensor, tf.Tensor]:
    """(squared distances [Q, k] ascending, indices [Q, k] int64) of the k nearest bank rows; with k > M the
    last k - M columns are +inf with index -1."""

    def merge(state, d2, row_index):
        best, best_index = state
        merged = tf.concat([best, d2], axis=1)
        merged_index = tf.concat([best_index, tf.broadcast_to(row_index[None], tf.shape(d2))], axis=1)
        neg, pos = tf.math.top_k(-merged, k=k)
        return -neg, tf.gather(merged_index, pos, batch_dims=1)

    n_queries = tf.shape(queries)[0]
    initial = (
        tf.fill([n_queries, k], tf.constant(np.inf, queries.dtype)),
        tf.fill([n_queries, k], tf.constant(-1, tf.int64)),
    )
    best, best_index = _scan_bank(queries, bank, chunk, initial, merge)
    return best, best_index


# --------------------------------------------------------------------------------------------------------
# Product quantisation (002 s. 6.3)
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductQuantizer:
    """A fitted product quantiser: ``codebooks [S, K, D/S]`` float32 (S sub-spaces, K <= 256 centroids)."""

    codebooks: np.ndarray

    @property
    def n_subspaces(self) -> int:
        """S."""
        return int(self.codebooks.shape[0])

    @property
    def n_centroids(self) -> int:
        """K."""
        return int(self.codebooks.shape[1])

    @property
    def dim(self) -> int:
        """D = S * D/S."""
        return int(self.codebooks.shape[0] * self.codebooks.shape[2])

    def encode(self, bank: np.ndarray) -> np.ndarray:
        """Codes ``[M, S]`` uint8: the nearest centroid of each row's sub-vector in every sub-space."""
        bank = _split(np.asarray(bank, dtype=np.float32), self.n_subspaces)
        codes = np.empty((bank.shape[0], self.n_subspaces), dtype=np.uint8)
        for s in range(self.n_subspaces):
            codes[:, s] = _assign(bank[:, s], self.codebooks[s])[0]
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstructions ``[M, D]`` float32 of ``codes [M, S]``."""
        codes = np.asarray(codes)
        parts = [self.codebooks[s][codes[:, s]] for s in range(self.n_subspaces)]
        return np.concatenate(parts, axis=1)


def _split(bank: np.ndarray, n_subspaces: int) -> np.ndarray:
    """``[M, D]`` -> ``[M, S, D/S]`` (contiguous sub-vectors, as in Jegou et al.)."""
    if bank.ndim != 2 or bank.shape[1] % n_subspaces:
        raise ValueError(f"bank must be [M, D] with D divisible by {n_subspaces}, got {bank.shape}")
    return bank.reshape(bank.shape[0], n_subspaces, bank.shape[1] // n_subspaces)


def _assign(points: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nearest centroid [N] int64, its squared distance [N] float32), in row blocks to bound memory."""
    labels = np.empty(len(points), dtype=np.int64)
    dist = np.empty(len(points), dtype=np.float32)
    centroid_sq = np.einsum("kd,kd->k", centroids, centroids)
    scaled = np.ascontiguousarray(-2.0 * centroids.T, dtype=np.float32)
    for start in range(0, len(points), _NUMPY_ROWS):
        block = points[start : start + _NUMPY_ROWS]
        rows = np.arange(len(block))
        # ||c||^2 - 2 x.c built in place (the block is cache-sized; temporaries dominated the cost)
        d2 = block @ scaled
        d2 += centroid_sq
        best = np.argmin(d2, axis=1)
        labels[start : start + len(block)] = best
        dist[start : start + len(block)] = np.maximum(
            d2[rows, best] + np.einsum("nd,nd->n", block, block), 0.0
        )
    return labels, dist


def kmeans_plus_plus(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii): ``k`` rows of ``points`` (float32 ``[k, d]``).

    When the points have fewer than ``k`` distinct values the remaining picks fall back to uniform sampling
    (duplicate centroids are harmless: assignment keeps the first).
    """
    centroids = np.empty((k, points.shape[1]), dtype=np.float32)
    centroids[0] = points[rng.integers(len(points))]
    closest = np.sum((points - centroids[0]) ** 2, axis=1, dtype=np.float64)
    for j in range(1, k):
        total = closest.sum()
        if total > 0:
            pick = rng.choice(len(points), p=closest / total)
        else:
            pick = rng.integers(len(points))
        centroids[j] = points[pick]
        np.minimum(closest, np.sum((points - centroids[j]) ** 2, axis=1, dtype=np.float64), out=closest)
    return centroids


def _kmeans(points: np.ndarray, k: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; an empty cluster is re-seeded at the worst-fitted point."""
    centroids = kmeans_plus_plus(points, k, rng)
    for _ in range(iterations):
        labels, dist = _assign(points, centroids)
        counts = np.bincount(labels, minlength=k)
        sums = np.stack(
            [np.bincount(labels, weights=points[:, c], minlength=k) for c in range(points.shape[1])]
        )
        updated = centroids.copy()
        filled = counts > 0
        updated[filled] = (sums[:, filled] / counts[filled]).T
        empty = np.flatnonzero(~filled)
        if len(empty):
            # the points worst served by the current centroids each start a new cluster
            worst = np.argsort(dist)[::-1][: len(empty)]
            updated[empty[: len(worst)]] = points[worst]
        if np.array_equal(updated, centroids):
            break
        centroids = updated.astype(np.float32)
    return centroids


def fit_product_quantizer(
    bank: np.ndarray, n_subspaces: int, n_centroids: int = 256, iterations: int = 20, seed: int = 0
) -> ProductQuantizer:
    """Fit a product quantiser to ``bank [M, D]``: k-means (k-means++ seeding, ``iterations`` Lloyd steps,
    seeded) in each of ``n_subspaces`` contiguous sub-spaces of D / S dimensions, ``n_centroids`` (<= 256,
    so codes fit uint8) centroids each. Cost ``O(iterations * M * K * D)``; memory one ``[8192, K]`` block.
    """
    if not 1 <= n_centroids <= 256:
        raise ValueError(f"n_centroids must be in [1, 256] (uint8 codes), got {n_centroids}")
    parts = _split(np.asarray(bank, dtype=np.float32), n_subspaces)
    if len(parts) == 0:
        raise ValueError("cannot fit a product quantiser to an empty bank")
    rngs = np.random.default_rng(seed).spawn(n_subspaces)
    codebooks = np.stack(
        [
            _kmeans(np.ascontiguousarray(parts[:, s]), n_centroids, iterations, rngs[s])
            for s in range(n_subspaces)
        ]
    )
    return ProductQuantizer(codebooks=codebooks.astype(np.float32))


def _map_query_blocks(fn, queries: tf.Tensor, block: int) -> tf.Tensor:
    """``fn`` over row blocks of ``queries`` (a ``tf.while_loop``), results ``[Q]`` concatenated."""
    n_queries = tf.shape(queries)[0]
    n_blocks = (n_queries + block - 1) // block
    results = tf.TensorArray(
        queries.dtype, size=n_blocks, infer_shape=False, element_shape=tf.TensorShape([None])
    )

    def body(i, results):
        lo = i * block
        return i + 1, results.write(i, fn(queries[lo : tf.minimum(lo + block, n_queries)]))

    _, results = tf.while_loop(lambda i, _: i < n_blocks, body, (tf.constant(0), results))
    return tf.cond(n_blocks > 0, results.concat, lambda: tf.zeros([0], queries.dtype))


def pq_nearest_distance(
    queries: tf.Tensor,
    codebooks: tf.Tensor,
    codes: tf.Tensor,
    bank: tf.Tensor,
    top_k: int,
    chunk: int | None = None,
    query_block: int = _PQ_QUERY_BLOCK,
) -> tf.Tensor:
    """PQNN search (002 s. 6.3.2): 1-NN Euclidean distance ``[Q]`` of ``queries [Q, D]`` found by ADC.

    1. Asymmetric distance tables: for each query and sub-space s, the squared distance of the query's
       sub-vector to each centroid, ``[Q, S, K]`` (the query itself is not quantised).
    2. Approximate squared distance to every bank row = sum over s of ``table[q, s, codes[m, s]]``
       (``tf.gather``), scanned in bank chunks keeping the ``top_k`` smallest (``tf.math.top_k``).
    3. Exact re-ranking: the ``top_k`` candidates' float rows of ``bank [M, D]`` are compared exactly
       (direct differences) and the smallest distance ||q - b|| among them is returned.

    So the result is the exact 1-NN distance whenever the true neighbour is among the top-K candidates (and
    always for ``top_k >= M``); otherwise an upper bound of it. ``codes`` ``[M, S]`` may be any integer
    dtype (uint8 from :meth:`ProductQuantizer.encode`, int32 in a Keras weight).

    The queries are processed ``query_block`` at a time (B). Memory, float32: tables ``B x S x K``, per bank
    chunk the ``B x chunk`` approximate distances plus one gathered ``chunk x B`` block (``chunk`` None:
    ``2**24 // B`` rows, i.e. 64 MB each), the running ``B x top_k`` candidates and one ``B x D`` block in
    the re-ranking. On CPU the table look-ups are slower than the exact matmul scan (measured 3-4x, 2048
    queries, 65k x 304 bank, S = 19), as 002 s. 9.2 also found; and as the re-ranking needs the float
    bank, this reproduces 002's method rather than saving memory or time.
    """
    queries = tf.convert_to_tensor(queries)
    codebooks = tf.convert_to_tensor(codebooks, dtype=queries.dtype)
    bank = tf.convert_to_tensor(bank, dtype=queries.dtype)
    codes = tf.cast(tf.convert_to_tensor(codes), tf.int32)
    n_subspaces, n_centroids, sub_dim = codebooks.shape
    if n_subspaces is None or n_centroids is None or sub_dim is None:
        raise ValueError("codebooks must have a static shape [S, K, D/S]")
    k = int(top_k)
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    n_rows = tf.shape(bank)[0]
    # code of sub-space s -> row s*K + code of the flattened table
    flat_codes = codes + tf.range(n_subspaces, dtype=tf.int32)[None, :] * n_centroids
    centroid_sq = tf.reduce_sum(tf.square(codebooks), axis=2)

    def search(block: tf.Tensor) -> tf.Tensor:
        n_queries = tf.shape(block)[0]
        # [B, S, K] squared distances of each query sub-vector to each centroid, flattened to [S*K, B] so a
        # gather per sub-space copies whole contiguous rows (3x faster than gathering columns on CPU)
        sub = tf.reshape(block, [n_queries, n_subspaces, sub_dim])
        tables = (
            tf.reduce_sum(tf.square(sub), axis=2)[:, :, None]
            - 2.0 * tf.einsum("qsd,skd->qsk", sub, codebooks)
            + centroid_sq[None]
        )
        tables = tf.transpose(tf.reshape(tables, [n_queries, n_subspaces * n_centroids]))
        size = _chunk_rows(n_queries, n_rows, chunk)
        n_chunks = (n_rows + size - 1) // size

        def scan(i, best, best_index):
            start = i * size
            chunk_codes = flat_codes[start : tf.minimum(start + size, n_rows)]
            approx = tf.add_n([tf.gather(tables, chunk_codes[:, s]) for s in range(n_subspaces)])
            approx = tf.transpose(approx)  # [B, rows]
            index = tf.range(tf.shape(chunk_codes)[0], dtype=tf.int64) + tf.cast(start, tf.int64)
            merged = tf.concat([best, approx], axis=1)
            merged_index = tf.concat([best_index, tf.broadcast_to(index[None], tf.shape(approx))], axis=1)
            neg, pos = tf.math.top_k(-merged, k=k)
            return i + 1, -neg, tf.gather(merged_index, pos, batch_dims=1)

        # +inf padding keeps top_k's width k even when M < k; those slots are skipped in the re-ranking
        initial = (
            tf.constant(0),
            tf.fill([n_queries, k], tf.constant(np.inf, block.dtype)),
            tf.zeros([n_queries, k], tf.int64),
        )
        _, _, candidates = tf.while_loop(lambda i, *_: i < n_chunks, scan, initial)

        # exact re-ranking, one candidate column at a time (a [B, D] block instead of [B, top_k, D])
        def rerank(j, best):
            rows = tf.gather(bank, candidates[:, j])
            return j + 1, tf.minimum(best, tf.reduce_sum(tf.square(block - rows), axis=1))

        _, best = tf.while_loop(
            lambda j, _: j < tf.minimum(k, n_rows),
            rerank,
            (tf.constant(0), tf.fill([n_queries], tf.constant(np.inf, block.dtype))),
        )
        return tf.sqrt(best)

    return _map_query_blocks(search, queries, max(1, int(query_block)))


# --------------------------------------------------------------------------------------------------------
# PatchCore image score (Roth et al. 2022, Eq. 7)
# --------------------------------------------------------------------------------------------------------


# Not wired into the served score yet (the family scores by the blurred map's maximum); kept tested for
# the PatchCore re-weighting option.
def patchcore_image_score(
    features: tf.Tensor,
    patch_distances: tf.Tensor,
    nn_index: tf.Tensor,
    bank: tf.Tensor,
    b_neighbours: int,
) -> tf.Tensor:
    """PatchCore's re-weighted image anomaly score ``[N]`` (Roth et al., "Towards Total Recall in
    Industrial Anomaly Detection", CVPR 2022, Eq. 7; 002 Eq. 6.2-6.3 give ``m^test,*``, ``m*`` and ``s*``):

        m^test,*, m* = argmax_{m^test in P(x)} argmin_{m in M} ||m^test - m||,    s* = ||m^test,* - m*||
        s = (1 - exp(||m^test,* - m*||) / sum_{m in N_b(m*)} exp(||m^test,* - m||)) * s*

    ``N_b(m*)`` is the set of the ``b`` nearest bank rows to ``m*`` (``m*`` itself included, at distance 0),
    as in the reference implementations (anomalib). The weight grows when ``m*``'s neighbourhood in the
    bank is far from the test patch, i.e. when ``m*`` is an isolated (rare) bank entry.

    Args:
        features: the test images' patch features ``[N, P, D]``.
        patch_distances: their 1-NN distances ``[N, P]`` (:func:`exact_nearest_distance`).
        nn_index: the 1-NN bank rows ``[N, P]`` (``return_index=True``).
        bank: the memory bank ``[M, D]``.
        b_neighbours: ``b`` (the paper uses 9); capped at M. With ``b <= 1`` the weight would be
            identically 0, so the plain maximum ``s*`` (002 Eq. 6.4) is returned instead.
    """
    features = tf.convert_to_tensor(features)
    bank = tf.convert_to_tensor(bank, dtype=features.dtype)
    patch_distances = tf.convert_to_tensor(patch_distances, dtype=features.dtype)
    worst = tf.argmax(patch_distances, axis=1, output_type=tf.int64)  # the patch m^test,* per image
    s_star = tf.gather(patch_distances, worst, batch_dims=1)
    if b_neighbours <= 1:
        return s_star
    m_test = tf.gather(features, worst, batch_dims=1)  # [N, D]
    star_index = tf.gather(tf.cast(nn_index, tf.int64), worst, batch_dims=1)
    m_star = tf.gather(bank, star_index)  # [N, D]
    # N_b(m*); with b > M the search pads with +inf rows (index -1) that sort last and are cut here
    _, neighbours = _nearest_k(m_star, bank, int(b_neighbours), chunk=None)
    neighbours = neighbours[:, : tf.minimum(int(b_neighbours), tf.shape(bank)[0])]
    to_neighbours = tf.norm(m_test[:, None, :] - tf.gather(bank, neighbours), axis=2)  # [N, b]
    to_star = tf.norm(m_test - m_star, axis=1)  # [N]
    # exp(a) / sum exp(b_j), stabilised by the row maximum (the distances can be large)
    shift = tf.reduce_max(to_neighbours, axis=1)
    ratio = tf.exp(to_star - shift) / tf.reduce_sum(tf.exp(to_neighbours - shift[:, None]), axis=1)
    return (1.0 - ratio) * s_star
