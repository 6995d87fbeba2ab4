"""The checks STG-MTL must pass on real recorded data (digits, CPU, seeded)."""

import numpy as np
import pytest

from stg_core.clustering import TaskClusterer
from stg_core.run_vectors import load_task_vectors
from stg_core.config import ExperimentSpec, TrainConfig, spec_from_preset
from stg_core.demo import DEMOS
from stg_core.store import ArtifactStore
from stg_core.tasks import Task
from stg_core.training import train_run


def _memberships(store, run_id, k, representation="raw"):
    return TaskClusterer(k, random_state=0).fit(load_task_vectors(store, run_id, None, representation))


@pytest.fixture(scope="module")
def g2_seeds(tmp_path_factory):
    """The digits demo's run (digits-g2, 40 epochs) trained with seeds 0, 1 and 2."""
    store = ArtifactStore(tmp_path_factory.mktemp("g2"))
    assert DEMOS["digits"].spec == spec_from_preset("digits-g2", train=TrainConfig(epochs=40))
    runs = [train_run(DEMOS["digits"].spec.with_train(seed=seed), store) for seed in (0, 1, 2)]
    return store, runs, list(DEMOS["digits"].spec.task_names)


@pytest.mark.slow
def test_random_task_gets_a_cluster_of_its_own_at_the_demos_k(g2_seeds):
    """At k = 4 (the digits demo's k: its guide promises this) the random task shares its
    cluster with no other task, in each of the three seeds; at k = 3 it shares one with the
    flipped task, learned epochs after the class tasks (its mean confidence sits between
    theirs and the random task's), and the claims panel says "does not hold"."""
    from stg_core.claims import FAILS, HOLDS, check_random_isolated

    store, runs, names = g2_seeds
    tasks = DEMOS["digits"].spec.tasks
    for run_id in runs:
        fitted = _memberships(store, run_id, DEMOS["digits"].k)
        own = fitted.labels_[names.index("Random")]
        assert [n for n, c in zip(names, fitted.labels_) if c == own] == ["Random"]
        assert check_random_isolated(fitted.memberships_, names, tasks).verdict == HOLDS
        fitted = _memberships(store, run_id, 3)
        own = fitted.labels_[names.index("Random")]
        assert [n for n, c in zip(names, fitted.labels_) if c == own] == ["Downside", "Random"]
        claim = check_random_isolated(fitted.memberships_, names, tasks)
        assert claim.verdict == FAILS and claim.detail.endswith("shared with Downside")


def _documented_complement_l1(k_label: str) -> list[float]:
    """The digits row of docs/claims.md's complements table at ``k_label``: L1 per seed 0-2."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "claims.md").read_text()
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 7 and cells[0] == "digits G2" and cells[2] == k_label:
            return [float(c) for c in cells[3:6]]
    raise AssertionError(f"docs/claims.md has no digits G2 row at k = {k_label}")


@pytest.mark.slow
def test_complements_rate_on_the_digits_demo_is_the_documented_one(g2_seeds):
    """Heads start independently, so "Round" and "Not round" must earn the same memberships:
    on the digits demo at its k they do in 1 of 3 seeds (docs/claims.md). This test measures
    the L1 distance per seed and checks it against the documented row, so the claim's rate
    stated in the docs (and the panel's wording, which points there) stays true."""
    from stg_core.claims import THRESHOLDS

    store, runs, names = g2_seeds
    measured = []
    for run_id in runs:
        m = _memberships(store, run_id, DEMOS["digits"].k).memberships_
        measured.append(float(np.abs(m[names.index("Round")] - m[names.index("Not round")]).sum()))
    documented = _documented_complement_l1(f"{DEMOS['digits'].k} (demo)")
    np.testing.assert_allclose(measured, documented, atol=0.002,
                               err_msg="re-measure with `python bench/claims.py` and update docs/claims.md")
    holds = sum(d <= THRESHOLDS["complement_l1"] for d in measured)
    assert 0 < holds < len(runs)  # neither always nor never: the claim is not reliable here


def test_a_duplicate_task_shares_its_originals_cluster(tmp_path):
    """A duplicate of a task ("three again") starts from its own head, yet lands in its
    original's cluster; the complement ("not three") does at k = 2 only (docs/claims.md)."""
    tasks = spec_from_preset("digits-g1").tasks + (Task("three again", "classes", ("3",)),
                                                   Task("not three", "classes", tuple("012456789")))
    store = ArtifactStore(tmp_path)
    run_id = train_run(ExperimentSpec("digits", tasks, TrainConfig(epochs=8)), store)
    names = [t.name for t in tasks]
    for k in (2, 3, 4, 6):
        labels = _memberships(store, run_id, k).labels_
        assert labels[names.index("3")] == labels[names.index("three again")]
    labels = _memberships(store, run_id, 2).labels_
    assert labels[names.index("3")] == labels[names.index("not three")]


def test_reordering_the_tasks_permutes_the_memberships(tmp_path):
    spec = spec_from_preset("digits-g2", subset=600, train=TrainConfig(epochs=8))
    order = np.random.default_rng(0).permutation(len(spec.tasks))
    shuffled = ExperimentSpec("digits", tuple(spec.tasks[i] for i in order), spec.train, subset=600)
    store = ArtifactStore(tmp_path)
    a, b = train_run(spec, store), train_run(shuffled, store)
    # Training sees the tasks in another order: the same heads (seeded per task), but the loss
    # sums over tasks in another order, so p_true agrees up to float rounding, not bit for bit.
    pa, pb = store.load_p_true(a, 8).astype(np.float64), store.load_p_true(b, 8).astype(np.float64)
    assert np.abs(pa[order] - pb).max() < 0.02
    for k in (2, 3, 5):
        ma = _memberships(store, a, k)
        mb = _memberships(store, b, k)
        # same partition of the tasks (cluster numbers may differ), same memberships once matched
        same = ma.labels_[order][:, None] == ma.labels_[order][None, :]
        assert np.array_equal(same, mb.labels_[:, None] == mb.labels_[None, :])
        match = [int(np.bincount(mb.labels_[ma.labels_[order] == j]).argmax()) for j in range(k)]
        np.testing.assert_allclose(ma.memberships_[order], mb.memberships_[:, match], atol=0.02)
