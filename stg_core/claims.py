"""The paper's checkable claims, evaluated on one run's grouping: each holds, does not hold,
or is not applicable, with the numbers behind the verdict, the settings it was computed on and
what would make it fail.

Every threshold lives in :data:`THRESHOLDS`; the app only draws what :func:`check_claims`
returns. Nothing in training is arranged so that a claim holds by construction: every head
starts independently, so complements and duplicates must earn their memberships.

1. **Complements** (Section 4.3, Figure 4a): two tasks that are exact complements of each other
   ("Living being" / "Not living being") get the same memberships.
2. **Random task isolated** (Section 4.3, Figure 4a): a task with random labels gets a cluster
   of its own: no other task, flipped ones included, shares its argmax cluster.
3. **Known super-groups** (Section 4.3, Figures 4b–d, 5, 8–11): one-vs-rest class tasks cluster
   along the dataset's known super-groups (CIFAR-10 vehicles / animals, CIFAR-100 superclasses,
   Fashion-MNIST tops / footwear) — better than chance, at k = the number of known groups.
4. **STG-MTL beats MTL and STL** (Section 4.4, Figures 6–7): the cluster-specialised models'
   mean test F1 at the last epoch is at least that of plain MTL and of STL, in an evaluation of
   the very grouping on display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from stg_core.clustering import alignment_scores, cluster_tasks, task_groups
from stg_core.tasks import Task

if TYPE_CHECKING:
    from stg_core.store import ArtifactStore

HOLDS, FAILS, NOT_APPLICABLE = "holds", "does not hold", "not applicable"

THRESHOLDS: dict[str, float] = {
    "complement_l1": 0.05,     # max L1 distance between the membership rows of two complements
    "ari_above_chance": 0.0,   # ARI must exceed the 95th percentile of chance by more than this
    "f1_margin": 0.0,          # STG-MTL mean test F1 minus the best of MTL / STL must be >= this
    "barely_learned": 0.1,     # a task whose mean confidence is within this of a random task's is "barely learned"
}

#: What would make each claim "does not hold", one line each (shown beside the verdicts).
HOW_IT_COULD_FAIL: dict[str, str] = {
    "complements": f"the membership rows of a class-set task and its exact complement differ by more than "
                   f"L1 {THRESHOLDS['complement_l1']} (their heads start independently, so nothing forces them together; "
                   "docs/claims.md lists how often it holds on the demos)",
    "random_isolated": "any other task — class, attribute or flipped — has its largest membership in the random "
                       "task's cluster",
    "super_groups": "at k = the number of known groups, the clusters of the one-vs-rest class tasks agree with the "
                    "known groups no better than the 95th percentile of random labellings (ARI)",
    "f1": "in an evaluation of this grouping, STG-MTL's mean test F1 at the last epoch is below MTL's or STL's",
}


@dataclass(frozen=True)
class Claim:
    """One claim's verdict on a run: ``verdict`` is :data:`HOLDS`, :data:`FAILS` or
    :data:`NOT_APPLICABLE`; ``detail`` says why, with the numbers; ``settings`` what it was
    computed on; ``how_it_could_fail`` the condition for "does not hold"; ``values`` the numbers."""

    key: str
    title: str
    source: str
    verdict: str
    detail: str
    settings: str = ""
    how_it_could_fail: str = ""
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupingSettings:
    """The grouping a claim is checked on: k, F, representation, scaling, the data-map epochs
    (sorted, all of them spelled out) and the k-means seed."""

    k: int
    fuzziness: float
    representation: str = "raw"
    scaling: str = "none"
    epochs: tuple[int, ...] = ()
    seed: int = 0

    def describe(self, k: int | None = None) -> str:
        epochs = _describe_epochs(self.epochs)
        scaling = "" if self.scaling == "none" else f", {self.scaling} scaling"
        return (f"k = {self.k if k is None else k}, F = {self.fuzziness:.2f}, {self.representation} data maps"
                f"{scaling}, {epochs}")


def _describe_epochs(epochs: Sequence[int]) -> str:
    epochs = sorted(epochs)
    if not epochs:
        return "no epochs"
    if epochs == list(range(1, epochs[-1] + 1)):
        return f"data-map epochs 1–{epochs[-1]}" if len(epochs) > 1 else "data-map epoch 1"
    return f"data-map epochs {', '.join(map(str, epochs))}"


def _claim(key: str, title: str, source: str, verdict: str, detail: str, settings: str = "",
           values: dict[str, Any] | None = None) -> Claim:
    return Claim(key, title, source, verdict, detail, settings, HOW_IT_COULD_FAIL[key], values or {})


def complement_pairs(tasks: Sequence[Task], class_names: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs of class-set tasks whose positive classes are exact complements in ``class_names``."""
    everything = frozenset(class_names)
    sets = [(t.name, frozenset(t.positives)) for t in tasks if t.kind == "classes"]
    return [(a, b) for i, (a, pa) in enumerate(sets) for b, pb in sets[i + 1:]
            if pa | pb == everything and not pa & pb]


def check_complements(memberships: np.ndarray, task_names: Sequence[str], tasks: Sequence[Task],
                      class_names: Sequence[str], settings: str = "") -> Claim:
    """``memberships`` ``(n_tasks, k)`` rows in the order of ``task_names``."""
    title, source = "Exact complements get the same memberships", "Section 4.3, Figure 4a"
    pairs = complement_pairs(tasks, class_names)
    if not pairs:
        return _claim("complements", title, source, NOT_APPLICABLE, "no two tasks are exact complements", settings)
    index = {n: i for i, n in enumerate(task_names)}
    distances = {f"{a} / {b}": float(np.abs(memberships[index[a]] - memberships[index[b]]).sum()) for a, b in pairs}
    worst = max(distances, key=distances.get)
    ok = distances[worst] <= THRESHOLDS["complement_l1"]
    return _claim("complements", title, source, HOLDS if ok else FAILS,
                  f"largest L1 distance between complement memberships: {distances[worst]:.3f} ({worst}); "
                  f"threshold {THRESHOLDS['complement_l1']}", settings, {"l1": distances})


def check_random_isolated(memberships: np.ndarray, task_names: Sequence[str], tasks: Sequence[Task],
                          mean_confidence: Mapping[str, float] | None = None, settings: str = "") -> Claim:
    """Every task that is not random counts as real, flipped ones included. ``mean_confidence``
    (task name → mean confidence over its training samples, optional) lets the detail say when
    the only company of a random task is a task the model has barely learned."""
    title, source = "A random-label task gets a cluster of its own", "Section 4.3, Figure 4a"
    kinds = {t.name: t.kind for t in tasks}
    labels = memberships.argmax(1)
    random_tasks = [i for i, n in enumerate(task_names) if kinds[n] == "random"]
    if not random_tasks:
        return _claim("random_isolated", title, source, NOT_APPLICABLE, "the task set has no random task", settings)
    sharing = {task_names[r]: [task_names[i] for i in range(len(task_names)) if i != r and labels[i] == labels[r]]
               for r in random_tasks}
    real_company = {name: [o for o in others if kinds[o] != "random"] for name, others in sharing.items()}
    ok = not any(real_company.values())
    parts = []
    for r in random_tasks:
        name, others = task_names[r], sharing[task_names[r]]
        if not others:
            parts.append(f"{name}: cluster {labels[r]}, alone")
            continue
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        text = f"{name}: cluster {labels[r]}, shared with {shown}"
        barely = _barely_learned(name, real_company[name], mean_confidence)
        if barely:
            own = mean_confidence[name]
            text += (f" — {' and '.join(barely)} {'is' if len(barely) == 1 else 'are'} barely learned (mean "
                     f"confidence {', '.join(f'{mean_confidence[b]:.2f}' for b in barely)} against {name}'s "
                     f"{own:.2f}): the claim needs every real task learned, so train longer")
        parts.append(text)
    return _claim("random_isolated", title, source, HOLDS if ok else FAILS, "; ".join(parts), settings,
                  {"sharing": sharing, "labels": labels.tolist()})


def _barely_learned(random_task: str, company: Sequence[str], mean_confidence: Mapping[str, float] | None) -> list[str]:
    """``company`` when every one of them has a mean confidence within the threshold of the
    random task's (else none: the note is for a random task whose only company is unlearned)."""
    if not company or not mean_confidence or random_task not in mean_confidence:
        return []
    own = mean_confidence[random_task]
    close = [t for t in company if t in mean_confidence and mean_confidence[t] - own <= THRESHOLDS["barely_learned"]]
    return close if len(close) == len(company) else []


def check_super_groups(reduced: np.ndarray, task_names: Sequence[str], tasks: Sequence[Task],
                       super_groups: Mapping[str, Sequence[str]] | None, *, fuzziness: float = 2.0,
                       random_state: int = 0, n_features: int | None = None,
                       grouping: GroupingSettings | None = None) -> Claim:
    """Clusters the tasks at k = the number of known groups (``reduced``: the run's reduced
    task vectors ``(n_tasks, r)``, see :func:`~stg_core.run_vectors.load_reduced_task_vectors`)
    and compares the one-vs-rest class tasks' clusters with their groups."""
    title, source = "Class tasks cluster along the known super-groups", "Section 4.3, Figures 4b–d, 5, 8–11"
    groups = task_groups(task_names, tasks, super_groups) if super_groups else {}
    n_groups = len(set(groups.values()))
    if n_groups < 2:
        return _claim("super_groups", title, source, NOT_APPLICABLE,
                      "the dataset has no known super-groups" if not super_groups else
                      "fewer than two known groups among the one-vs-rest class tasks")
    settings = grouping.describe(k=n_groups) + " (k = the number of known groups)" if grouping else ""
    result = cluster_tasks(reduced, n_groups, fuzziness, random_state=random_state, n_features=n_features)
    members = [task_names.index(t) for t in groups]
    scores = alignment_scores(result.labels[members], list(groups.values()))
    ari, p95 = scores["ari"], scores["chance"]["ari"]["p95"]
    ok = ari > p95 + THRESHOLDS["ari_above_chance"]
    return _claim("super_groups", title, source, HOLDS if ok else FAILS,
                  f"at k = {n_groups}: ARI {ari:.3f} vs chance {scores['chance']['ari']['mean']:.3f} "
                  f"(95th percentile {p95:.3f}) over {len(members)} tasks", settings, {"k": n_groups, **scores})


def evaluation_matches(evaluation_spec: Mapping[str, Any], grouping: GroupingSettings,
                       recorded_epochs: Sequence[int]) -> bool:
    """Does an evaluation (its ``spec.json`` as a dict) evaluate the STG-MTL grouping
    ``grouping``: same k, F, representation, scaling, data-map epochs and k-means seed, and
    clustered from the data maps (not given memberships)?"""
    epochs = evaluation_spec.get("datamap_epochs")
    epochs = tuple(sorted(recorded_epochs)) if epochs is None else tuple(sorted(int(e) for e in epochs))
    return (evaluation_spec.get("memberships") is None
            and evaluation_spec.get("n_clusters") == grouping.k
            and abs(float(evaluation_spec.get("fuzziness", 0.0)) - grouping.fuzziness) < 1e-9
            and evaluation_spec.get("representation", "raw") == grouping.representation
            and evaluation_spec.get("scaling", "none") == grouping.scaling
            and evaluation_spec.get("seed", 0) == grouping.seed
            and epochs == tuple(sorted(grouping.epochs)))


def describe_evaluation(evaluation_spec: Mapping[str, Any], recorded_epochs: Sequence[int]) -> str:
    """One line naming an evaluation's grouping settings, e.g. for "the newest evaluation used …"."""
    epochs = evaluation_spec.get("datamap_epochs")
    settings = GroupingSettings(int(evaluation_spec.get("n_clusters", 0)), float(evaluation_spec.get("fuzziness", 2.0)),
                                evaluation_spec.get("representation", "raw"), evaluation_spec.get("scaling", "none"),
                                tuple(sorted(recorded_epochs if epochs is None else epochs)),
                                int(evaluation_spec.get("seed", 0)))
    given = " (given memberships)" if evaluation_spec.get("memberships") is not None else ""
    return settings.describe() + given


def check_f1(evaluation: Mapping[str, Any] | None, grouping: GroupingSettings | None = None,
             recorded_epochs: Sequence[int] = (), newest: Mapping[str, Any] | None = None) -> Claim:
    """``evaluation``: the results of :func:`~stg_core.evaluation.run_evaluation` (or None).

    With ``grouping``, the evaluation counts only when its spec evaluates that very grouping
    (:func:`evaluation_matches`); otherwise the claim is not applicable and, given ``newest``
    (the newest finished evaluation's spec), the detail names the settings that one used."""
    title, source = "STG-MTL's test F1 beats MTL's and STL's", "Section 4.4, Figures 6–7"
    settings = grouping.describe() if grouping else ""
    if evaluation is not None and grouping is not None and not evaluation_matches(evaluation.get("spec", {}), grouping,
                                                                                  recorded_epochs):
        newest, evaluation = evaluation.get("spec", {}), None
    methods = (evaluation or {}).get("methods", {})
    if not {"stg", "mtl", "stl"} <= set(methods):
        detail = "needs an evaluation of this grouping with STG-MTL, MTL and STL"
        if newest is not None:
            detail += f"; the newest evaluation used {describe_evaluation(newest, recorded_epochs)}"
        return _claim("f1", title, source, NOT_APPLICABLE, detail, settings)
    final = {m: float(methods[m]["mean_f1"]["test"][-1]) for m in ("stg", "mtl", "stl")}
    margin = final["stg"] - max(final["mtl"], final["stl"])
    ok = margin >= THRESHOLDS["f1_margin"]
    epochs = len(methods["stg"]["mean_f1"]["test"])
    return _claim("f1", title, source, HOLDS if ok else FAILS,
                  f"mean test F1 at the last epoch: STG-MTL {final['stg']:.3f}, MTL {final['mtl']:.3f}, "
                  f"STL {final['stl']:.3f}",
                  f"evaluation {evaluation.get('evaluation_id', '?')}: {settings}, {epochs} training epochs" if settings
                  else "", {"final_test_f1": final, "margin": margin})


def check_claims(memberships: np.ndarray, reduced: np.ndarray, task_names: Sequence[str], tasks: Sequence[Task],
                 class_names: Sequence[str], super_groups: Mapping[str, Sequence[str]] | None = None, *,
                 fuzziness: float = 2.0, evaluation: Mapping[str, Any] | None = None, random_state: int = 0,
                 n_features: int | None = None, grouping: GroupingSettings | None = None,
                 mean_confidence: Mapping[str, float] | None = None, recorded_epochs: Sequence[int] = (),
                 newest_evaluation: Mapping[str, Any] | None = None,
                 super_groups_claim: Claim | None = None) -> list[Claim]:
    """Every claim on one run: ``memberships`` ``(n_tasks, k)`` of the grouping being looked at
    (described by ``grouping``), ``reduced`` ``(n_tasks, r)`` its reduced task vectors (for the
    super-group check's own k); see the ``check_*`` functions for the other arguments.
    ``super_groups_claim``: that check's result when the caller has it already (it depends on
    the representation, the epochs and F, not on k)."""
    memberships = np.asarray(memberships, dtype=np.float64)
    if memberships.ndim != 2 or memberships.shape[0] != len(task_names):
        raise ValueError(f"memberships {memberships.shape} do not match {len(task_names)} tasks")
    settings = grouping.describe() if grouping else ""
    return [check_complements(memberships, task_names, tasks, class_names, settings),
            check_random_isolated(memberships, task_names, tasks, mean_confidence, settings),
            super_groups_claim or check_super_groups(reduced, list(task_names), tasks, super_groups,
                                                     fuzziness=fuzziness, random_state=random_state,
                                                     n_features=n_features, grouping=grouping),
            check_f1(evaluation, grouping, recorded_epochs, newest_evaluation)]


def run_claims(store: "ArtifactStore", run_id: str, grouping: GroupingSettings, memberships: np.ndarray,
               reduced: np.ndarray, n_features: int, super_groups_claim: Claim | None = None) -> list[Claim]:
    """Every claim on a stored run for the grouping on display (``memberships`` ``(n_tasks, k)``
    with the settings ``grouping``; ``reduced`` ``(n_tasks, r)`` and ``n_features`` from
    :func:`~stg_core.run_vectors.load_reduced_task_vectors` with the same settings). The F1
    claim uses the newest finished evaluation of exactly this grouping, if any."""
    spec = store.load_spec(run_id)
    info = store.read_dataset_info(run_id)
    recorded = store.recorded_epochs(run_id)
    specs = {}  # finished evaluations comparing STG-MTL, MTL and STL, newest first: their specs only
    for eid in store.finished_jobs(run_id, "evaluations"):
        evaluation_spec = store.read_job_file(run_id, "evaluations", eid, "spec") or {}
        if {"stg", "mtl", "stl"} <= set(evaluation_spec.get("methods", ())):
            specs[eid] = evaluation_spec
    match = next((eid for eid, s in specs.items() if evaluation_matches(s, grouping, recorded)), None)
    matching = store.read_job_file(run_id, "evaluations", match, "results") if match else None
    newest = next(iter(specs.values())) if specs and matching is None else None
    last = max(grouping.epochs) if grouping.epochs else None
    mean_confidence = None
    if last is not None and last in store.statistics_epochs(run_id):
        mean_confidence = dict(zip(spec.task_names, store.load_summary(run_id, last)[0].tolist()))
    return check_claims(memberships, reduced, spec.task_names, spec.tasks, info.get("class_names", []),
                        info.get("super_groups"), fuzziness=grouping.fuzziness, evaluation=matching,
                        random_state=grouping.seed, n_features=n_features, grouping=grouping,
                        mean_confidence=mean_confidence, recorded_epochs=recorded, newest_evaluation=newest,
                        super_groups_claim=super_groups_claim)


def run_super_groups_claim(store: "ArtifactStore", run_id: str, grouping: GroupingSettings, reduced: np.ndarray,
                           n_features: int) -> Claim:
    """The known super-groups claim on a stored run (:func:`check_super_groups`): it clusters
    at its own k, so one result serves every k of the grouping on display."""
    spec = store.load_spec(run_id)
    return check_super_groups(reduced, list(spec.task_names), spec.tasks, store.read_dataset_info(run_id).get(
        "super_groups"), fuzziness=grouping.fuzziness, random_state=grouping.seed, n_features=n_features,
        grouping=grouping)
