"""Greedy k-centre coreset of the PatchCore memory bank (Roth et al.; 002 s. 6.2, 003 s. 8.3.5.5.2).

The greedy approximation of the min-max facility location problem (002 Eq. 6.5, 003 Eq. 8.39): start from
one random point, then repeatedly add the point farthest from the selected set. The features are first
mapped by a random Gaussian (Johnson-Lindenstrauss) projection to ``projection_dim`` dimensions, as the
official implementation does (003 s. 8.3.5.3.3); only the selection uses the projection, the memory bank
keeps the original features (the caller gathers them with the returned indices).

The textbook loop reads the whole projected bank ``[M, d]`` once per step (a matvec), which is memory-bound:
~40 ms per step for 655k x 128 on this 2-core machine, ~4.5 min for a 1 % coreset (numpy took ~5 min,
notes/toolchain.md). Here the loop runs in rounds inside a ``tf.function`` (:func:`_greedy_round`): the
steps are picked exactly among the few thousand points of largest min-distance, as long as provably no
other point can be the farthest, and one matmul pass then applies the whole round's centres to the bank.
The selection is the same as the textbook loop's (up to float32 rounding on near-ties); the bank is read
once per round (hundreds of steps) and the pass is compute-bound instead of memory-bound. Measured on the
shared 2-core Xeon (AVX-512): 655k x 256 Gaussian features, d = 128, 1 % -> 16 s, 10 % -> 5 min.

Memory: the projected bank ``M * d`` float32 plus a few ``[M]`` vectors (``~4 * M * (d + 4)`` bytes; 655k x
128 -> ~346 MB) and one ``16384 x 1024`` float32 block (64 MB) in the pass, on top of the caller's
``[M, D]`` features.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

# Points whose min-distances a round tracks exactly (see _greedy_round); larger lets a round take more steps
# before the bank pass, at B x d work per step.
_CANDIDATES = 2048
# Most steps per round (one tf.function call): bounds the pass's [_PASS_ROWS, j] block and the progress gap.
_MAX_ROUND = 1024
# Rows per block of the pass applying a round's centres to the bank.
_PASS_ROWS = 16384
# Rows per matmul when projecting, so the projection never holds a second [M, D] copy.
_PROJECTION_ROWS = 1 << 16


def random_projection(features: np.ndarray, projection_dim: int, seed: int = 0) -> np.ndarray:
    """Project ``features [M, D]`` by a seeded Gaussian matrix ``[D, projection_dim] / sqrt(projection_dim)``.

    The scaling keeps squared distances unbiased (Johnson-Lindenstrauss); it does not change the greedy
    order. Returns float32 ``[M, projection_dim]``.
    """
    features = np.asarray(features, dtype=np.float32)
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((features.shape[1], projection_dim)).astype(np.float32)
    matrix /= np.float32(np.sqrt(projection_dim))
    out = np.empty((features.shape[0], projection_dim), dtype=np.float32)
    for start in range(0, features.shape[0], _PROJECTION_ROWS):
        stop = start + _PROJECTION_ROWS
        np.matmul(features[start:stop], matrix, out=out[start:stop])
    return out


def _sq_distances(
    points: tf.Tensor, sq_norms: tf.Tensor, centres: tf.Tensor, centre_sq: tf.Tensor
) -> tf.Tensor:
    """``[R, J]`` squared distances by ||x||^2 - 2 x.c + ||c||^2 (a matmul), clamped at 0."""
    d2 = sq_norms[:, None] - 2.0 * tf.matmul(points, centres, transpose_b=True) + centre_sq[None, :]
    return tf.maximum(d2, 0.0)


@tf.function(reduce_retracing=True)
def _greedy_round(
    points: tf.Tensor, sq_norms: tf.Tensor, min_dist: tf.Tensor, n_max: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """One round of exact greedy steps; returns (selected indices [j] int64, 1 <= j <= n_max, new min_dist).

    The first pick is the global argmax. Further picks are made among the ``_CANDIDATES`` points of largest
    min-distance, whose min-distances are kept exact by updating only them (``B x d`` per step): the best
    candidate is the global argmax as long as its value stays above the largest value outside the set
    (min-distances only decrease, so the outsiders' stale values bound them). When that fails, one pass
    applies all the round's centres to the whole bank as one matmul ``[M, d] x [d, j]``. Same result as one
    pass per step, but the bank is read once per round instead of once per step.
    """
    n_points = tf.shape(points)[0]
    n_cand = tf.minimum(_CANDIDATES, n_points)
    values, cand = tf.math.top_k(min_dist, k=tf.minimum(n_cand + 1, n_points))
    # largest value outside the candidate set (-1: none, every point is a candidate)
    outside = tf.cond(n_cand < n_points, lambda: values[n_cand], lambda: tf.constant(-1.0, values.dtype))
    cand = tf.sort(cand[:n_cand])  # index order, so argmax ties go to the lowest index as tf.argmax does
    cand_points = tf.gather(points, cand)
    cand_sq = tf.gather(sq_norms, cand)

    first = tf.argmax(min_dist, output_type=tf.int32)
    selected = tf.TensorArray(tf.int32, size=0, dynamic_size=True).write(0, first)

    def update(cand_dist, index):
        centre = tf.gather(points, index)
        dist = cand_sq - 2.0 * tf.linalg.matvec(cand_points, centre) + tf.gather(sq_norms, index)
        return tf.minimum(cand_dist, tf.maximum(dist, 0.0))

    cand_dist = update(tf.gather(min_dist, cand), first)

    def cond(j, cand_dist, selected):
        return tf.logical_and(j < n_max, tf.reduce_max(cand_dist) > outside)

    def body(j, cand_dist, selected):
        pick = tf.argmax(cand_dist, output_type=tf.int32)
        index = cand[pick]
        return j + 1, update(cand_dist, index), selected.write(j, index)

    n_sel, _, selected = tf.while_loop(
        cond, body, (tf.constant(1), cand_dist, selected), parallel_iterations=1
    )
    selected = selected.stack()

    # apply the round's centres to the whole bank, in row blocks (memory _PASS_ROWS x j)
    centres = tf.gather(points, selected)
    centre_sq = tf.gather(sq_norms, selected)
    n_blocks = (n_points + _PASS_ROWS - 1) // _PASS_ROWS
    blocks = tf.TensorArray(min_dist.dtype, size=n_blocks, infer_shape=False)

    def pass_body(b, blocks):
        lo = b * _PASS_ROWS
        hi = tf.minimum(lo + _PASS_ROWS, n_points)
        d2 = _sq_distances(points[lo:hi], sq_norms[lo:hi], centres, centre_sq)
        return b + 1, blocks.write(b, tf.minimum(min_dist[lo:hi], tf.reduce_min(d2, axis=1)))

    _, blocks = tf.while_loop(lambda b, _: b < n_blocks, pass_body, (tf.constant(0), blocks))
    new_min = blocks.concat()
    # a selected point is at distance exactly 0 (rounding could leave it a tiny positive value)
    new_min = tf.tensor_scatter_nd_update(new_min, selected[:, None], tf.zeros([n_sel], new_min.dtype))
    return tf.cast(selected, tf.int64), new_min


def greedy_coreset(
    features: np.ndarray,
    n_select: int,
    projection_dim: int | None = 128,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Greedy k-centre coreset: indices (int64, selection order) of ``n_select`` rows of ``features [M, D]``.

    Args:
        features: the patch-feature bank, float32 ``[M, D]``.
        n_select: how many rows to select (1 <= n_select <= M).
        projection_dim: dimension of the random projection used for the selection; ``None`` (or a value
            >= D) selects on the features themselves.
        seed: seeds the projection matrix and the random start index.
        progress: called as ``progress(done, n_select)`` at the start and after each round (<= 1024 steps).

    The first index is the seeded random start; each following index is the row farthest (Euclidean, in the
    projected space) from the rows selected before it. Ties go to the lowest index (``tf.argmax``).
    """
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise ValueError(f"features must be [M, D], got shape {features.shape}")
    n_rows = features.shape[0]
    if not 1 <= n_select <= n_rows:
        raise ValueError(f"n_select must be in [1, {n_rows}], got {n_select}")
    rng = np.random.default_rng(seed)
    if projection_dim is not None and projection_dim < features.shape[1]:
        points = random_projection(features, projection_dim, seed=int(rng.integers(2**31)))
    else:
        points = features.copy()
    # Centring changes no distance but shrinks the norms, so the float32 expansion ||x||^2 - 2x.c + ||c||^2
    # loses less to cancellation.
    points -= points.mean(axis=0, dtype=np.float64).astype(np.float32)
    start = int(rng.integers(n_rows))

    points_t = tf.constant(points)
    del points
    sq_norms = tf.reduce_sum(tf.square(points_t), axis=1)
    centre = points_t[start]
    min_dist = tf.maximum(sq_norms - 2.0 * tf.linalg.matvec(points_t, centre) + sq_norms[start], 0.0)

    selected = [np.array([start], dtype=np.int64)]
    min_dist = tf.tensor_scatter_nd_update(min_dist, [[start]], [0.0])
    done = 1
    if progress is not None:
        progress(done, n_select)
    while done < n_select:
        n_max = min(_MAX_ROUND, n_select - done)
        indices, min_dist = _greedy_round(points_t, sq_norms, min_dist, tf.constant(n_max))
        selected.append(indices.numpy())
        done += len(selected[-1])
        if progress is not None:
            progress(done, n_select)
    return np.concatenate(selected)
