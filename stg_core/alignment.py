"""How a grouping of the tasks compares with known groups and with other groupings.

- :func:`task_groups`: the known group of each one-vs-rest class task (CIFAR-100's
  superclasses, CIFAR-10's vehicles / animals, Fashion-MNIST's tops / footwear).
- :func:`alignment_scores`: ARI, NMI and purity against the known groups, with chance levels.
- :func:`contingency`: clusters × known groups, rows and columns matched (Hungarian) so that
  agreement lies on the diagonal.
- :func:`run_alignment`: all of it for a stored run, as the command line and the pages show it.
- :func:`match_clusters`, :func:`pairwise_ari`: one grouping against another.
- :func:`group_membership_table`: the long table behind the paper's Figures 5 and 8–11.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stg_core.tasks import Task
from stg_core.validation import is_integer

if TYPE_CHECKING:
    from stg_core.store import ArtifactStore


def task_groups(task_names: Sequence[str], tasks: Sequence[Task],
                super_groups: Mapping[str, Sequence[str]] | None) -> dict[str, str]:
    """Known group of each one-vs-rest class task, by task name.

    A task of ``task_names`` (looked up by name in ``tasks``) gets a group when it is a
    ``classes`` task with exactly one positive class and that class is in one of
    ``super_groups`` (group name -> class names, as in the run's ``dataset.json``). Other
    tasks (class sets, attributes, random, flipped, classes in no group) are absent.
    ``ValueError`` for a name not in ``tasks`` or a class listed in two groups.
    """
    by_name = {t.name: t for t in tasks}
    group_of: dict[str, str] = {}
    for group, classes in (super_groups or {}).items():
        for c in classes:
            if c in group_of and group_of[c] != group:
                raise ValueError(f"class {c!r} is in two super-groups: {group_of[c]!r} and {group!r}")
            group_of[c] = group
    out: dict[str, str] = {}
    for name in task_names:
        if name not in by_name:
            raise ValueError(f"task {name!r} is not in the task set")
        t = by_name[name]
        if t.kind == "classes" and len(t.positives) == 1 and t.positives[0] in group_of:
            out[name] = group_of[t.positives[0]]
    return out


def alignment_scores(labels: np.ndarray, groups: Sequence[str], *, n_permutations: int = 200,
                     random_state: int = 0) -> dict[str, Any]:
    """How well cluster ``labels`` ``(n,)`` match known ``groups`` ``(n,)``, with chance levels.

    ``ari`` (scikit-learn's ``adjusted_rand_score``), ``nmi`` (``normalized_mutual_info_score``,
    arithmetic normalisation) and ``purity`` (each cluster counted as its most frequent group:
    sum of the column maxima of ``contingency_matrix(groups, labels)`` / n). ``chance`` holds,
    per score, the mean and 95th percentile over ``n_permutations`` random permutations of
    the labels (same cluster sizes), drawn from ``numpy.random.default_rng(random_state)``.
    Returns ``{"ari", "nmi", "purity", "chance": {score: {"mean", "p95"}}, "n_tasks"}``.

    The permutation scores use a vectorised computation of the same formulas from the
    contingency tables (scikit-learn's per-call overhead would make 200 permutations take
    seconds); it agrees with scikit-learn to rounding (tested).
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.metrics.cluster import contingency_matrix

    labels = np.asarray(labels)
    groups = np.asarray(list(groups))
    if labels.ndim != 1 or labels.shape != groups.shape:
        raise ValueError(f"labels {labels.shape} and groups {groups.shape} must be 1D of the same length")
    if len(labels) < 2:
        raise ValueError(f"alignment needs at least 2 tasks with a known group, got {len(labels)}")
    if not is_integer(n_permutations) or n_permutations < 1:
        raise ValueError(f"n_permutations={n_permutations!r} must be a positive integer")

    ari = float(adjusted_rand_score(groups, labels))
    nmi = float(normalized_mutual_info_score(groups, labels))
    purity = float(contingency_matrix(groups, labels).max(axis=0).sum() / len(labels))
    g_codes = np.unique(groups, return_inverse=True)[1].ravel()
    l_codes = np.unique(labels, return_inverse=True)[1].ravel()
    rng = np.random.default_rng(random_state)
    perms = np.stack([rng.permutation(l_codes) for _ in range(int(n_permutations))])
    null = _alignment_batch(g_codes, perms)
    chance = {name: {"mean": float(v.mean()), "p95": float(np.percentile(v, 95))} for name, v in null.items()}
    return {"ari": ari, "nmi": nmi, "purity": purity, "chance": chance, "n_tasks": int(len(labels))}


def _alignment_batch(g: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """ARI, NMI (arithmetic) and purity of each row of ``labels`` ``(P, n)`` (codes 0..K-1)
    against ``g`` ``(n,)`` (codes 0..G-1), as scikit-learn defines them, from the ``(P, G, K)``
    contingency tables."""
    p, n = labels.shape
    n_g, n_k = int(g.max()) + 1, int(labels.max()) + 1
    flat = (np.arange(p)[:, None] * (n_g * n_k) + g[None, :] * n_k + labels).ravel()
    c = np.bincount(flat, minlength=p * n_g * n_k).reshape(p, n_g, n_k).astype(np.float64)
    a, b = c.sum(axis=2), c.sum(axis=1)  # (P, G) group sizes, (P, K) cluster sizes

    # ARI through the pair confusion matrix (sklearn.metrics.pair_confusion_matrix)
    ss = (c * c).sum(axis=(1, 2))
    tp = ss - n
    fp = (b * b).sum(axis=1) - ss
    fn = (a * a).sum(axis=1) - ss
    tn = float(n) * n - fp - fn - ss
    denom = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    agree = (fn == 0) & (fp == 0)
    ari = np.where(agree, 1.0, 2.0 * (tp * tn - fn * fp) / np.where(agree, 1.0, denom))

    # NMI = MI / mean(H(groups), H(labels)); 1 when both are a single cluster, 0 when MI = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        outer = a[:, :, None] * b[:, None, :]
        terms = np.where(c > 0, c / n * np.log(n * c / np.where(outer > 0, outer, 1.0)), 0.0)
        mi = np.clip(terms.sum(axis=(1, 2)), 0.0, None)

        def entropy(sizes: np.ndarray) -> np.ndarray:
            q = sizes / n
            return -np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0).sum(axis=1)

        h = (entropy(a) + entropy(b)) / 2.0
        single = ((a > 0).sum(axis=1) == 1) & ((b > 0).sum(axis=1) == 1)
        nmi = np.where(single, 1.0, np.where(mi <= 1e-15, 0.0, mi / np.where(h > 0, h, 1.0)))
    purity = c.max(axis=1).sum(axis=1) / n
    return {"ari": ari, "nmi": nmi, "purity": purity}


def group_membership_table(memberships: np.ndarray, task_names: Sequence[str], groups: Mapping[str, str]):
    """Long table behind the paper's Figures 5 and 8–11 (a ``pandas.DataFrame``).

    One row per task of ``task_names`` that has a group in ``groups`` (task name -> group):
    columns ``group``, ``task``, ``cluster_0`` … ``cluster_{k-1}`` (memberships of row i of
    ``memberships`` ``(n_tasks, k)``) and ``cluster`` (the argmax), sorted by group then task.
    """
    import pandas as pd

    w = np.asarray(memberships, dtype=np.float64)
    names = list(task_names)
    if w.ndim != 2 or w.shape[0] != len(names):
        raise ValueError(f"memberships of shape {w.shape} do not match {len(names)} task names")
    unknown = [t for t in groups if t not in names]
    if unknown:
        raise ValueError(f"task {unknown[0]!r} of groups is not among the task names")
    rows = [i for i, t in enumerate(names) if t in groups]
    table = pd.DataFrame({"group": [groups[names[i]] for i in rows], "task": [names[i] for i in rows]})
    for j in range(w.shape[1]):
        table[f"cluster_{j}"] = w[rows, j]
    table["cluster"] = w[rows].argmax(axis=1) if rows else np.zeros(0, dtype=np.int64)
    return table.sort_values(["group", "task"], kind="stable").reset_index(drop=True)


def match_clusters(memberships: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``memberships`` ``(n_tasks, k)`` with its columns permuted to best match ``reference``
    ``(n_tasks, k)``: the permutation maximising the shared membership ``Σ_j ref[:, j]·w[:, π(j)]``
    (Hungarian matching), so that the same column number means the same group in groupings
    drawn side by side where they agree. Cluster numbers are arbitrary; nothing else changes."""
    from scipy.optimize import linear_sum_assignment

    w = np.asarray(memberships, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if w.shape != ref.shape:
        raise ValueError(f"memberships {w.shape} and reference {ref.shape} must have the same shape")
    _, columns = linear_sum_assignment(ref.T @ w, maximize=True)
    return w[:, columns]


def pairwise_ari(labels: Mapping[Any, Sequence[int]]) -> np.ndarray:
    """Adjusted Rand index between every two groupings ``(m, m)``, in the order of ``labels``
    (method -> cluster label of each task); 1 on the diagonal."""
    from sklearn.metrics import adjusted_rand_score

    rows = [np.asarray(v) for v in labels.values()]
    m = len(rows)
    out = np.ones((m, m))
    for a in range(m):
        for b in range(a + 1, m):
            out[a, b] = out[b, a] = adjusted_rand_score(rows[a], rows[b])
    return out




@dataclass(frozen=True)
class Contingency:
    """Clusters × known groups: ``table[i, j]`` counts the tasks of group ``groups[i]`` in
    cluster ``clusters[j]``. Rows and columns are matched one to one (Hungarian, maximising
    the tasks on the diagonal) and the matched pairs come first, largest first; groups or
    clusters left without a partner follow. ``matched`` = the number of matched pairs."""

    table: np.ndarray
    groups: list[str]
    clusters: list[int]
    matched: int

    @property
    def on_diagonal(self) -> int:
        """Tasks whose cluster is the one matched to their group."""
        return int(np.trace(self.table[:self.matched, :self.matched]))


def contingency(labels: Sequence[int], groups: Sequence[str]) -> Contingency:
    """:class:`Contingency` of cluster ``labels`` ``(n,)`` against known ``groups`` ``(n,)``."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics.cluster import contingency_matrix

    labels, groups = np.asarray(labels), np.asarray(list(groups))
    if labels.ndim != 1 or labels.shape != groups.shape or not len(labels):
        raise ValueError(f"labels {labels.shape} and groups {groups.shape} must be 1D, non-empty, of the same length")
    table = contingency_matrix(groups, labels)
    group_names, cluster_ids = np.unique(groups), np.unique(labels)
    rows, cols = linear_sum_assignment(table, maximize=True)
    pairs = sorted(zip(rows, cols), key=lambda rc: (-table[rc], group_names[rc[0]]))
    row_order = [r for r, _ in pairs] + [r for r in range(len(group_names)) if r not in rows]
    col_order = [c for _, c in pairs] + [c for c in range(len(cluster_ids)) if c not in cols]
    return Contingency(table[np.ix_(row_order, col_order)], [str(group_names[r]) for r in row_order],
                       [int(cluster_ids[c]) for c in col_order], len(pairs))


def run_task_groups(store: "ArtifactStore", run_id: str) -> dict[str, str]:
    """The known group of each one-vs-rest class task of a stored run (task name → group), from
    its dataset's super-groups; ``{}`` when the dataset has none."""
    super_groups = store.read_dataset_info(run_id).get("super_groups")
    if not super_groups:
        return {}
    spec = store.load_spec(run_id)
    return task_groups(spec.task_names, spec.tasks, super_groups)


def run_alignment(store: "ArtifactStore", run_id: str, labels: Sequence[int], seed: int = 0) -> dict[str, Any] | None:
    """:func:`alignment_scores` of cluster ``labels`` (one per task of the run, in its order)
    against the run's known groups; ``None`` when fewer than two groups have tasks."""
    groups = run_task_groups(store, run_id)
    if len(set(groups.values())) < 2:
        return None
    names = list(store.load_spec(run_id).task_names)
    labels = np.asarray(labels)
    return alignment_scores(labels[[names.index(t) for t in groups]], list(groups.values()), random_state=seed)
