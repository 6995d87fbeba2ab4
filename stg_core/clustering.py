"""Task clustering on data maps: task vectors, an exact reduction, k-means and fuzzy memberships.

STG-MTL represents each task by its data maps — per training sample, confidence and
variability at one or more epochs — flattened into one long *task vector*, clusters the task
vectors with k-means and turns the distances to the centroids into fuzzy memberships
(paper eq. 2, fuzziness ``F``).

The task vectors are long (``n_epochs × n_samples × 2`` columns, e.g. 500,000) but there are
few tasks (tens to a thousand), so the work is split in two:

1. :func:`reduce_task_vectors` maps the ``(n_tasks, D)`` vectors once to ``(n_tasks, r)`` with
   ``r < n_tasks`` and every pairwise Euclidean distance preserved (a rotation of the centred
   vectors onto the subspace they span). k-means with k-means++ seeding only ever looks at
   distances between points and means of points, so it gives the same clusters, inertia and
   point-to-centroid distances on the reduced matrix as on the original vectors.
2. :func:`cluster_tasks` runs scikit-learn's ``KMeans`` on the reduced matrix plus the
   memberships: milliseconds, so an app can re-cluster on every slider move.

:class:`TaskClusterer` wraps both as a scikit-learn style estimator and caches the reduction,
so ``set_params(n_clusters=...)`` followed by ``fit`` on the same array skips step 1.

A stored run's task vectors and their reduction (from the Gram statistics recorded with each
epoch, or from p_true) are loaded by :mod:`stg_core.run_vectors`. Alignment with known groups
(the paper's Figures 5 and 8–11) lives in :mod:`stg_core.alignment` (its functions are
importable from here too).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans

from stg_core.alignment import alignment_scores, group_membership_table, task_groups  # noqa: F401 - re-exported
from stg_core.datamaps import DataMap
from stg_core.reduction import REPRESENTATIONS, reduce_gram, standardize_columns
from stg_core.reduction import threadpool_controller as _threadpool_controller
from stg_core.validation import check_fuzziness, check_n_clusters, is_integer

SCALINGS = ("none", "standard")

# float64 elements per column chunk when streaming over the task vectors (32 MiB per chunk).
_CHUNK_ELEMENTS = 4 * 1024 * 1024
# scikit-learn's default KMeans tol: relative to the mean per-feature variance of the data.
_SKLEARN_TOL = 1e-4


# --------------------------------------------------------------------------- task vectors

def task_vectors(data_maps: Sequence[DataMap], representation: str = "raw") -> np.ndarray:
    """Task vectors from data maps of the same tasks and samples at one or more epochs.

    ``data_maps``: E data maps, each with ``confidence`` / ``variability`` ``(n_tasks, N)``.
    Returns ``(n_tasks, E * N * 2)`` float32, laid out as the original STG-MTL code does: the
    array ``(n_tasks, E, N, 2)`` with ``[..., 0]`` confidence and ``[..., 1]`` variability,
    flattened per task (epoch-major, then sample, then the interleaved pair).

    ``representation``:

    - ``"raw"``: the paper's vectors, as above.
    - ``"standardized"``: raw, then every column standardised across tasks (zero mean, unit
      population variance; constant columns become 0).
    - ``"pattern"``: ``[1 - confidence, variability]`` in the same layout, then each task's row
      divided by its L2 norm (an all-zero row stays zero): compares *which* samples a task finds
      hard rather than *how* hard the task is overall.
    """
    _check_representation(representation)
    maps = list(data_maps)
    if not maps:
        raise ValueError("task_vectors needs at least one data map")
    shape = np.shape(maps[0].confidence)
    if len(shape) != 2:
        raise ValueError(f"data map confidence must be (n_tasks, n_samples), got shape {shape}")
    for i, m in enumerate(maps):
        for name in ("confidence", "variability"):
            if np.shape(getattr(m, name)) != shape:
                raise ValueError(f"data map {i} has {name} of shape {np.shape(getattr(m, name))}, "
                                 f"expected {shape} like data map 0")
    n_tasks, n_samples = shape
    out = np.empty((n_tasks, len(maps), n_samples, 2), dtype=np.float32)
    for e, m in enumerate(maps):
        conf = np.asarray(m.confidence)
        out[:, e, :, 0] = (1.0 - conf) if representation == "pattern" else conf
        out[:, e, :, 1] = m.variability
    out = out.reshape(n_tasks, -1)
    if representation == "standardized":
        for sl in _column_chunks(out.shape):
            out[:, sl] = standardize_columns(out[:, sl].astype(np.float64))
    elif representation == "pattern":
        sq = np.zeros(n_tasks)
        for sl in _column_chunks(out.shape):
            c = out[:, sl].astype(np.float64)
            sq += np.einsum("ij,ij->i", c, c)
        norms = np.sqrt(sq)
        nonzero = norms > 0
        out[nonzero] /= norms[nonzero, None].astype(np.float32)
    return out


# --------------------------------------------------------------------------- exact reduction

def reduce_task_vectors(x: np.ndarray, *, standardize: bool = False) -> np.ndarray:
    """Exact reduction ``(n_tasks, D) -> (n_tasks, r)`` float64, ``r <= n_tasks - 1`` (at least 1).

    All pairwise Euclidean distances between rows are preserved (to float64 rounding): the
    rows are centred, their Gram matrix is accumulated in float64 over column chunks (memory
    ``O(n_tasks² + n_tasks × chunk)``, the input is never copied whole), eigendecomposed, and
    ``Y = V·sqrt(λ)`` keeps the eigenvalues above a tiny relative tolerance (the others are
    zero up to rounding: the centred rows span at most ``n_tasks - 1`` dimensions). Columns
    come in decreasing order of variance. Because k-means depends only on pairwise distances
    and on centroids that are means of rows, clustering ``Y`` gives the clustering of ``x``.

    ``standardize=True`` standardises each column across tasks first (as scikit-learn's
    ``StandardScaler``; constant columns become 0), chunk by chunk, without a copy of ``x``.
    ``ValueError`` for a non-2D, empty, non-numeric or non-finite ``x``.

    Runs BLAS on one thread: the work is memory-bound conversion and centring, where threads
    spinning against other processes cost more than they bring (docs/benchmarks.md).
    """
    x = _check_vectors(x)
    with _threadpool_controller().limit(limits=1):
        return _reduce(x, standardize)


def _reduce(x: np.ndarray, standardize: bool) -> np.ndarray:
    n = x.shape[0]
    gram = np.zeros((n, n))
    for sl in _column_chunks(x.shape):
        c = x[:, sl].astype(np.float64)
        if not np.isfinite(c).all():
            i, j = np.argwhere(~np.isfinite(c))[0]
            raise ValueError(f"task vectors contain NaN or infinite values "
                             f"(first at task {i}, column {sl.start + j}: {c[i, j]})")
        if standardize:
            c = standardize_columns(c)
        else:
            c -= c.mean(axis=0)
        gram += c @ c.T
    return reduce_gram(gram)


# --------------------------------------------------------------------------- memberships

def fuzzy_memberships(distances: np.ndarray, fuzziness: float) -> np.ndarray:
    """Fuzzy memberships of the paper's eq. 2 from task-to-centroid distances.

    ``w_ij = d_ij^(-2/(F-1)) / Σ_k d_ik^(-2/(F-1))``, computed in log space as
    ``softmax_j(-(2/(F-1)) · log d_ij)`` so that ``F`` close to 1 (e.g. 1.0001: nearly hard
    assignments), large ``F`` (e.g. 1e6: nearly uniform) and tiny distances neither overflow
    nor give NaN. A task at distance 0 from a centroid gets membership 1 there (split equally
    between centroids at distance 0). ``distances`` ``(n_tasks, k)`` -> ``(n_tasks, k)``
    float64, rows summing to 1. ``ValueError`` for ``F <= 1`` and for NaN, infinite or
    negative distances.
    """
    fuzziness = check_fuzziness(fuzziness)
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] < 1:
        raise ValueError(f"distances must be (n_tasks, k) with k >= 1, got shape {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError("distances contain NaN or infinite values")
    if (d < 0).any():
        raise ValueError(f"distances must not be negative (found {d.min()})")
    zero = d == 0
    with np.errstate(divide="ignore"):
        logits = -(2.0 / (fuzziness - 1.0)) * np.log(d)
    rows = ~zero.any(axis=1)
    out = np.empty_like(d)
    if rows.any():
        z = logits[rows]
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        out[rows] = e / e.sum(axis=1, keepdims=True)
    if not rows.all():
        hits = zero[~rows].astype(np.float64)
        out[~rows] = hits / hits.sum(axis=1, keepdims=True)
    return out


# --------------------------------------------------------------------------- clustering

@dataclass(frozen=True)
class ClusteringResult:
    """One clustering of the tasks; all arrays read-only.

    ``memberships`` ``(n_tasks, k)`` rows sum to 1; ``labels`` ``(n_tasks,)`` the k-means
    labels (= argmax of the memberships, barring exact ties such as coinciding centroids when
    there are duplicate tasks); ``inertia`` sum of squared distances to the closest
    centroid; ``distances`` ``(n_tasks, k)`` Euclidean task-to-centroid distances;
    ``cluster_centers`` ``(k, r)`` centroids in the space clustered (reduced space when
    clustering a reduced matrix); ``n_iter`` Lloyd iterations of the best k-means run.
    """

    memberships: np.ndarray
    labels: np.ndarray
    inertia: float
    distances: np.ndarray
    cluster_centers: np.ndarray
    n_iter: int


def canonical_order(x: np.ndarray) -> np.ndarray:
    """Order in which :func:`cluster_tasks` hands the tasks ``x`` ``(n_tasks, d)`` to k-means:
    farthest from the mean task first (ties keep their order).

    k-means++ draws its seeds by row index, so the same tasks listed in another order could
    land in another local optimum. Sorting by a property of each task's vector instead of its
    position makes the clustering independent of how the tasks were listed: reordering the
    tasks only permutes the memberships.
    """
    centred = np.asarray(x, dtype=np.float64) - np.mean(x, axis=0)
    return np.argsort(-np.einsum("ij,ij->i", centred, centred), kind="stable")


def cluster_tasks(reduced: np.ndarray, n_clusters: int, fuzziness: float = 2.0, random_state: int | None = 0,
                  n_init: int = 3, *, n_features: int | None = None) -> ClusteringResult:
    """k-means (scikit-learn ``KMeans``, k-means++ seeding, Lloyd) plus fuzzy memberships.

    The tasks go to ``KMeans`` in :func:`canonical_order`, so the result is that of ``KMeans``
    on ``reduced[canonical_order(reduced)]``, mapped back to the given order.

    ``reduced``: ``(n_tasks, r)`` task vectors, typically from :func:`reduce_task_vectors`
    (any task vectors work: clustering is done in whatever space is given). Cheap enough to
    call on every slider move: reduce once, re-cluster often.

    ``n_features``: the number of columns of the task vectors ``reduced`` came from.
    scikit-learn's stopping tolerance is ``tol × mean per-column variance``; the reduction keeps
    the total variance but not the number of columns, so passing ``n_features`` rescales
    ``tol`` to give the same absolute tolerance — and so exactly the result of ``KMeans`` on the
    original vectors. ``None``: ``reduced`` is taken as the vectors themselves.

    Runs on one thread (BLAS and OpenMP): for matrices this small, thread start-up and
    oversubscription cost more than they bring (docs/benchmarks.md), and the result does not
    depend on the thread count. ``ValueError`` names a bad ``n_clusters``, ``fuzziness`` or ``n_init``.
    """
    y = np.asarray(reduced)
    if y.ndim != 2 or y.shape[0] == 0 or y.shape[1] == 0:
        raise ValueError(f"reduced must be a non-empty 2D array (n_tasks, r), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.floating):
        y = y.astype(np.float64)
    if not np.isfinite(y).all():
        raise ValueError("reduced contains NaN or infinite values")
    k = check_n_clusters(n_clusters, y.shape[0], "n_clusters")
    fuzziness = check_fuzziness(fuzziness)
    if not is_integer(n_init) or n_init < 1:
        raise ValueError(f"n_init={n_init!r} must be a positive integer")
    tol = _SKLEARN_TOL
    if n_features is not None:
        if not isinstance(n_features, (int, np.integer)) or n_features < 1:
            raise ValueError(f"n_features={n_features!r} must be a positive integer")
        tol = _SKLEARN_TOL * y.shape[1] / int(n_features)
    km = KMeans(n_clusters=k, random_state=random_state, n_init=int(n_init), tol=tol)
    order = canonical_order(y)
    with _threadpool_controller().limit(limits=1):
        km.fit(y[order])
        distances = _distances(y, km.cluster_centers_)
    memberships = fuzzy_memberships(distances, fuzziness)
    labels = np.empty(len(y), dtype=np.int64)
    labels[order] = km.labels_
    for a in (memberships, labels, distances, km.cluster_centers_):
        a.flags.writeable = False
    return ClusteringResult(memberships, labels, float(km.inertia_), distances, km.cluster_centers_,
                            int(km.n_iter_))


class TaskClusterer(BaseEstimator):
    """STG-MTL task clustering: k-means on task vectors plus fuzzy memberships (eq. 2).

    Parameters
    ----------
    n_clusters : number of clusters k, ``2 <= k <= n_tasks``.
    fuzziness : F > 1 of eq. 2 (close to 1: hard assignments; large: uniform memberships).
    scaling : ``"none"`` (the paper) or ``"standard"`` (each column of the task vectors
        standardised across tasks before clustering).
    random_state : seed of k-means++ (``KMeans(random_state=...)``).
    n_init : k-means++ restarts; the best inertia wins (``KMeans(n_init=...)``). Default 3, not
        the paper's 10, to re-cluster within the sliders' budget (``bench/recluster.py``);
        scikit-learn's own default (``"auto"``) is a single k-means++ run.

    ``fit`` clusters the exact reduction of the vectors (:func:`reduce_task_vectors`), which
    gives the labels, inertia and distances ``KMeans`` gives on the vectors themselves, and
    caches it: after ``set_params(n_clusters=..., fuzziness=...)``, ``fit`` on an array with the
    same content (shape, dtype and SHA-1 of the bytes) skips the reduction.

    Attributes after ``fit``: ``memberships_`` ``(n_tasks, k)``, ``labels_`` ``(n_tasks,)``,
    ``inertia_``, ``distances_`` ``(n_tasks, k)``, ``cluster_centers_`` ``(k, r)`` in the reduced
    space, ``reduced_`` ``(n_tasks, r)``, ``n_iter_``, ``n_features_in_``.
    """

    def __init__(self, n_clusters: int = 2, *, fuzziness: float = 2.0, scaling: str = "none",
                 random_state: int | None = 0, n_init: int = 3) -> None:
        self.n_clusters = n_clusters
        self.fuzziness = fuzziness
        self.scaling = scaling
        self.random_state = random_state
        self.n_init = n_init

    def fit(self, task_vectors: np.ndarray, y: Any = None) -> "TaskClusterer":
        """Cluster ``task_vectors`` ``(n_tasks, D)``; ``y`` is ignored. Returns ``self``."""
        if self.scaling not in SCALINGS:
            raise ValueError(f"unknown scaling {self.scaling!r}; known scalings: {', '.join(SCALINGS)}")
        x = _check_vectors(task_vectors)
        check_n_clusters(self.n_clusters, x.shape[0], "n_clusters")
        check_fuzziness(self.fuzziness)
        key = (x.shape, x.dtype.str, self.scaling, _fingerprint(x))
        cached = getattr(self, "_reduction_cache", None)
        if cached is not None and cached[0] == key:
            reduced = cached[1]
        else:
            reduced = reduce_task_vectors(x, standardize=self.scaling == "standard")
            reduced.flags.writeable = False
            self._reduction_cache = (key, reduced)
        result = cluster_tasks(reduced, self.n_clusters, self.fuzziness, self.random_state, self.n_init,
                               n_features=x.shape[1])
        self.reduced_ = reduced
        self.memberships_ = result.memberships
        self.labels_ = result.labels
        self.inertia_ = result.inertia
        self.distances_ = result.distances
        self.cluster_centers_ = result.cluster_centers
        self.n_iter_ = result.n_iter
        self.n_features_in_ = x.shape[1]
        return self

    def fit_predict(self, task_vectors: np.ndarray, y: Any = None) -> np.ndarray:
        """``fit`` then return ``labels_``."""
        return self.fit(task_vectors).labels_


# --------------------------------------------------------------------------- helpers

def _check_representation(representation: str) -> None:
    if representation not in REPRESENTATIONS:
        raise ValueError(f"unknown representation {representation!r}; "
                         f"known representations: {', '.join(REPRESENTATIONS)}")


def _check_vectors(x: Any) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"task vectors must be a non-empty 2D array (n_tasks, n_features), got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
        raise ValueError(f"task vectors must be real numbers, got dtype {x.dtype}")
    return x


def _column_chunks(shape: tuple[int, int]) -> list[slice]:
    n, d = shape
    step = max(1, _CHUNK_ELEMENTS // max(n, 1))
    return [slice(a, min(a + step, d)) for a in range(0, d, step)]


def _distances(y: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Euclidean distances ``(n, k)`` from direct differences (no ``|a|²+|b|²-2ab`` cancellation)."""
    from scipy.spatial.distance import cdist

    return cdist(np.asarray(y, dtype=np.float64), np.asarray(centers, dtype=np.float64))


def _fingerprint(x: np.ndarray) -> str:
    """SHA-1 of the array's bytes in C order (streamed; no full copy of a non-contiguous array)."""
    h = hashlib.sha1(usedforsecurity=False)
    if x.flags.c_contiguous:
        h.update(memoryview(x).cast("B"))
    else:
        for row in x:
            h.update(np.ascontiguousarray(row).tobytes())
    return h.hexdigest()
