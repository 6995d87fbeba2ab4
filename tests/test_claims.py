"""The paper's claims checked on a run: holds, does not hold, not applicable."""

import numpy as np
import pytest

from stg_core import claims
from stg_core.claims import FAILS, HOLDS, NOT_APPLICABLE, check_claims
from stg_core.clustering import cluster_tasks, load_reduced_task_vectors
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
    assert claim.verdict == HOLDS and "alone" in claim.detail
    # the flipped task is not a real task: sharing the random task's cluster with it is allowed
    with_flip = _memberships({"Random": [0.1, 0.9], "Downside": [0.2, 0.8]}, default=(0.9, 0.1))
    assert claims.check_random_isolated(with_flip, G2_NAMES, G2).verdict == HOLDS
    shared = _memberships({"Random": [0.1, 0.9], "3": [0.2, 0.8]}, default=(0.9, 0.1))
    claim = claims.check_random_isolated(shared, G2_NAMES, G2)
    assert claim.verdict == FAILS and "shared with 3" in claim.detail
    g1 = get_preset("digits-g1").tasks
    assert claims.check_random_isolated(np.full((10, 2), 0.5), CLASSES, g1).verdict == NOT_APPLICABLE


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


def test_f1_claim_needs_an_evaluation():
    assert claims.check_f1(None).verdict == NOT_APPLICABLE
    results = {"methods": {m: {"mean_f1": {"test": [0.5, f1]}} for m, f1 in (("stg", 0.8), ("mtl", 0.7), ("stl", 0.75))}}
    claim = claims.check_f1(results)
    assert claim.verdict == HOLDS and "STG-MTL 0.800" in claim.detail
    results["methods"]["stl"]["mean_f1"]["test"][-1] = 0.9
    assert claims.check_f1(results).verdict == FAILS
    del results["methods"]["stl"]
    assert claims.check_f1(results).verdict == NOT_APPLICABLE


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
    assert verdicts["complements"].verdict == HOLDS
    assert verdicts["random_isolated"].verdict in (HOLDS, FAILS)  # computed, not skipped
    assert verdicts["super_groups"].verdict == NOT_APPLICABLE
    assert verdicts["f1"].verdict == NOT_APPLICABLE
    assert all(c.source.startswith("Section") for c in verdicts.values())
