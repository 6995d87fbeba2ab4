"""The paper's checkable claims, evaluated on one run's grouping: each holds, does not hold,
or is not applicable, with the numbers behind the verdict.

Every threshold lives in :data:`THRESHOLDS`; the app only draws what :func:`check_claims`
returns.

1. **Complements** (Section 4.3, Figure 4a): two tasks that are exact complements of each other
   ("Living being" / "Not living being") get the same memberships.
2. **Random task isolated** (Section 4.3, Figure 4a): a task with random labels ends up in a
   cluster without any real (class or attribute) task.
3. **Known super-groups** (Section 4.3, Figures 4b–d, 5, 8–11): one-vs-rest class tasks cluster
   along the dataset's known super-groups (CIFAR-10 vehicles / animals, CIFAR-100 superclasses,
   Fashion-MNIST tops / footwear) — better than chance, at k = the number of known groups.
4. **STG-MTL beats MTL and STL** (Section 4.4, Figures 6–7): the cluster-specialised models'
   mean test F1 at the last epoch is at least that of plain MTL and of STL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stg_core.clustering import alignment_scores, cluster_tasks, task_groups
from stg_core.tasks import Task

HOLDS, FAILS, NOT_APPLICABLE = "holds", "does not hold", "not applicable"

THRESHOLDS: dict[str, float] = {
    "complement_l1": 0.05,    # max L1 distance between the membership rows of two complements
    "ari_above_chance": 0.0,  # ARI must exceed the 95th percentile of chance by more than this
    "f1_margin": 0.0,         # STG-MTL mean test F1 minus the best of MTL / STL must be >= this
}


@dataclass(frozen=True)
class Claim:
    """One claim's verdict on a run: ``verdict`` is :data:`HOLDS`, :data:`FAILS` or
    :data:`NOT_APPLICABLE`; ``detail`` says why, with the numbers; ``values`` holds them."""

    key: str
    title: str
    source: str
    verdict: str
    detail: str
    values: dict[str, Any] = field(default_factory=dict)


def complement_pairs(tasks: Sequence[Task], class_names: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs of class-set tasks whose positive classes are exact complements in ``class_names``."""
    everything = frozenset(class_names)
    sets = [(t.name, frozenset(t.positives)) for t in tasks if t.kind == "classes"]
    return [(a, b) for i, (a, pa) in enumerate(sets) for b, pb in sets[i + 1:]
            if pa | pb == everything and not pa & pb]


def check_complements(memberships: np.ndarray, task_names: Sequence[str], tasks: Sequence[Task],
                      class_names: Sequence[str]) -> Claim:
    """``memberships`` ``(n_tasks, k)`` rows in the order of ``task_names``."""
    title, source = "Exact complements get the same memberships", "Section 4.3, Figure 4a"
    pairs = complement_pairs(tasks, class_names)
    if not pairs:
        return Claim("complements", title, source, NOT_APPLICABLE, "no two tasks are exact complements")
    index = {n: i for i, n in enumerate(task_names)}
    distances = {f"{a} / {b}": float(np.abs(memberships[index[a]] - memberships[index[b]]).sum()) for a, b in pairs}
    worst = max(distances, key=distances.get)
    ok = distances[worst] <= THRESHOLDS["complement_l1"]
    return Claim("complements", title, source, HOLDS if ok else FAILS,
                 f"largest L1 distance between complement memberships: {distances[worst]:.3f} ({worst}); "
                 f"threshold {THRESHOLDS['complement_l1']}", {"l1": distances})


def check_random_isolated(memberships: np.ndarray, task_names: Sequence[str], tasks: Sequence[Task]) -> Claim:
    title, source = "A random-label task gets a cluster without real tasks", "Section 4.3, Figure 4a"
    kinds = {t.name: t.kind for t in tasks}
    labels = memberships.argmax(1)
    random_tasks = [i for i, n in enumerate(task_names) if kinds[n] == "random"]
    if not random_tasks:
        return Claim("random_isolated", title, source, NOT_APPLICABLE, "the task set has no random task")
    real = [i for i, n in enumerate(task_names) if kinds[n] in ("classes", "attribute")]
    sharing = {task_names[r]: [task_names[i] for i in real if labels[i] == labels[r]] for r in random_tasks}
    ok = not any(sharing.values())
    detail = "; ".join(f"{name}: cluster {labels[task_names.index(name)]}, "
                       + (f"shared with {', '.join(others[:5])}{'…' if len(others) > 5 else ''}" if others else "alone")
                       for name, others in sharing.items())
    return Claim("random_isolated", title, source, HOLDS if ok else FAILS, detail,
                 {"sharing": sharing, "labels": labels.tolist()})


def check_super_groups(reduced: np.ndarray, task_names: Sequence[str], tasks: Sequence[Task],
                       super_groups: Mapping[str, Sequence[str]] | None, *, fuzziness: float = 2.0,
                       random_state: int = 0, n_features: int | None = None) -> Claim:
    """Clusters the tasks at k = the number of known groups (``reduced``: the run's reduced
    task vectors ``(n_tasks, r)``, see :func:`~stg_core.clustering.load_reduced_task_vectors`)
    and compares the one-vs-rest class tasks' clusters with their groups."""
    title, source = "Class tasks cluster along the known super-groups", "Section 4.3, Figures 4b–d, 5, 8–11"
    groups = task_groups(task_names, tasks, super_groups) if super_groups else {}
    n_groups = len(set(groups.values()))
    if n_groups < 2:
        return Claim("super_groups", title, source, NOT_APPLICABLE,
                     "the dataset has no known super-groups" if not super_groups else
                     "fewer than two known groups among the one-vs-rest class tasks")
    result = cluster_tasks(reduced, n_groups, fuzziness, random_state=random_state, n_features=n_features)
    members = [task_names.index(t) for t in groups]
    scores = alignment_scores(result.labels[members], list(groups.values()))
    ari, p95 = scores["ari"], scores["chance"]["ari"]["p95"]
    ok = ari > p95 + THRESHOLDS["ari_above_chance"]
    return Claim("super_groups", title, source, HOLDS if ok else FAILS,
                 f"at k = {n_groups}: ARI {ari:.3f} vs chance {scores['chance']['ari']['mean']:.3f} "
                 f"(95th percentile {p95:.3f}) over {len(members)} tasks", {"k": n_groups, **scores})


def check_f1(evaluation: Mapping[str, Any] | None) -> Claim:
    """``evaluation``: the results of :func:`~stg_core.evaluation.run_evaluation` (or None)."""
    title, source = "STG-MTL's test F1 beats MTL's and STL's", "Section 4.4, Figures 6–7"
    methods = (evaluation or {}).get("methods", {})
    if not {"stg", "mtl", "stl"} <= set(methods):
        return Claim("f1", title, source, NOT_APPLICABLE, "needs an evaluation with STG-MTL, MTL and STL")
    final = {m: float(methods[m]["mean_f1"]["test"][-1]) for m in ("stg", "mtl", "stl")}
    margin = final["stg"] - max(final["mtl"], final["stl"])
    ok = margin >= THRESHOLDS["f1_margin"]
    return Claim("f1", title, source, HOLDS if ok else FAILS,
                 f"mean test F1 at the last epoch: STG-MTL {final['stg']:.3f}, MTL {final['mtl']:.3f}, "
                 f"STL {final['stl']:.3f}", {"final_test_f1": final, "margin": margin})


def check_claims(memberships: np.ndarray, reduced: np.ndarray, task_names: Sequence[str], tasks: Sequence[Task],
                 class_names: Sequence[str], super_groups: Mapping[str, Sequence[str]] | None = None, *,
                 fuzziness: float = 2.0, evaluation: Mapping[str, Any] | None = None, random_state: int = 0,
                 n_features: int | None = None) -> list[Claim]:
    """Every claim on one run: ``memberships`` ``(n_tasks, k)`` of the grouping being looked at,
    ``reduced`` ``(n_tasks, r)`` its reduced task vectors (for the super-group check's own k)."""
    memberships = np.asarray(memberships, dtype=np.float64)
    if memberships.ndim != 2 or memberships.shape[0] != len(task_names):
        raise ValueError(f"memberships {memberships.shape} do not match {len(task_names)} tasks")
    return [check_complements(memberships, task_names, tasks, class_names),
            check_random_isolated(memberships, task_names, tasks),
            check_super_groups(reduced, list(task_names), tasks, super_groups, fuzziness=fuzziness,
                               random_state=random_state, n_features=n_features),
            check_f1(evaluation)]
