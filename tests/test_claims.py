"""The paper's claims checked on a run: holds, does not hold, not applicable."""

import numpy as np
import pytest

from stg_core import claims
from stg_core.claims import FAILS, HOLDS, NOT_APPLICABLE, check_claims
from stg_core.clustering import cluster_tasks
from stg_core.run_vectors import load_reduced_task_vectors
from stg_core.tasks import Task, get_preset

CLASSES = tuple(str(d) for d in range(10))
G2 = get_preset("digits-g2").tasks
G2_NAMES = [t.name for t in G2]


def _memberships(rows: dict[str, list[float]], names=G2_NAMES, default=(0.5, 0.5)) -> np.ndarray:
    return np.array([rows.get(n, default) for n in names], dtype=float)


def test_complements_hold_fail_and_not_applicable():
    m = _memberships({"Round": [0.9, 0.1], "Not round": [0.88, 0.12]})
    claim = claims.check_complements(m, G2_NAMES, G2, CLASSES)
    assert claim.verdict == HOLDS and claim.values["l1"] == {"Round / Not round": pytest.approx(0.04)}
    m = _memberships({"Round": [0.9, 0.1], "Not round": [0.1, 0.9]})
    assert claims.check_complements(m, G2_NAMES, G2, CLASSES).verdict == FAILS
    g1 = get_preset("digits-g1").tasks
    assert claims.check_complements(np.full((10, 2), 0.5), [t.name for t in g1], g1, CLASSES).verdict == NOT_APPLICABLE


def test_random_task_isolation():
    alone = _memberships({"Random": [0.1, 0.9]}, default=(0.9, 0.1))
    claim = claims.check_random_isolated(alone, G2_NAMES, G2)
    assert claim.verdict == HOLDS and claim.detail == "Random: cluster 1, alone"
    # the flipped task is a real task: sharing the random task's cluster with it fails, and is named
    with_flip = _memberships({"Random": [0.1, 0.9], "Downside": [0.2, 0.8]}, default=(0.9, 0.1))
    claim = claims.check_random_isolated(with_flip, G2_NAMES, G2)
    assert claim.verdict == FAILS and claim.detail == "Random: cluster 1, shared with Downside"
    assert "alone" not in claim.detail
    shared = _memberships({"Random": [0.1, 0.9], "3": [0.2, 0.8], "Odd": [0.3, 0.7]}, default=(0.9, 0.1))
    claim = claims.check_random_isolated(shared, G2_NAMES, G2)
    assert claim.verdict == FAILS and claim.detail == "Random: cluster 1, shared with 3, Odd"
    crowd = _memberships({n: [0.1, 0.9] for n in G2_NAMES})
    claim = claims.check_random_isolated(crowd, G2_NAMES, G2)
    assert claim.verdict == FAILS and claim.detail.endswith("and 9 more") and "alone" not in claim.detail
    g1 = get_preset("digits-g1").tasks
    assert claims.check_random_isolated(np.full((10, 2), 0.5), CLASSES, g1).verdict == NOT_APPLICABLE


def test_random_task_claim_names_a_barely_learned_companion():
    """When the random task's only company is a task the model has barely learned, the detail
    says so with both mean confidences; a learned companion gets no such excuse."""
    with_flip = _memberships({"Random": [0.1, 0.9], "Downside": [0.2, 0.8]}, default=(0.9, 0.1))
    unlearned = {n: 0.95 for n in G2_NAMES} | {"Random": 0.51, "Downside": 0.56}
    claim = claims.check_random_isolated(with_flip, G2_NAMES, G2, unlearned)
    assert claim.verdict == FAILS
    assert claim.detail == ("Random: cluster 1, shared with Downside — Downside is barely learned (mean confidence "
                            "0.56 against Random's 0.51): the claim needs every real task learned, so train longer")
    learned = unlearned | {"Downside": 0.80}
    claim = claims.check_random_isolated(with_flip, G2_NAMES, G2, learned)
    assert claim.detail == "Random: cluster 1, shared with Downside"
    # a learned class task beside the unlearned one: no excuse either
    both = _memberships({"Random": [0.1, 0.9], "Downside": [0.2, 0.8], "3": [0.3, 0.7]}, default=(0.9, 0.1))
    assert "barely" not in claims.check_random_isolated(both, G2_NAMES, G2, unlearned).detail


def test_two_random_tasks_may_share_a_cluster_without_real_tasks():
    tasks = G2 + (Task("Noise", "random", seed=7),)
    names = [t.name for t in tasks]
    m = _memberships({"Random": [0.1, 0.9], "Noise": [0.2, 0.8]}, names, default=(0.9, 0.1))
    claim = claims.check_random_isolated(m, names, tasks)
    assert claim.verdict == HOLDS and claim.detail == "Random: cluster 1, shared with Noise; Noise: cluster 1, shared with Random"


def test_every_claim_says_what_it_was_computed_on_and_how_it_could_fail():
    grouping = claims.GroupingSettings(4, 2.0, "pattern", epochs=(1, 2, 3))
    m = _memberships({"Random": [0.1, 0.9]}, default=(0.9, 0.1))
    groups = {"low": ("0", "1", "2", "3", "4"), "high": ("5", "6", "7", "8", "9")}
    reduced = np.random.default_rng(0).normal(size=(len(G2), 3))
    verdicts = check_claims(m, reduced, G2_NAMES, G2, CLASSES, groups, grouping=grouping)
    assert [c.key for c in verdicts] == ["complements", "random_isolated", "super_groups", "f1"]
    for c in verdicts:
        assert c.how_it_could_fail == claims.HOW_IT_COULD_FAIL[c.key] and c.how_it_could_fail
    settings = {c.key: c.settings for c in verdicts}
    assert settings["complements"] == settings["random_isolated"] == settings["f1"] == \
        "k = 4, F = 2.00, pattern data maps, data-map epochs 1–3"
    assert settings["super_groups"].startswith("k = 2, F = 2.00, pattern data maps")  # its own k
    assert "0.05" in claims.HOW_IT_COULD_FAIL["complements"]


def test_super_groups_hold_on_planted_structure_and_fail_on_noise():
    groups = {"low": ("0", "1", "2", "3", "4"), "high": ("5", "6", "7", "8", "9")}
    tasks = tuple(Task(c, "classes", (c,)) for c in CLASSES)
    rng = np.random.default_rng(0)
    planted = np.repeat([[5.0, 0.0], [0.0, 5.0]], 5, axis=0) + rng.normal(0, 0.3, (10, 2))
    claim = claims.check_super_groups(planted, list(CLASSES), tasks, groups)
    assert claim.verdict == HOLDS and claim.values["k"] == 2 and claim.values["ari"] == pytest.approx(1.0)
    shuffled = planted[[0, 5, 1, 6, 2, 7, 3, 8, 4, 9]]  # clusters now cut across the groups
    assert claims.check_super_groups(shuffled, list(CLASSES), tasks, groups).verdict == FAILS
    assert claims.check_super_groups(planted, list(CLASSES), tasks, None).verdict == NOT_APPLICABLE


def _evaluation(k=3, fuzziness=2.0, representation="raw", datamap_epochs=None, f1=(0.8, 0.7, 0.75)):
    spec = {"n_clusters": k, "fuzziness": fuzziness, "representation": representation, "scaling": "none",
            "datamap_epochs": datamap_epochs, "seed": 0, "memberships": None}
    return {"evaluation_id": "abcdef012345", "spec": spec,
            "methods": {m: {"mean_f1": {"test": [0.5, v]}} for m, v in zip(("stg", "mtl", "stl"), f1)}}


def test_f1_claim_needs_an_evaluation():
    assert claims.check_f1(None).verdict == NOT_APPLICABLE
    results = _evaluation()
    claim = claims.check_f1(results)
    assert claim.verdict == HOLDS and "STG-MTL 0.800" in claim.detail
    results["methods"]["stl"]["mean_f1"]["test"][-1] = 0.9
    assert claims.check_f1(results).verdict == FAILS
    del results["methods"]["stl"]
    assert claims.check_f1(results).verdict == NOT_APPLICABLE


def test_f1_claim_only_reads_an_evaluation_of_the_grouping_on_display():
    recorded = [1, 2, 3, 4]
    grouping = claims.GroupingSettings(3, 2.0, "raw", epochs=tuple(recorded))
    claim = claims.check_f1(_evaluation(), grouping, recorded)
    assert claim.verdict == HOLDS and claim.settings.startswith("evaluation abcdef012345: k = 3, F = 2.00")
    assert claims.check_f1(_evaluation(datamap_epochs=[1, 2, 3, 4]), grouping, recorded).verdict == HOLDS
    for other in (_evaluation(k=4), _evaluation(fuzziness=1.5), _evaluation(representation="pattern"),
                  _evaluation(datamap_epochs=[2, 4])):
        claim = claims.check_f1(other, grouping, recorded)
        assert claim.verdict == NOT_APPLICABLE
        assert "the newest evaluation used k = " in claim.detail
    claim = claims.check_f1(_evaluation(k=4), grouping, recorded)
    assert claim.detail.endswith("the newest evaluation used k = 4, F = 2.00, raw data maps, data-map epochs 1–4")
    given = _evaluation()
    given["spec"]["memberships"] = [[1.0, 0.0, 0.0]] * 15
    assert claims.check_f1(given, grouping, recorded).verdict == NOT_APPLICABLE  # another grouping's memberships


def test_claims_on_a_recorded_digits_run(tmp_path):
    """On a real (short) digits-g2 run the complements hold, super-groups and F1 do not apply."""
    from stg_core.config import TrainConfig, spec_from_preset
    from stg_core.store import ArtifactStore
    from stg_core.training import train_run

    store = ArtifactStore(tmp_path)
    spec = spec_from_preset("digits-g2", subset=500, train=TrainConfig(epochs=4))
    run_id = train_run(spec, store)
    reduced, n_features = load_reduced_task_vectors(store, run_id)
    result = cluster_tasks(reduced, 3, 2.0, random_state=0, n_features=n_features)
    verdicts = {c.key: c for c in check_claims(result.memberships, reduced, spec.task_names, spec.tasks, CLASSES,
                                               None, n_features=n_features)}
    # computed, not skipped (heads start independently: the complements must earn their memberships)
    assert verdicts["complements"].verdict in (HOLDS, FAILS) and "Round / Not round" in verdicts["complements"].detail
    assert verdicts["random_isolated"].verdict in (HOLDS, FAILS)
    assert verdicts["super_groups"].verdict == NOT_APPLICABLE
    assert verdicts["f1"].verdict == NOT_APPLICABLE
    assert all(c.source.startswith("Section") for c in verdicts.values())
