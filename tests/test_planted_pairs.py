"""The planted check of the grouping methods on the digit pairs (``stg_core.planted``): one set
of tasks reads the left digit, the other the right one, every task duplicated. Every method
except ``random`` keeps each duplicate with its original; STG-MTL, Grad-TAE and DMTG (narrow
branches) recover the two sets at k = 2 (ARI >= 0.8). TAG recovers them on 1 of 3 run seeds
since heads start independently (docs/dmtg-planted.md), so only its duplicates are checked;
``python bench/planted.py --problem pairs`` measures it over more seeds."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from stg_core.data import load_dataset
from stg_core.grouping import GroupingSpec, run_grouping
from stg_core.planted import PAIR_CLASSES, digit_pairs_spec, digit_pairs_tasks, duplicates_together, write_digit_pairs
from stg_core.store import ArtifactStore
from stg_core.tasks import build_labels
from stg_core.training import train_run

pytestmark = pytest.mark.slow  # trains the pairs and runs TAG and DMTG: minutes

#: The run's epochs (``bench/planted.py``'s default for the pairs): about 30 s on two CPU cores.
PAIRS_EPOCHS = 15

#: DMTG's settings here: branches of 8 units, so that the tasks of a group compete for them
#: (with the run's 128 units a branch holds both sets at no cost, and DMTG's objective hardly
#: depends on the grouping); straight-through assignments with α at the weights' lr, over 150
#: epochs (1,800 steps), in which the grouping settled after epoch 7-118 on 12 of 12 groupings
#: (run seeds 0-5, grouping seeds 0-1; docs/dmtg-planted.md).
DMTG_PARAMS = {"branch_units": 8, "hard": True, "alpha_lr": 1e-3, "epochs": 150}


@pytest.fixture(scope="module")
def pairs_run(tmp_path_factory):
    """``(store, run_id, planted grouping)`` of the digit pairs (3,000 training images) trained
    for ``PAIRS_EPOCHS`` with the run's 128 feature units."""
    folder = tmp_path_factory.mktemp("pairs")
    spec, planted = digit_pairs_spec(folder / "pairs.npz", epochs=PAIRS_EPOCHS)
    store = ArtifactStore(folder / "store")
    return store, train_run(spec, store), planted


def test_digit_pairs_are_two_digits_side_by_side(tmp_path):
    path = tmp_path / "pairs.npz"
    write_digit_pairs(path, n_train=1_000, n_test=500, seed=3)  # enough for "9|9" to occur: the loader counts classes
    pairs, digits = load_dataset("npz", root=str(path)), load_dataset("digits")
    assert pairs.x_train.shape == (1_000, 8, 16, 1) and pairs.x_test.shape == (500, 8, 16, 1)
    assert tuple(pairs.class_names) == PAIR_CLASSES
    for x, label in zip(pairs.x_train[:50], pairs.y_train[:50]):
        for half, digit in ((x[:, :8], label // 10), (x[:, 8:], label % 10)):  # left a, right b of "a|b"
            matches = (digits.x_train == half).all(axis=(1, 2, 3))
            assert matches.any() and set(digits.y_train[matches]) == {digit}
    tasks, planted = digit_pairs_tasks()
    labels = build_labels(tasks, pairs)
    left = [t.name for t in tasks].index("left {0,4,6}")
    np.testing.assert_array_equal(labels.y_train[:, left], np.isin(pairs.y_train // 10, [0, 4, 6]))
    assert [planted[t.name] for t in tasks] == [0] * 6 + [1] * 6
    assert [t.name for t in tasks][:2] == ["left {0,4,6}", "left {0,4,6} again"]
    with pytest.raises(ValueError, match="unknown task sets 'mixed'"):
        digit_pairs_tasks("mixed")


# TAG keeps the duplicates together but recovers the sets on 1 of 3 run seeds (ARI 0.40, 1.00,
# 0.40 on run seeds 0-2, docs/dmtg-planted.md): only its duplicates are checked.
@pytest.mark.parametrize("method, params, recovers", [("stg", {}, True), ("tag", {}, False),
                                                      ("grad-tae", {}, True), ("dmtg", DMTG_PARAMS, True)])
def test_every_method_recovers_the_planted_sets(pairs_run, method, params, recovers):
    store, run_id, planted = pairs_run
    result = run_grouping(GroupingSpec(run_id, method, 2, params=params), store, device="cpu")
    names, labels = list(result.task_names), result.labels
    assert duplicates_together(names, labels), labels
    if recovers:
        assert adjusted_rand_score([planted[n] for n in names], labels) >= 0.8, labels


def test_random_groupings_do_not(pairs_run):
    """The floor: seeded random groupings of the same tasks are far from the planted sets."""
    store, run_id, planted = pairs_run
    aris = []
    for seed in range(5):
        result = run_grouping(GroupingSpec(run_id, "random", 2, seed=seed), store)
        aris.append(adjusted_rand_score([planted[n] for n in result.task_names], result.labels))
    assert np.mean(aris) < 0.3 and max(aris) < 0.8, aris
