"""How stable is a grouping across training seeds? (The paper reports one seed per figure.)

For a sweep (:mod:`stg_core.sweep`: one run per seed, R runs) and one grouping setting
(k, F, representation, data-map epochs), each run's tasks are clustered as the Clustering
page clusters them, and:

- the **co-association** matrix ``(n_tasks, n_tasks)``: the fraction of the R seeds in which
  tasks i and j share their argmax cluster (symmetric, 1 on the diagonal);
- the **consensus grouping**: average-linkage clustering of ``1 - co-association`` into k
  groups (the usual evidence-accumulation consensus);
- a per-task **stability** score: the mean over the other tasks j of
  ``max(c_ij, 1 - c_ij)`` — 1 when every pairing of task i is decided the same way by every
  seed (always together or always apart), 0.5 when each is a coin flip;
- the pairwise **ARI** ``(R, R)`` between the seeds' groupings;
- each paper claim's verdict per seed (:func:`stg_core.claims.run_claims`), summarised as
  "holds in x of R seeds".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.cluster import AgglomerativeClustering

from stg_core import alignment
from stg_core.claims import HOLDS, NOT_APPLICABLE, GroupingSettings, run_claims
from stg_core.clustering import cluster_tasks
from stg_core.run_vectors import load_reduced_task_vectors, recorded_selection
from stg_core.store import ArtifactStore
from stg_core.sweep import read_sweep


def co_association(labels: np.ndarray) -> np.ndarray:
    """``(n_tasks, n_tasks)`` fraction of groupings in which two tasks share a cluster, from the
    labels ``(R, n_tasks)`` of R groupings."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[0] < 1:
        raise ValueError(f"labels must be (R, n_tasks) with R >= 1, got shape {labels.shape}")
    return (labels[:, :, None] == labels[:, None, :]).mean(axis=0)


def consensus_grouping(co: np.ndarray, k: int) -> np.ndarray:
    """Consensus labels ``(n_tasks,)`` in k groups: average linkage on the distance ``1 - co``
    of a co-association matrix ``(n_tasks, n_tasks)``. Labels are numbered by first task."""
    co = np.asarray(co, dtype=np.float64)
    n = co.shape[0]
    if co.shape != (n, n):
        raise ValueError(f"co-association must be square, got shape {co.shape}")
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and the number of tasks ({n})")
    if k == n:
        return np.arange(n)
    raw = AgglomerativeClustering(n_clusters=k, metric="precomputed", linkage="average").fit_predict(1.0 - co)
    _, first = np.unique(raw, return_index=True)
    renumber = {label: i for i, label in enumerate(raw[np.sort(first)])}
    return np.array([renumber[label] for label in raw])


def task_stability(co: np.ndarray) -> np.ndarray:
    """Per task ``(n_tasks,)``: the mean over the other tasks of ``max(c_ij, 1 - c_ij)``, in
    [0.5, 1] (1: every seed pairs the task the same way with every other task)."""
    co = np.asarray(co, dtype=np.float64)
    n = co.shape[0]
    if n < 2:
        return np.ones(n)
    decided = np.maximum(co, 1.0 - co)
    return (decided.sum(1) - np.diag(decided)) / (n - 1)


def pairwise_ari(labels: np.ndarray) -> np.ndarray:
    """``(R, R)`` adjusted Rand index between every two of R groupings ``(R, n_tasks)``."""
    return alignment.pairwise_ari(dict(enumerate(np.asarray(labels))))


@dataclass(frozen=True)
class StabilityReport:
    """The stability of one grouping setting over a sweep's R seeds (see the module doc)."""

    sweep_id: str
    seeds: tuple[int, ...]
    run_ids: tuple[str, ...]
    task_names: tuple[str, ...]
    grouping: GroupingSettings
    labels: np.ndarray          # (R, n_tasks) argmax cluster of each task, per seed
    memberships: np.ndarray     # (R, n_tasks, k)
    co_association: np.ndarray  # (n_tasks, n_tasks)
    consensus: np.ndarray       # (n_tasks,)
    stability: np.ndarray       # (n_tasks,)
    ari: np.ndarray             # (R, R)
    claims: list[dict[str, Any]]  # per claim: key, title, holds, fails, not_applicable, verdicts per seed

    def to_json(self) -> dict[str, Any]:
        off_diagonal = self.ari[~np.eye(len(self.seeds), dtype=bool)]
        g = self.grouping
        return {"sweep": self.sweep_id, "seeds": list(self.seeds), "runs": list(self.run_ids),
                "tasks": list(self.task_names),
                "grouping": {"k": g.k, "fuzziness": g.fuzziness, "representation": g.representation,
                             "scaling": g.scaling, "epochs": list(g.epochs), "seed": g.seed},
                "labels": self.labels.tolist(), "memberships": self.memberships.round(6).tolist(),
                "co_association": self.co_association.round(6).tolist(), "consensus": self.consensus.tolist(),
                "stability": self.stability.round(6).tolist(), "ari": self.ari.round(6).tolist(),
                "mean_ari": float(off_diagonal.mean()) if off_diagonal.size else 1.0, "claims": self.claims}


def sweep_stability(store: ArtifactStore, sweep: str, k: int, *, fuzziness: float = 2.0,
                    representation: str = "raw", epochs: Sequence[int] | None = None, scaling: str = "none",
                    seed: int = 0) -> StabilityReport:
    """The :class:`StabilityReport` of sweep ``sweep`` (id or unique prefix) at k, F,
    representation and data-map ``epochs`` (None: every recorded epoch); ``seed`` is the
    k-means seed, the same for every run. Every run of the sweep must have finished."""
    record = read_sweep(store, sweep)
    seeds = tuple(int(s) for s in record["seeds"])
    run_ids = tuple(record["runs"][str(s)] for s in seeds)
    unfinished = [r for r in run_ids if store.read_status(r).get("state") != "completed"]
    if unfinished:
        raise ValueError(f"sweep {record['id']}: {len(unfinished)} of {len(run_ids)} runs have not finished "
                         f"(e.g. {unfinished[0]}); run the sweep again to finish them")
    names = store.load_spec(run_ids[0]).task_names
    labels, memberships, verdicts = [], [], []
    grouping = None
    for run_id in run_ids:
        chosen = recorded_selection(store, run_id, epochs)
        grouping = GroupingSettings(k, float(fuzziness), representation, scaling, tuple(chosen), seed)
        reduced, n_features = load_reduced_task_vectors(store, run_id, chosen, representation, scaling)
        result = cluster_tasks(reduced, k, fuzziness, random_state=seed, n_features=n_features)
        labels.append(np.asarray(result.memberships).argmax(1))
        memberships.append(np.asarray(result.memberships))
        verdicts.append(run_claims(store, run_id, grouping, result.memberships, reduced, n_features))
    labels_arr = np.stack(labels)
    co = co_association(labels_arr)
    claims = []
    for i, first in enumerate(verdicts[0]):
        per_seed = [v[i].verdict for v in verdicts]
        claims.append({"key": first.key, "title": first.title, "source": first.source,
                       "holds": per_seed.count(HOLDS), "not_applicable": per_seed.count(NOT_APPLICABLE),
                       "fails": len(per_seed) - per_seed.count(HOLDS) - per_seed.count(NOT_APPLICABLE),
                       "verdicts": per_seed, "details": [v[i].detail for v in verdicts],
                       "summary": claim_summary(per_seed)})
    return StabilityReport(record["id"], seeds, run_ids, tuple(names), grouping, labels_arr, np.stack(memberships),
                           co, consensus_grouping(co, k), task_stability(co), pairwise_ari(labels_arr), claims)


def claim_summary(verdicts: Sequence[str]) -> str:
    """``"holds in 4 of 5 seeds"`` (seeds where the claim is not applicable are left out of R)."""
    applicable = [v for v in verdicts if v != NOT_APPLICABLE]
    if not applicable:
        return "not applicable"
    return f"holds in {applicable.count(HOLDS)} of {len(applicable)} seeds"
