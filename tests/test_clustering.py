import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

import stg_core.alignment as alignment
import stg_core.clustering as clustering
import stg_core.run_vectors as run_vectors
from stg_core.clustering import (
    canonical_order,
    REPRESENTATIONS,
    ClusteringResult,
    TaskClusterer,
    alignment_scores,
    cluster_tasks,
    fuzzy_memberships,
    group_membership_table,
    reduce_task_vectors,
    task_groups,
    task_vectors,
)
from stg_core.run_vectors import load_task_vectors
from stg_core.config import TrainConfig, spec_from_preset
from stg_core.datamaps import DataMap, data_maps_at
from stg_core.store import ArtifactStore
from stg_core.tasks import get_preset


def clustered(n_tasks, d, n_groups, seed, dtype=np.float64, noise=0.5):
    rng = np.random.default_rng(seed)
    centers = rng.random((n_groups, d))
    truth = rng.permutation(np.arange(n_tasks) % n_groups)
    return (centers[truth] + noise * rng.standard_normal((n_tasks, d))).astype(dtype), truth


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The reference KMeans runs on one thread, as cluster_tasks does: on a busy machine
    multi-threaded BLAS/OpenMP is many times slower on these small matrices. With fewer than
    256 tasks scikit-learn's Lloyd step is one chunk, so the result does not depend on it."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A tiny real run: digits-g2 (15 tasks), 400 training images, 3 epochs (a few seconds)."""
    from stg_core.training import train_run

    store = ArtifactStore(tmp_path_factory.mktemp("store"))
    spec = spec_from_preset("digits-g2", subset=400, test_subset=100, train=TrainConfig(epochs=3))
    run_id = train_run(spec, store, device="cpu")
    return store, run_id, spec


def _sklearn_kmeans(x, **params):
    """scikit-learn's KMeans on the raw vectors, given in the clusterer's canonical task order
    (k-means++ seeds by row index); labels mapped back to the original order."""
    order = canonical_order(x)
    km = KMeans(**params).fit(x[order])
    labels = np.empty_like(km.labels_)
    labels[order] = km.labels_
    km.labels_ = labels
    return km


# ---------------------------------------------------------------- exact fast path

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_path_equals_kmeans_on_raw_random_vectors(dtype):
    rng = np.random.default_rng(0)
    x = rng.random((30, 5000)).astype(dtype)  # no cluster structure: the hard case for ties
    for k in (2, 3, 5, 8):
        tc = TaskClusterer(k, random_state=0, n_init=10).fit(x)
        km = _sklearn_kmeans(x, n_clusters=k, random_state=0, n_init=10)
        np.testing.assert_array_equal(tc.labels_, km.labels_)
        # float32 input: sklearn computes in float32 (observed relative differences ~2e-7)
        np.testing.assert_allclose(tc.inertia_, km.inertia_, rtol=1e-6)
        ref = cdist(x.astype(np.float64), km.cluster_centers_.astype(np.float64))
        # (singleton clusters: a task sits on its centroid, distance 0 up to rounding)
        np.testing.assert_allclose(tc.distances_, ref, rtol=1e-5 if dtype == np.float32 else 1e-9,
                                   atol=1e-5 if dtype == np.float32 else 1e-9)
        assert tc.n_features_in_ == 5000
        assert tc.cluster_centers_.shape == (k, tc.reduced_.shape[1])


def test_fast_path_equals_kmeans_on_recorded_run(recorded):
    store, run_id, spec = recorded
    x = load_task_vectors(store, run_id)
    assert x.shape == (15, 3 * 400 * 2) and x.dtype == np.float32
    scaled = StandardScaler().fit_transform(x.astype(np.float64))
    for k in (2, 3, 4, 6, 10):
        tc = TaskClusterer(k).fit(x)  # default n_init (3)
        km = _sklearn_kmeans(x, n_clusters=k, random_state=0, n_init=3)
        np.testing.assert_array_equal(tc.labels_, km.labels_)
        np.testing.assert_allclose(tc.inertia_, km.inertia_, rtol=1e-6)
        # scaling="standard" = KMeans on StandardScaler's output
        tc = TaskClusterer(k, scaling="standard", n_init=10).fit(x)
        km = _sklearn_kmeans(scaled, n_clusters=k, random_state=0, n_init=10)
        np.testing.assert_array_equal(tc.labels_, km.labels_)
        np.testing.assert_allclose(tc.inertia_, km.inertia_, rtol=1e-6)


def test_fast_path_other_seeds_and_n_init():
    x, _ = clustered(40, 3000, 6, seed=3, noise=1.0)
    for seed, n_init in ((1, 1), (7, 3), (None, 1)):
        tc = TaskClusterer(6, random_state=seed, n_init=n_init).fit(x)
        if seed is None:  # unseeded: only the structure is checked
            assert tc.labels_.shape == (40,)
            continue
        km = _sklearn_kmeans(x, n_clusters=6, random_state=seed, n_init=n_init)
        np.testing.assert_array_equal(tc.labels_, km.labels_)
        np.testing.assert_allclose(tc.inertia_, km.inertia_, rtol=1e-6)


def test_reduction_preserves_pairwise_distances():
    rng = np.random.default_rng(1)
    x = rng.random((25, 4000)).astype(np.float32)
    y = reduce_task_vectors(x)
    assert y.dtype == np.float64 and y.shape == (25, 24)  # centred rows span n - 1 dimensions
    np.testing.assert_allclose(pdist(y), pdist(x.astype(np.float64)), rtol=1e-10)
    # rank-deficient input: duplicated tasks and fewer features than tasks
    x2 = np.vstack([x[:5, :3], x[:5, :3], x[:2, :3]]).astype(np.float64)
    y2 = reduce_task_vectors(x2)
    assert y2.shape == (12, 3)
    np.testing.assert_allclose(pdist(y2), pdist(x2), rtol=1e-9, atol=1e-12)
    # standardize=True is the reduction of StandardScaler's output
    ys = reduce_task_vectors(x, standardize=True)
    np.testing.assert_allclose(pdist(ys), pdist(StandardScaler().fit_transform(x.astype(np.float64))), rtol=1e-9)
    # all tasks identical: one zero column, not an empty matrix
    assert np.array_equal(reduce_task_vectors(np.ones((4, 10))), np.zeros((4, 1)))
    # chunking does not change anything
    old = clustering._CHUNK_ELEMENTS
    try:
        clustering._CHUNK_ELEMENTS = 25 * 7
        np.testing.assert_allclose(pdist(reduce_task_vectors(x)), pdist(y), rtol=1e-10)
    finally:
        clustering._CHUNK_ELEMENTS = old


def test_cluster_tasks_result():
    x, truth = clustered(24, 2000, 4, seed=5)
    reduced = reduce_task_vectors(x)
    res = cluster_tasks(reduced, 4, fuzziness=2.0, random_state=0, n_init=10, n_features=x.shape[1])
    assert isinstance(res, ClusteringResult)
    assert res.memberships.shape == (24, 4) and res.distances.shape == (24, 4)
    np.testing.assert_allclose(res.memberships.sum(axis=1), 1.0)
    np.testing.assert_array_equal(res.memberships.argmax(axis=1), res.labels)
    assert adjusted_rand_score(truth, res.labels) == 1.0
    assert not res.memberships.flags.writeable and not res.labels.flags.writeable
    np.testing.assert_allclose(res.inertia, (res.distances.min(axis=1) ** 2).sum(), rtol=1e-9)
    # the distances to the centroids are those of the original space
    km = _sklearn_kmeans(x, n_clusters=4, random_state=0, n_init=10)
    np.testing.assert_allclose(res.distances, cdist(x, km.cluster_centers_), rtol=1e-8)


# ---------------------------------------------------------------- memberships

def test_fuzzy_memberships_hand_computed():
    # F = 2: w ∝ d^-2: [1, 1/4] / 1.25
    np.testing.assert_allclose(fuzzy_memberships(np.array([[1.0, 2.0]]), 2.0), [[0.8, 0.2]])
    # F = 3: w ∝ d^-1: [1, 1/2, 1/4] / 1.75
    np.testing.assert_allclose(fuzzy_memberships(np.array([[1.0, 2.0, 4.0]]), 3.0), [[4 / 7, 2 / 7, 1 / 7]])


def test_fuzzy_memberships_match_direct_formula():
    rng = np.random.default_rng(0)
    d = rng.uniform(0.1, 5.0, size=(50, 6))
    for f in (1.5, 2.0, 3.0, 10.0):
        p = 2.0 / (f - 1.0)
        direct = d ** -p / (d ** -p).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(fuzzy_memberships(d, f), direct, rtol=1e-12)


def test_fuzzy_memberships_extremes():
    d = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 2.0], [0.0, 0.0, 5.0], [1e-300, 1e-280, 1e300], [7.0, 7.0, 7.0]])
    for f in (1.0001, 1.5, 2.0, 1e6):
        w = fuzzy_memberships(d, f)
        assert np.isfinite(w).all() and (w >= 0).all()
        np.testing.assert_allclose(w.sum(axis=1), 1.0)
        np.testing.assert_array_equal(w[1], [1.0, 0.0, 0.0])   # a task on a centroid
        np.testing.assert_array_equal(w[2], [0.5, 0.5, 0.0])   # on two (coinciding) centroids
        np.testing.assert_allclose(w[4], [1 / 3] * 3)          # equidistant
    # F -> 1: hard assignment to the nearest centroid; F -> inf: uniform
    np.testing.assert_allclose(fuzzy_memberships(d[:1], 1.0001), [[1.0, 0.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(fuzzy_memberships(d[:1], 1e6), [[1 / 3] * 3], atol=1e-5)


def test_fuzzy_memberships_errors():
    d = np.array([[1.0, 2.0]])
    for f in (1.0, 0.5, -2.0, float("nan"), float("inf"), "3", True, None):
        with pytest.raises(ValueError, match="fuzziness F=.* must be a finite number greater than 1"):
            fuzzy_memberships(d, f)
    np.testing.assert_allclose(fuzzy_memberships(d, np.float32(3.0)), fuzzy_memberships(d, 3))  # NumPy, int
    with pytest.raises(ValueError, match="NaN"):
        fuzzy_memberships(np.array([[1.0, np.nan]]), 2.0)
    with pytest.raises(ValueError, match="negative"):
        fuzzy_memberships(np.array([[1.0, -0.1]]), 2.0)
    with pytest.raises(ValueError, match="shape"):
        fuzzy_memberships(np.array([1.0, 2.0]), 2.0)


# ---------------------------------------------------------------- validation

def test_estimator_errors():
    x, _ = clustered(10, 50, 2, seed=0)
    with pytest.raises(ValueError, match="n_clusters=1 "):
        TaskClusterer(1).fit(x)
    with pytest.raises(ValueError, match=r"n_clusters=12 must be between 2 and the number of tasks \(10\)"):
        TaskClusterer(12).fit(x)
    for f in (1.0, 0.3):
        with pytest.raises(ValueError, match=f"fuzziness F={f}"):
            TaskClusterer(2, fuzziness=f).fit(x)
    bad = x.copy()
    bad[3, 7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        TaskClusterer(2).fit(bad)
    with pytest.raises(ValueError, match="scaling 'minmax'"):
        TaskClusterer(2, scaling="minmax").fit(x)
    with pytest.raises(ValueError, match="2D"):
        TaskClusterer(2).fit(x[0])
    with pytest.raises(ValueError, match="n_init=0"):
        cluster_tasks(reduce_task_vectors(x), 2, n_init=0)


def test_representation_and_epoch_errors(recorded):
    store, run_id, _ = recorded
    m = DataMap(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)), 1)
    with pytest.raises(ValueError, match="representation 'zscore'"):
        task_vectors([m], "zscore")
    with pytest.raises(ValueError, match="representation 'zscore'"):
        load_task_vectors(store, run_id, representation="zscore")
    with pytest.raises(ValueError, match="epoch 7 is not recorded"):
        load_task_vectors(store, run_id, [1, 7])
    with pytest.raises(ValueError, match="epoch 0 is not recorded"):
        load_task_vectors(store, run_id, [0])
    with pytest.raises(ValueError, match="empty"):
        load_task_vectors(store, run_id, [])
    with pytest.raises(ValueError, match="at least one data map"):
        task_vectors([])


# ---------------------------------------------------------------- representations

def hand_map():
    conf = np.array([[0.9, 0.2, 0.5], [0.1, 0.6, 0.4]])
    var = np.array([[0.01, 0.3, 0.2], [0.05, 0.0, 0.1]])
    return DataMap(conf, var, np.zeros_like(conf), 2)


def test_raw_layout_interleaves_confidence_and_variability():
    m1 = hand_map()
    m2 = DataMap(m1.confidence / 2, m1.variability * 2, m1.correctness, 3)
    v = task_vectors([m1, m2], "raw")
    assert v.shape == (2, 2 * 3 * 2) and v.dtype == np.float32
    expected = np.array([
        [0.9, 0.01, 0.2, 0.3, 0.5, 0.2, 0.45, 0.02, 0.1, 0.6, 0.25, 0.4],
        [0.1, 0.05, 0.6, 0.0, 0.4, 0.1, 0.05, 0.1, 0.3, 0.0, 0.2, 0.2],
    ], dtype=np.float32)
    np.testing.assert_allclose(v, expected, rtol=1e-6)
    # = the original's reshape of (T, n_snapshots, N, 2)
    stacked = np.stack([np.stack([m.confidence, m.variability], axis=-1) for m in (m1, m2)], axis=1)
    np.testing.assert_allclose(v, stacked.reshape(2, -1), rtol=1e-6)


def test_pattern_and_standardized_representations():
    rng = np.random.default_rng(0)
    conf, var = rng.random((6, 40)), rng.random((6, 40)) * 0.2
    var[:, 5] = 0.07  # a constant column
    maps = [DataMap(conf, var, conf, 1), DataMap(conf ** 2, var, conf, 2)]
    raw = task_vectors(maps, "raw")
    pattern = task_vectors(maps, "pattern")
    assert pattern.shape == raw.shape == (6, 160)
    np.testing.assert_allclose(np.linalg.norm(pattern.astype(np.float64), axis=1), 1.0, rtol=1e-6)
    hard = np.stack([np.stack([1 - conf, var], -1), np.stack([1 - conf ** 2, var], -1)], axis=1).reshape(6, -1)
    np.testing.assert_allclose(pattern, hard / np.linalg.norm(hard, axis=1, keepdims=True), rtol=1e-5)
    # a task that gets every sample right with certainty has an all-zero pattern row: it stays zero
    perfect = task_vectors([DataMap(np.ones((2, 3)), np.zeros((2, 3)), np.ones((2, 3)), 1)], "pattern")
    assert np.array_equal(perfect, np.zeros((2, 6)))
    std = task_vectors(maps, "standardized")
    np.testing.assert_allclose(std.mean(axis=0), 0.0, atol=1e-6)
    assert np.array_equal(std[:, 11], np.zeros(6))  # the constant variability column of sample 5
    np.testing.assert_allclose(std, StandardScaler().fit_transform(raw.astype(np.float64)), atol=1e-5)


def test_load_task_vectors_matches_data_maps(recorded):
    store, run_id, _ = recorded
    assert store.recorded_epochs(run_id) == [1, 2, 3]
    for epochs in ([1, 3], [2], None):
        v = load_task_vectors(store, run_id, epochs)
        want = epochs or [1, 2, 3]
        maps = data_maps_at(store.iter_p_true(run_id, max(want)), want)
        np.testing.assert_array_equal(v, task_vectors(maps))
    for rep in REPRESENTATIONS:
        assert load_task_vectors(store, run_id, [3], rep).shape == (15, 800)


# ---------------------------------------------------------------- invariance

def test_reordering_tasks_permutes_the_result_exactly():
    """The tasks reach k-means in a canonical order (not their listing order), so a reordered
    task list gives exactly the permuted result — labels, memberships, inertia — even on
    vectors without structure, where k-means has many local optima."""
    rng = np.random.default_rng(11)
    for x in (clustered(30, 1500, 5, seed=11, noise=0.3)[0], rng.random((30, 800))):
        perm = rng.permutation(30)
        a = TaskClusterer(5, fuzziness=1.7).fit(x)
        b = TaskClusterer(5, fuzziness=1.7).fit(x[perm])
        np.testing.assert_array_equal(b.labels_, a.labels_[perm])
        np.testing.assert_allclose(b.inertia_, a.inertia_, rtol=1e-9)
        np.testing.assert_allclose(b.memberships_, a.memberships_[perm], rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------------- alignment with known groups

def test_alignment_scores():
    groups = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    perfect = np.array([2] * 4 + [0] * 4 + [1] * 4)
    s = alignment_scores(perfect, groups, n_permutations=300, random_state=0)
    assert s["ari"] == pytest.approx(1.0) and s["nmi"] == pytest.approx(1.0) and s["purity"] == pytest.approx(1.0)
    assert s["n_tasks"] == 12
    assert abs(s["chance"]["ari"]["mean"]) < 0.05
    assert s["chance"]["ari"]["p95"] < 1.0 and s["chance"]["purity"]["mean"] < 1.0
    assert s == alignment_scores(perfect, groups, n_permutations=300, random_state=0)  # seeded
    # one cluster per task is pure but not aligned
    s2 = alignment_scores(np.arange(12), groups, n_permutations=20)
    assert s2["purity"] == 1.0 and s2["ari"] == pytest.approx(0.0)
    # everything in one cluster: purity = largest group share
    assert alignment_scores(np.zeros(12, dtype=int), groups, n_permutations=5)["purity"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="same length"):
        alignment_scores(perfect[:5], groups)
    with pytest.raises(ValueError, match="n_permutations=0"):
        alignment_scores(perfect, groups, n_permutations=0)


def test_permutation_scores_equal_sklearn():
    from sklearn.metrics import normalized_mutual_info_score
    from sklearn.metrics.cluster import contingency_matrix

    rng = np.random.default_rng(0)
    for n, n_g, n_k in ((12, 3, 3), (30, 5, 4), (7, 2, 7), (9, 1, 3), (9, 3, 1), (6, 1, 1)):
        g = rng.integers(0, n_g, n)
        labels = np.stack([rng.integers(0, n_k, n) for _ in range(20)] + [g])
        g_codes = np.unique(g, return_inverse=True)[1]
        l_codes = np.stack([np.unique(r, return_inverse=True)[1] for r in labels])
        got = alignment._alignment_batch(g_codes, l_codes)
        for i, lab in enumerate(labels):
            assert got["ari"][i] == pytest.approx(adjusted_rand_score(g, lab), abs=1e-12)
            assert got["nmi"][i] == pytest.approx(normalized_mutual_info_score(g, lab), abs=1e-12)
            assert got["purity"][i] == pytest.approx(contingency_matrix(g, lab).max(axis=0).sum() / n)


def test_task_groups_fashion_mnist_super_groups():
    from stg_core.data import _FASHION_SUPER

    tasks = get_preset("fashion_mnist-g2").tasks
    names = [t.name for t in tasks]
    groups = task_groups(names, tasks, {k: list(v) for k, v in _FASHION_SUPER.items()})
    assert groups == {
        "T-shirt/top": "tops", "Pullover": "tops", "Coat": "tops", "Shirt": "tops",
        "Sandal": "footwear", "Sneaker": "footwear", "Ankle boot": "footwear",
        "Trouser": "Trouser", "Dress": "Dress", "Bag": "Bag",
    }  # Footwear, Tops, Not footwear (class sets), Downside, Random: no known group
    assert task_groups(names, tasks, None) == {}
    assert task_groups(names[:3], tasks, _FASHION_SUPER) == {"T-shirt/top": "tops", "Trouser": "Trouser",
                                                             "Pullover": "tops"}
    with pytest.raises(ValueError, match="'Hat'"):
        task_groups(["Hat"], tasks, _FASHION_SUPER)


def test_group_membership_table():
    names = ["Sneaker", "Random", "Coat", "Bag", "Sandal"]
    groups = {"Sneaker": "footwear", "Coat": "tops", "Bag": "Bag", "Sandal": "footwear"}
    w = np.array([[0.1, 0.9], [0.5, 0.5], [0.7, 0.3], [0.4, 0.6], [0.2, 0.8]])
    table = group_membership_table(w, names, groups)
    assert list(table.columns) == ["group", "task", "cluster_0", "cluster_1", "cluster"]
    assert list(table["group"]) == ["Bag", "footwear", "footwear", "tops"]
    assert list(table["task"]) == ["Bag", "Sandal", "Sneaker", "Coat"]
    assert list(table["cluster"]) == [1, 1, 1, 0]
    np.testing.assert_allclose(table[["cluster_0", "cluster_1"]].to_numpy(), w[[3, 4, 0, 2]])
    with pytest.raises(ValueError, match="do not match"):
        group_membership_table(w[:3], names, groups)


# ---------------------------------------------------------------- caching and estimator API

def test_refit_with_new_params_reuses_the_reduction(monkeypatch):
    calls = []
    real = clustering.reduce_task_vectors

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(clustering, "reduce_task_vectors", counting)
    x, _ = clustered(20, 800, 4, seed=4)
    tc = TaskClusterer(3).fit(x)
    assert len(calls) == 1
    tc.set_params(n_clusters=5, fuzziness=1.5).fit(x)
    assert len(calls) == 1 and tc.memberships_.shape == (20, 5)
    ref = TaskClusterer(5, fuzziness=1.5).fit(x)  # a fresh estimator reduces again, same answer
    assert len(calls) == 2
    np.testing.assert_array_equal(tc.labels_, ref.labels_)
    np.testing.assert_allclose(tc.memberships_, ref.memberships_)
    tc.fit(x.copy())  # equal content: still cached
    assert len(calls) == 2
    y = x.copy()
    y[0, 0] += 1.0  # changed content: reduced again
    tc.fit(y)
    assert len(calls) == 3
    tc.set_params(scaling="standard").fit(y)  # the scaling is part of the key
    assert len(calls) == 4


def test_estimator_api():
    tc = TaskClusterer(3, fuzziness=1.5, random_state=2)
    assert tc.get_params() == {"n_clusters": 3, "fuzziness": 1.5, "scaling": "none", "random_state": 2, "n_init": 3}
    assert "TaskClusterer(" in repr(tc)
    x, _ = clustered(12, 300, 3, seed=9)
    assert tc.fit(x) is tc
    np.testing.assert_array_equal(clone(tc).fit_predict(x), tc.labels_)
    np.testing.assert_allclose(tc.memberships_.sum(axis=1), 1.0)
    np.testing.assert_array_equal(tc.memberships_.argmax(axis=1), tc.labels_)


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_recorded_statistics_give_the_clustering_of_the_raw_vectors(recorded, representation, monkeypatch):
    """The reduction comes from the Gram statistics recorded with each epoch (p_true is not
    read) and gives, for every representation and epoch selection, the labels, memberships and
    inertia of the clustering of the task vectors themselves. (Not for every k: where k is close
    to the number of tasks, k-means++ meets exact ties — two mutual nearest neighbours lower the
    potential equally — that rounding decides, differently in any two computations.)"""
    store, run_id, spec = recorded
    assert store.statistics_epochs(run_id) == [1, 2, 3]
    for epochs in ([1, 2, 3], [2], [1, 3], [3, 1, 3]):
        x = load_task_vectors(store, run_id, epochs, representation)
        with monkeypatch.context() as m:
            m.setattr(store, "load_p_true", lambda *a: pytest.fail("the statistics path read p_true"))
            reduced, n_features = run_vectors.load_reduced_task_vectors(store, run_id, epochs, representation)
        assert n_features == x.shape[1]
        np.testing.assert_allclose(pdist(reduced), pdist(x.astype(np.float64)), rtol=1e-6, atol=1e-9)
        for k in (2, 3, 4, 6):
            fast = cluster_tasks(reduced, k, n_features=n_features)
            direct = TaskClusterer(k).fit(x)
            np.testing.assert_array_equal(fast.labels, direct.labels_)
            np.testing.assert_allclose(fast.memberships, direct.memberships_, atol=1e-6)
            np.testing.assert_allclose(fast.inertia, direct.inertia_, rtol=1e-6)
            km = _sklearn_kmeans(x, n_clusters=k, random_state=0, n_init=3)
            np.testing.assert_array_equal(fast.labels, km.labels_)


def test_standard_scaling_of_raw_vectors_is_the_standardized_representation(recorded):
    store, run_id, spec = recorded
    x = load_task_vectors(store, run_id, [1, 3])
    reduced, n_features = run_vectors.load_reduced_task_vectors(store, run_id, [1, 3], scaling="standard")
    for k in (2, 3, 4):
        np.testing.assert_array_equal(cluster_tasks(reduced, k, n_features=n_features).labels,
                                      TaskClusterer(k, scaling="standard").fit(x).labels_)


def test_without_statistics_the_reduction_is_computed_once_and_cached(recorded, monkeypatch):
    """Pattern vectors with standard scaling have no per-epoch statistic (the pattern norm spans
    the selection): they are reduced from p_true once per setting and cached in the run."""
    store, run_id, spec = recorded
    calls = []
    real = clustering.reduce_task_vectors
    monkeypatch.setattr(clustering, "reduce_task_vectors", lambda x, **kw: calls.append(kw) or real(x, **kw))
    assert not run_vectors.has_statistics(store, run_id, [1, 3], "pattern", "standard")
    reduced, n_features = run_vectors.load_reduced_task_vectors(store, run_id, [1, 3], "pattern", "standard")
    again, _ = run_vectors.load_reduced_task_vectors(store, run_id, [3, 1], "pattern", "standard")
    assert len(calls) == 1 and np.array_equal(reduced, again) and n_features == 2 * 400 * 2
    run_vectors.load_reduced_task_vectors(store, run_id, [1, 3], representation="pattern")  # statistics: no call
    assert len(calls) == 1
    x = load_task_vectors(store, run_id, [1, 3], "pattern")
    direct = TaskClusterer(3, scaling="standard").fit(x)
    fast = cluster_tasks(reduced, 3, n_features=n_features)
    np.testing.assert_array_equal(fast.labels, direct.labels_)
    np.testing.assert_allclose(fast.memberships, direct.memberships_, rtol=1e-9)
    with pytest.raises(ValueError, match="unknown scaling"):
        run_vectors.load_reduced_task_vectors(store, run_id, [1], scaling="minmax")


def test_statistics_of_an_old_run_are_computed_once_from_p_true(recorded, tmp_path):
    """A run recorded before the statistics existed gets exactly the statistics training writes."""
    import shutil

    from stg_core.recording import record_statistics

    store, run_id, spec = recorded
    old = ArtifactStore(tmp_path / "old")
    shutil.copytree(store.run_dir(run_id), old.run_dir(run_id))
    for path in old.run_dir(run_id).glob("datamaps/*"):
        if not path.name.startswith("epoch_"):
            path.unlink()
    assert old.statistics_epochs(run_id) == [] and not run_vectors.has_statistics(old, run_id)
    seen = []
    assert record_statistics(old, run_id, progress=lambda done, total: seen.append((done, total))) == [1, 2, 3]
    assert seen == [(1, 3), (2, 3), (3, 3)]
    for e in (1, 2, 3):
        np.testing.assert_array_equal(np.load(old.run_dir(run_id) / "datamaps" / f"gram_{e}.npy"),
                                      np.load(store.run_dir(run_id) / "datamaps" / f"gram_{e}.npy"))
        np.testing.assert_array_equal(old.load_summary(run_id, e), store.load_summary(run_id, e))
    assert record_statistics(old, run_id) == []  # nothing left to do
    from stg_core.datamaps import data_map

    dm = data_map(store.iter_p_true(run_id, 3))
    np.testing.assert_allclose(old.load_summary(run_id, 3), [dm.confidence.mean(1), dm.variability.mean(1)],
                               rtol=1e-12)
