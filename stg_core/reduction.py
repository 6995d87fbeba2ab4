"""The exact reduction of task vectors, from small per-epoch statistics recorded with p_true.

k-means and the fuzzy memberships depend only on distances between task vectors and the
means of groups of them, so every clustering of the tasks can be computed from the centred
Gram matrix of the vectors ``(n_tasks, n_tasks)``: its eigendecomposition gives coordinates
``(n_tasks, r)`` with the same pairwise distances (:func:`reduce_gram`).

A task vector is a concatenation of per-epoch blocks (the data map at each chosen epoch), so
its Gram matrix is a sum of per-epoch Gram matrices. :class:`stg_core.recording.GramAccumulator`
keeps the running sums of p_true and p_true² on the training device and, at every recorded
epoch, returns :class:`EpochStatistics`: three ``(n_tasks, n_tasks)`` float64 matrices, one per
representation, from which any representation and any selection of epochs is a sum
(:func:`selection_gram`) — the Clustering page never reads p_true.

- ``raw``: ``C Cᵀ + V Vᵀ`` of the column-centred confidence ``C`` and variability ``V``
  ``(n_tasks, N)`` at that epoch (centring is per column, so it commutes with concatenation).
- ``standardized``: the same with every column standardised across tasks (constant columns
  become 0, with scikit-learn's test), a per-column transform, so also per epoch.
- ``pattern``: the *uncentred* ``(1 − C)(1 − C)ᵀ + V Vᵀ``: the pattern representation divides
  each task's whole vector by its norm, which depends on the selection, so the normalisation
  and the centring happen after the sum: ``P = D⁻¹ G D⁻¹`` with ``D = sqrt(diag G)``, then
  ``J P J``.

The statistics are computed from p_true as stored (rounded to float16) with float64 sums, the
same arithmetic as :func:`stg_core.datamaps.data_maps_at`, so they describe exactly the vectors
that :func:`stg_core.run_vectors.load_task_vectors` builds.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

REPRESENTATIONS = ("raw", "standardized", "pattern")

#: Version of the statistics' definition: stored with them; others are recomputed.
STATISTICS_VERSION = 1


@dataclass(frozen=True)
class EpochStatistics:
    """The statistics of one recorded epoch e (data maps over epochs 1..e).

    ``gram`` ``(3, n_tasks, n_tasks)`` float64 in the order of :data:`REPRESENTATIONS` (raw and
    standardized centred, pattern uncentred, see the module docstring); ``mean_confidence`` and
    ``mean_variability`` ``(n_tasks,)`` each task's data map averaged over its samples;
    ``n_samples`` N."""

    gram: np.ndarray
    mean_confidence: np.ndarray
    mean_variability: np.ndarray
    n_samples: int


def standardize_columns(c: np.ndarray) -> np.ndarray:
    """Columns of float64 ``c`` standardised in place (population std); constant columns -> 0,
    with scikit-learn's test for "constant up to rounding"."""
    n = c.shape[0]
    mean = c.mean(axis=0)
    c -= mean
    var = np.einsum("ij,ij->j", c, c) / n
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    scale = np.sqrt(var)
    scale[constant] = 1.0
    c /= scale
    c[:, constant] = 0.0
    return c


def selection_gram(grams: Mapping[int, np.ndarray], epochs: Sequence[int], representation: str) -> np.ndarray:
    """Centred Gram matrix ``(n_tasks, n_tasks)`` of the task vectors of ``representation``
    over the data maps at ``epochs``, from each epoch's ``(3, n_tasks, n_tasks)`` statistics."""
    if representation not in REPRESENTATIONS:
        raise ValueError(f"unknown representation {representation!r}; "
                         f"known representations: {', '.join(REPRESENTATIONS)}")
    which = REPRESENTATIONS.index(representation)
    gram = sum(grams[e][which] for e in sorted(set(epochs)))
    if representation != "pattern":
        return gram
    norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)  # an all-zero row stays zero
    unit = gram * inverse[:, None] * inverse[None, :]
    return centre_gram(unit)


def centre_gram(gram: np.ndarray) -> np.ndarray:
    """``J G J`` with ``J = I − 11ᵀ/n``: the Gram matrix of the rows after subtracting their mean."""
    row = gram.mean(axis=1, keepdims=True)
    return gram - row - row.T + gram.mean()


def reduce_gram(gram: np.ndarray) -> np.ndarray:
    """Coordinates ``(n, r)`` float64, ``r <= n - 1`` (at least 1), whose pairwise distances are
    those of the vectors with centred Gram matrix ``gram`` ``(n, n)``: ``Y = V·sqrt(λ)`` over the
    eigenvalues above a tiny relative tolerance (the others are zero up to rounding). Columns
    come in decreasing order of variance, so the first two are the principal axes."""
    n = gram.shape[0]
    gram = (gram + gram.T) / 2.0
    with threadpool_controller().limit(limits=1):
        eigval, eigvec = np.linalg.eigh(gram)
    eigval, eigvec = eigval[::-1], eigvec[:, ::-1]
    # Rounding puts the zero eigenvalues at about ±n·eps·λ_max; dropping one of them changes
    # squared distances by at most 2λ, i.e. nothing measurable.
    tiny = max(float(eigval[0]), 0.0) * n * np.finfo(np.float64).eps * 16
    keep = eigval > tiny
    if not keep.any():  # all tasks identical (or a single task): one zero column
        return np.zeros((n, 1))
    return np.ascontiguousarray(eigvec[:, keep] * np.sqrt(eigval[keep]))


@functools.lru_cache(maxsize=1)
def threadpool_controller() -> Any:
    # threadpoolctl inspects every loaded shared library when a controller is created (costlier
    # than a whole re-clustering); created once, limiting threads is cheap. The
    # controller only describes the loaded libraries: results do not depend on this cache.
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()
