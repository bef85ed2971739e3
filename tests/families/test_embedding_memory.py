"""The embedding family's memory-bank algorithms against straightforward numpy references.

PatchCore: greedy k-centre coreset, exact and product-quantised nearest-neighbour scoring, the re-weighted
image score. MhBC-PatchCore: streaming covariance, Cholesky projection, cumulative k-means.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from tfad.families.embedding.coreset import greedy_coreset
from tfad.families.embedding.mhbc import CumulativeKMeans, StreamingCovariance, mhbc_patch_distances, project
from tfad.families.embedding.product_quantization import (
    exact_nearest_distance,
    fit_product_quantizer,
    patchcore_image_score,
    pq_nearest_distance,
)


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances [len(a), len(b)] in float64, by direct differences."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))


def _brute_force_k_center(points: np.ndarray, n_select: int, start: int) -> np.ndarray:
    """Textbook greedy k-centre: add the point farthest from the selected set, n_select - 1 times."""
    points = np.asarray(points, np.float64)
    selected = [start]
    min_dist = ((points - points[start]) ** 2).sum(axis=1)
    for _ in range(n_select - 1):
        nxt = int(np.argmax(min_dist))
        selected.append(nxt)
        min_dist = np.minimum(min_dist, ((points - points[nxt]) ** 2).sum(axis=1))
    return np.array(selected)


def _covering_radius(points: np.ndarray, subset: np.ndarray) -> float:
    return float(_pairwise(points, points[subset]).min(axis=1).max())


def _blobs(rng: np.random.Generator, n_centres: int, per_centre: int, dim: int, spread: float, scale: float):
    centres = rng.normal(0.0, scale, (n_centres, dim))
    points = centres[:, None, :] + rng.normal(0.0, spread, (n_centres, per_centre, dim))
    return centres, points.reshape(-1, dim)


# ---------------------------------------------------------------------------------------------- coreset


@pytest.mark.parametrize(("n_points", "n_select"), [(300, 300), (5000, 400)])
def test_greedy_coreset_equals_brute_force_k_center(n_points, n_select):
    points = np.random.default_rng(1).normal(size=(n_points, 12)).astype(np.float32)
    rounds: list[int] = []
    selected = greedy_coreset(
        points, n_select, projection_dim=None, seed=3, progress=lambda d, t: rounds.append(d)
    )
    assert selected.dtype == np.int64
    np.testing.assert_array_equal(selected, _brute_force_k_center(points, n_select, int(selected[0])))
    assert len(np.unique(selected)) == n_select
    if n_points > 2048:
        # more points than the round's candidate set: several rounds, each ended by the outsiders' bound
        assert len(rounds) > 3
    np.testing.assert_array_equal(selected[:40], greedy_coreset(points, 40, projection_dim=None, seed=3))


def test_greedy_coreset_with_projection_covers_better_than_random():
    rng = np.random.default_rng(2)
    _, points = _blobs(rng, n_centres=40, per_centre=50, dim=64, spread=0.3, scale=3.0)
    points = points.astype(np.float32)
    calls: list[tuple[int, int]] = []
    selected = greedy_coreset(
        points, 60, projection_dim=16, seed=0, progress=lambda d, t: calls.append((d, t))
    )
    assert len(np.unique(selected)) == 60
    assert calls[-1] == (60, 60)
    np.testing.assert_array_equal(selected, greedy_coreset(points, 60, projection_dim=16, seed=0))
    greedy = _covering_radius(points, selected)
    random = [_covering_radius(points, rng.choice(len(points), 60, replace=False)) for _ in range(5)]
    # a random subset of 60 misses some of the 40 blobs (radius ~ blob distance); the coreset does not
    assert greedy < 0.5 * min(random)


# ---------------------------------------------------------------------------------------- exact 1-NN


@pytest.mark.parametrize("chunk", [None, 100, 1001, 4096])
def test_exact_nearest_distance_matches_numpy(chunk):
    rng = np.random.default_rng(3)
    bank = rng.normal(size=(1001, 24)).astype(np.float32) + 5.0  # offset: large norms, small distances
    queries = bank[rng.choice(1001, 37)] + rng.normal(0, 1e-3, (37, 24)).astype(np.float32)
    expected = _pairwise(queries, bank)
    distance, index = exact_nearest_distance(queries, bank, chunk=chunk, return_index=True)
    np.testing.assert_array_equal(index.numpy(), expected.argmin(axis=1))
    # the distance is recomputed directly, so near-duplicates keep ~1e-6 relative accuracy
    np.testing.assert_allclose(distance.numpy(), expected.min(axis=1), rtol=1e-4, atol=1e-6)


def test_exact_nearest_distance_in_graph_with_dynamic_batch_and_variable_bank():
    rng = np.random.default_rng(4)
    bank = tf.Variable(rng.normal(size=(500, 8)).astype(np.float32))
    fn = tf.function(
        lambda q: exact_nearest_distance(q, bank, chunk=64), input_signature=[tf.TensorSpec([None, 8])]
    )
    for n in (1, 70):
        queries = rng.normal(size=(n, 8)).astype(np.float32)
        np.testing.assert_allclose(fn(queries).numpy(), _pairwise(queries, bank.numpy()).min(1), rtol=1e-5)


# ------------------------------------------------------------------------------------ product quantiser


def test_product_quantizer_codes_and_small_bank_reconstruction():
    rng = np.random.default_rng(5)
    bank = rng.normal(size=(100, 12)).astype(np.float32)
    pq = fit_product_quantizer(bank, n_subspaces=3, n_centroids=256, iterations=5, seed=0)
    assert pq.codebooks.shape == (3, 256, 4) and pq.codebooks.dtype == np.float32
    codes = pq.encode(bank)
    assert codes.shape == (100, 3) and codes.dtype == np.uint8
    # fewer rows than centroids: every sub-vector is a centroid, reconstruction is exact
    np.testing.assert_allclose(pq.decode(codes), bank, atol=1e-6)
    with pytest.raises(ValueError):
        fit_product_quantizer(bank, n_subspaces=5)


def test_product_quantizer_kmeans_recovers_subspace_clusters():
    rng = np.random.default_rng(6)
    centres, points = _blobs(rng, n_centres=8, per_centre=100, dim=4, spread=0.01, scale=5.0)
    pq = fit_product_quantizer(points.astype(np.float32), n_subspaces=1, n_centroids=8, iterations=20, seed=1)
    # each true centre has a learnt centroid right on it
    assert _pairwise(centres, pq.codebooks[0]).min(axis=1).max() < 0.01


def _adc_top_k(queries, pq, codes, k):
    """numpy reference of the coarse stage: ||q - decode(code)||^2, k smallest (as sets)."""
    d2 = _pairwise(queries, pq.decode(codes)) ** 2
    return np.argsort(d2, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("chunk", [None, 97])
def test_pq_nearest_distance_exact_when_true_neighbour_in_top_k(chunk):
    rng = np.random.default_rng(7)
    _, bank = _blobs(rng, n_centres=30, per_centre=20, dim=16, spread=0.5, scale=2.0)
    bank = bank.astype(np.float32)
    pq = fit_product_quantizer(bank, n_subspaces=4, n_centroids=16, iterations=10, seed=0)
    codes = pq.encode(bank)
    queries = (bank[rng.choice(len(bank), 50)] + rng.normal(0, 0.2, (50, 16))).astype(np.float32)
    truth = _pairwise(queries, bank)
    top_k = 5
    got = pq_nearest_distance(queries, pq.codebooks, codes, bank, top_k=top_k, chunk=chunk).numpy()

    candidates = _adc_top_k(queries, pq, codes, top_k)
    in_top_k = np.array([truth[i].argmin() in candidates[i] for i in range(len(queries))])
    assert 0.3 < in_top_k.mean() < 1.0  # both cases occur (coarse 4 x 16 codebooks, top-5 of 600)
    np.testing.assert_allclose(got[in_top_k], truth.min(axis=1)[in_top_k], rtol=1e-5)
    # otherwise: the best exact distance among the coarse candidates (an upper bound of the true one)
    among = np.take_along_axis(truth, candidates, axis=1).min(axis=1)
    np.testing.assert_allclose(got, among, rtol=1e-5)
    assert np.all(got >= truth.min(axis=1) * (1 - 1e-6))


def test_pq_nearest_distance_with_top_k_m_is_brute_force():
    rng = np.random.default_rng(8)
    bank = rng.normal(size=(300, 8)).astype(np.float32)
    pq = fit_product_quantizer(bank, n_subspaces=2, n_centroids=4, iterations=5, seed=0)  # coarse on purpose
    queries = rng.normal(size=(40, 8)).astype(np.float32)
    codes = tf.constant(pq.encode(bank).astype(np.int32))  # a Keras weight stores them as int32
    fn = tf.function(
        lambda q: pq_nearest_distance(q, pq.codebooks, codes, bank, top_k=300, chunk=128),
        input_signature=[tf.TensorSpec([None, 8])],
    )
    np.testing.assert_allclose(fn(queries).numpy(), _pairwise(queries, bank).min(axis=1), rtol=1e-5)
    # top_k larger than the bank is allowed and the same
    larger = pq_nearest_distance(queries, pq.codebooks, codes, bank, top_k=1000).numpy()
    np.testing.assert_allclose(larger, _pairwise(queries, bank).min(axis=1), rtol=1e-5)


# ------------------------------------------------------------------------------ PatchCore image score


def test_patchcore_image_score_against_hand_computation():
    bank = np.array([[0, 0], [1, 0], [0, 1], [10, 10]], np.float32)
    # image 0: worst patch (3, 0), s* = 2 to m* = (1, 0); image 1: worst patch (0, 3), s* = 2 to (0, 1)
    features = np.array([[[0.1, 0], [3, 0]], [[0, 3], [0, 0.2]]], np.float32)
    distances, index = exact_nearest_distance(features.reshape(-1, 2), bank, return_index=True)
    distances, index = tf.reshape(distances, [2, 2]), tf.reshape(index, [2, 2])
    np.testing.assert_allclose(distances.numpy(), [[0.1, 2.0], [2.0, 0.2]], rtol=1e-6)

    # b = 2: N_2((1, 0)) = {(1, 0), (0, 0)} at distances 2 and 3 from (3, 0): w = 1 - e^2 / (e^2 + e^3)
    w = 1.0 - math.exp(2) / (math.exp(2) + math.exp(3))
    score = patchcore_image_score(features, distances, index, bank, b_neighbours=2).numpy()
    np.testing.assert_allclose(score, [2.0 * w, 2.0 * w], rtol=1e-5)

    # b = 3: adds the third unit point (sqrt(2) from m*), sqrt(10) from the worst patch (both images)
    w3 = 1.0 - math.exp(2) / (math.exp(2) + math.exp(3) + math.exp(math.sqrt(10)))
    score = patchcore_image_score(features, distances, index, bank, b_neighbours=3).numpy()
    np.testing.assert_allclose(score, [2.0 * w3, 2.0 * w3], rtol=1e-5)

    # b > M: the whole bank; b = 1: the weight is degenerate, the plain max s* is returned
    w_all = 1.0 - math.exp(2) / sum(math.exp(d) for d in (2, 3, math.sqrt(10), math.sqrt(149)))
    score = patchcore_image_score(features, distances, index, bank, b_neighbours=9).numpy()
    np.testing.assert_allclose(score, [2.0 * w_all, 2.0 * w_all], rtol=1e-5)
    np.testing.assert_allclose(patchcore_image_score(features, distances, index, bank, 1).numpy(), [2.0, 2.0])


# -------------------------------------------------------------------------------------------- MhBC


def _random_gaussians(rng, positions, dim):
    mean = rng.normal(0, 3, (positions, dim))
    mix = rng.normal(size=(positions, dim, dim))
    cov = mix @ mix.transpose(0, 2, 1) / dim + 0.1 * np.eye(dim)
    return mean, cov


def test_streaming_covariance_equals_np_cov_over_all_batches():
    rng = np.random.default_rng(9)
    positions, dim = 4, 6
    mean, cov = _random_gaussians(rng, positions, dim)
    data = np.stack(
        [rng.multivariate_normal(mean[p] + 100.0, cov[p], size=60) for p in range(positions)], axis=1
    ).astype(np.float32)  # [60, P, D], offset 100: the naive sum_x2/n - mu mu^T would lose digits
    moments = StreamingCovariance(positions, dim)
    for start, stop in ((0, 7), (7, 27), (27, 60)):
        moments.update(tf.constant(data[start:stop]) if start else data[start:stop])
    assert moments.count == 60
    x = data.astype(np.float64)
    expected = np.stack([np.cov(x[:, p].T) for p in range(positions)])  # ddof=1, np.cov's default
    np.testing.assert_allclose(moments.covariance(), expected, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(moments.covariance(ddof=0), expected * 59 / 60, rtol=1e-9, atol=1e-10)
    mu, chol = moments.finalize(eps=0.01)
    assert mu.shape == (positions, dim) and chol.shape == (positions, dim, dim) and chol.dtype == np.float32
    np.testing.assert_allclose(mu, x.mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(np.triu(chol, 1), 0.0)
    reconstructed = chol.astype(np.float64) @ chol.transpose(0, 2, 1)
    np.testing.assert_allclose(reconstructed, expected + 0.01 * np.eye(dim), rtol=1e-5, atol=1e-5)

    pooled = StreamingCovariance(positions, dim, pooled=True)
    pooled.update(data[:25])
    pooled.update(data[25:])
    np.testing.assert_allclose(pooled.covariance(), np.cov(x.reshape(-1, dim).T)[None], rtol=1e-9, atol=1e-10)
    assert pooled.finalize()[1].shape == (1, dim, dim)


def test_projection_norm_is_mahalanobis_distance():
    rng = np.random.default_rng(10)
    positions, dim = 3, 5
    mean, cov = _random_gaussians(rng, positions, dim)
    chol = np.linalg.cholesky(cov)
    features = rng.normal(0, 3, (7, positions, dim))
    z = project(features.astype(np.float32), mean.astype(np.float32), chol.astype(np.float32)).numpy()
    assert z.shape == (7, positions, dim)
    centred = features - mean[None]
    expected = np.sqrt(np.einsum("npd,pde,npe->np", centred, np.linalg.inv(cov), centred))
    # float32 solve of a well-conditioned (cond < 1e3) system: 1e-4 relative
    np.testing.assert_allclose(np.linalg.norm(z, axis=2), expected, rtol=1e-4)

    # pooled factor [1, D, D] broadcasts over the positions
    z = project(features.astype(np.float32), mean[:1].astype(np.float32), chol[:1].astype(np.float32)).numpy()
    centred = features - mean[0]
    expected = np.sqrt(np.einsum("npd,de,npe->np", centred, np.linalg.inv(cov[0]), centred))
    np.testing.assert_allclose(np.linalg.norm(z, axis=2), expected, rtol=1e-4)


def _state_bytes(kmeans: CumulativeKMeans) -> int:
    arrays = [v for v in vars(kmeans).values() if isinstance(v, np.ndarray)]
    return sum(a.nbytes for a in arrays) + sum(b.nbytes for b in kmeans._buffer)


def test_cumulative_kmeans_bounded_memory_and_recovers_clusters():
    rng = np.random.default_rng(11)
    centres = rng.normal(0, 10, (5, 8))
    kmeans = CumulativeKMeans(5, 8, seed=0)
    kmeans.update(np.zeros((0, 8)))
    kmeans.update(centres[:2] + 0.1)  # fewer points than centroids: buffered, not yet seeded
    assert not kmeans.seeded and kmeans.centroids.shape == (2, 8)
    sizes = []
    for _ in range(60):
        labels = rng.integers(0, 5, 64)
        kmeans.update(centres[labels] + rng.normal(0, 0.5, (64, 8)))
        sizes.append(_state_bytes(kmeans))
    assert kmeans.seeded and kmeans._buffer == []
    assert len(set(sizes)) == 1 and sizes[0] == 5 * 8 * 8 + 5 * 8  # K x D float64 + K int64 counts
    assert kmeans.counts.sum() == 2 + 60 * 64
    got = kmeans.centroids
    assert got.shape == (5, 8) and got.dtype == np.float32
    # well-separated clusters: one centroid on each centre (running mean of ~770 points, std 0.5)
    assert _pairwise(centres, got).min(axis=1).max() < 0.15
    assert _pairwise(got, centres).min(axis=1).max() < 0.15


def test_mhbc_patch_distances_are_mahalanobis_to_nearest_centroid():
    rng = np.random.default_rng(12)
    positions, dim = 2, 4
    mean, cov = _random_gaussians(rng, positions, dim)
    chol = np.linalg.cholesky(cov).astype(np.float32)
    centroids = rng.normal(size=(6, dim)).astype(np.float32)  # in the projected space
    features = rng.normal(0, 2, (3, positions, dim)).astype(np.float32)
    got = mhbc_patch_distances(features, mean.astype(np.float32), chol, centroids).numpy()
    # back in feature space the centroid c of position p is mu_p + L_p c: Mahalanobis distance to it
    expected = np.empty((3, positions))
    for p in range(positions):
        points = mean[p] + centroids.astype(np.float64) @ chol[p].T.astype(np.float64)
        diff = features[:, p, None, :] - points[None]
        maha = np.sqrt(np.einsum("nkd,de,nke->nk", diff, np.linalg.inv(chol[p] @ chol[p].T), diff))
        expected[:, p] = maha.min(axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


# ----------------------------------------------------------------------------------------- export


def test_scorers_export_to_savedmodel(tmp_path):
    rng = np.random.default_rng(13)
    positions, dim = 4, 8
    bank = rng.normal(size=(200, dim)).astype(np.float32)
    pq = fit_product_quantizer(bank, n_subspaces=2, n_centroids=16, iterations=3, seed=0)
    mean, cov = _random_gaussians(rng, positions, dim)
    chol = np.linalg.cholesky(cov).astype(np.float32)

    class Scorer(tf.Module):
        def __init__(self):
            super().__init__()
            self.bank = tf.Variable(bank, trainable=False)
            self.codebooks = tf.constant(pq.codebooks)
            self.codes = tf.Variable(pq.encode(bank).astype(np.int32), trainable=False)
            self.mean, self.chol = tf.constant(mean.astype(np.float32)), tf.constant(chol)

        @tf.function(input_signature=[tf.TensorSpec([None, positions, dim], tf.float32)])
        def __call__(self, features):
            n = tf.shape(features)[0]
            flat = tf.reshape(features, [-1, dim])
            distance, index = exact_nearest_distance(flat, self.bank, return_index=True)
            distance, index = tf.reshape(distance, [n, positions]), tf.reshape(index, [n, positions])
            return {
                "exact": distance,
                "pq": tf.reshape(
                    pq_nearest_distance(flat, self.codebooks, self.codes, self.bank, 8), [n, -1]
                ),
                "image": patchcore_image_score(features, distance, index, self.bank, 3),
                "mhbc": mhbc_patch_distances(features, self.mean, self.chol, self.bank[:10]),
            }

    scorer = Scorer()
    features = rng.normal(size=(3, positions, dim)).astype(np.float32)
    eager = {k: v.numpy() for k, v in scorer(features).items()}
    tf.saved_model.save(scorer, str(tmp_path / "scorer"))
    loaded = tf.saved_model.load(str(tmp_path / "scorer"))
    for key, value in loaded(tf.constant(features)).items():
        np.testing.assert_allclose(value.numpy(), eager[key], rtol=1e-6, err_msg=key)
    expected = _pairwise(features.reshape(-1, dim), bank).min(axis=1).reshape(3, positions)
    np.testing.assert_allclose(eager["exact"], expected, rtol=1e-5)
