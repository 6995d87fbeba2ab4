"""Clustering a task affinity into exactly k groups: Grad-TAE's SDP (cvxpy), rounded, with
scikit-learn's spectral clustering as the option and the fallback."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

CLUSTERINGS = ("sdp", "spectral")
SDP_SOLVERS = ("CLARABEL", "SCS")


class SDPFailed(RuntimeError):
    """The SDP could not be solved: cvxpy is missing, or the solver failed."""


def solve_sdp(affinity: np.ndarray, n_clusters: int, solver: str = "CLARABEL") -> tuple[np.ndarray, dict[str, Any]]:
    """``X`` ``(n, n)`` minimising ``⟨max(T) − T, X⟩`` s.t. ``X ⪰ 0, X ≥ 0, tr X = k, X·1 = 1``,
    and the solve's status and objective. Raises :class:`SDPFailed` when cvxpy is missing or
    the solver fails or does not reach an optimum."""
    try:
        import cvxpy as cp
    except ImportError as exc:
        raise SDPFailed(f"cvxpy is not installed ({exc})") from exc
    n = len(affinity)
    cost = affinity.max() - affinity
    x = cp.Variable((n, n), symmetric=True)
    constraints = [x >> 0, x >= 0, cp.trace(x) == n_clusters, cp.sum(x, axis=1) == 1]
    problem = cp.Problem(cp.Minimize(cp.sum(cp.multiply(cost, x))), constraints)
    try:
        problem.solve(solver=solver)
    except cp.error.SolverError as exc:
        raise SDPFailed(f"solver {solver} failed ({exc})") from exc
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or x.value is None:
        raise SDPFailed(f"solver {solver} ended with status {problem.status!r}")
    return np.asarray(x.value, dtype=np.float64), {"status": str(problem.status), "objective": float(problem.value)}


def _mean_affinity(affinity: np.ndarray, task: int, members: np.ndarray) -> float:
    others = members[members != task]
    return float(affinity[task, others].mean()) if len(others) else 0.0


def exactly_k_groups(labels: np.ndarray, affinity: np.ndarray, n_clusters: int) -> np.ndarray:
    """Labels ``(n_tasks,)`` in ``0..k−1`` with every group non-empty, from labels that may
    leave tasks unassigned (−1) or use fewer or more than ``k`` groups.

    Groups beyond the ``k`` largest are dissolved; each task without a group then joins, in
    index order, the group with the highest mean affinity to it. While fewer than ``k`` groups
    exist, the task of the largest group with the lowest mean affinity to the rest of that
    group leaves it for a group of its own. Ties go to the lower index.
    """
    labels = np.asarray(labels, dtype=np.int64).copy()
    groups = [np.flatnonzero(labels == g) for g in np.unique(labels[labels >= 0])]
    groups = sorted(groups, key=lambda members: (-len(members), members[0]))[:n_clusters]
    labels[:] = -1
    for g, members in enumerate(groups):
        labels[members] = g
    for task in np.flatnonzero(labels < 0):
        if not groups:
            labels[task] = 0
            groups.append(np.array([task]))
            continue
        best = int(np.argmax([_mean_affinity(affinity, task, np.flatnonzero(labels == g))
                              for g in range(len(groups))]))
        labels[task] = best
    n_groups = int(labels.max()) + 1
    while n_groups < n_clusters:
        sizes = np.bincount(labels, minlength=n_groups)
        largest = np.flatnonzero(labels == int(np.argmax(sizes)))
        loner = min(largest, key=lambda t: (_mean_affinity(affinity, t, largest), t))
        labels[loner] = n_groups
        n_groups += 1
    return labels


def round_sdp_solution(x: np.ndarray, affinity: np.ndarray, n_clusters: int) -> tuple[np.ndarray, int]:
    """Hard labels ``(n_tasks,)`` with exactly ``k`` non-empty groups from the SDP solution
    ``x`` ``(n, n)``, and the number of distinct candidate groups it suggested.

    Task i's candidate group is ``{j : x_ij > 1/n} ∪ {i}`` (the paper's threshold). Groups are
    formed greedily: the candidate with the most tasks not yet in a group (ties: the lower row)
    makes a new group of those tasks, until ``k`` groups exist or every task is in one; then
    :func:`exactly_k_groups` places the rest by mean affinity (or splits, when the candidates
    gave fewer than ``k`` groups).
    """
    n = len(x)
    support = x > 1.0 / n
    np.fill_diagonal(support, True)
    labels = np.full(n, -1, dtype=np.int64)
    for g in range(n_clusters):
        free = support & (labels < 0)[None, :]
        row = int(np.argmax(free.sum(1)))
        if not free[row].any():
            break
        labels[free[row]] = g
    n_candidates = len({tuple(row) for row in support})
    return exactly_k_groups(labels, affinity, n_clusters), n_candidates


def spectral_labels(affinity: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """Labels ``(n_tasks,)`` from scikit-learn's spectral clustering on ``exp(T − max T)``
    (the official code's ``exp(T)``, rescaled, which the normalised Laplacian ignores)."""
    from sklearn.cluster import SpectralClustering

    similarity = np.exp(affinity - affinity.max())
    labels = SpectralClustering(n_clusters=n_clusters, affinity="precomputed", random_state=seed,
                                n_init=100).fit(similarity).labels_
    return exactly_k_groups(labels, affinity, n_clusters)


def cluster_affinity(affinity: np.ndarray, n_clusters: int, *, clustering: str = "sdp", solver: str = "CLARABEL",
                     seed: int = 0) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...], dict[str, Any]]:
    """Labels ``(n_tasks,)`` of ``k`` groups from the affinity ``(n_tasks, n_tasks)``, with the
    notes (how it was clustered, where that differs from the paper) and warnings (a fallback
    taken) to show, and JSON-able details of the clustering."""
    if clustering == "spectral":
        return (spectral_labels(affinity, n_clusters, seed),
                ("spectral clustering of exp(T) instead of the paper's SDP (clustering='spectral')",), (),
                {"clustering": "spectral"})
    try:
        x, solve = solve_sdp(affinity, n_clusters, solver)
    except SDPFailed as exc:
        warning = f"spectral-clustering fallback: the SDP was not solved, {exc}"
        warnings.warn(f"Grad-TAE: {warning}", RuntimeWarning, stacklevel=2)
        return spectral_labels(affinity, n_clusters, seed), (), (warning,), {"clustering": "spectral-fallback",
                                                                             "sdp_error": str(exc)}
    labels, n_candidates = round_sdp_solution(x, affinity, n_clusters)
    details = {"clustering": "sdp", "solver": solver, "sdp_status": solve["status"],
               "sdp_objective": solve["objective"], "sdp_candidate_groups": n_candidates}
    notes = () if n_candidates == n_clusters else (
        f"SDP rounding: the thresholded solution suggested {n_candidates} candidate groups, "
        f"turned into {n_clusters} by affinity",)
    return labels, notes, (), details
