"""Planted problems beyond ``digits-planted``: task sets whose grouping is known, to check
grouping methods against (``bench/planted.py`` measures every method on them).

The *digit pairs*: each image ``(8, 16)`` is two digits side by side, drawn independently from
the digits' own train (test) split, class ``"a|b"`` (left digit a, right digit b). One planted
set of tasks reads the left digit, the other the right one, so tasks of different sets are
independent, in their labels and in the pixels they look at; every task has an exact duplicate.
The file is written as a user ``.npz`` (``dataset="npz"``), never downloaded.

    from stg_core.planted import digit_pairs_spec
    spec, planted = digit_pairs_spec("pairs.npz", epochs=15)  # planted: task name -> 0 or 1
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stg_core.config import ExperimentSpec, TrainConfig, data_fingerprint
from stg_core.data import load_dataset
from stg_core.tasks import Task

#: The classes of the digit pairs, ``"a|b"`` with label ``10 a + b`` (left a, right b).
PAIR_CLASSES = tuple(f"{a}|{b}" for a in range(10) for b in range(10))

#: Which digit each planted set reads, and its tasks' positives: ``digits-planted``'s
#: (``"planted"``), or ``"nested"`` ones, where each set's tasks share three positives and differ by one.
PAIRS_SETS = {
    "planted": (("left", (("0", "4", "6"), ("0", "4"), ("4", "6"))),
                ("right", (("3", "8", "9"), ("3", "9"), ("8", "9")))),
    "nested": (("left", (("0", "4", "6"), ("0", "2", "4", "6"), ("0", "4", "6", "7"))),
               ("right", (("3", "8", "9"), ("1", "3", "8", "9"), ("3", "5", "8", "9")))),
}


def write_digit_pairs(path: str | Path, n_train: int = 3_000, n_test: int = 1_000, seed: int = 0) -> None:
    """Write images ``(N, 8, 16)`` uint8 of two digits side by side to the ``.npz`` ``path``:
    class ``"a|b"`` (:data:`PAIR_CLASSES`), each half drawn from the digits' own train (test) split."""
    ds = load_dataset("digits")
    rng = np.random.default_rng(seed)

    def pairs(x: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        left, right = rng.integers(len(y), size=n), rng.integers(len(y), size=n)
        return np.concatenate([x[left], x[right]], axis=2), 10 * y[left] + y[right]

    x, y = pairs(ds.x_train[..., 0], ds.y_train, n_train)
    x_test, y_test = pairs(ds.x_test[..., 0], ds.y_test, n_test)
    np.savez(path, x=x, y=y, x_test=x_test, y_test=y_test, class_names=np.array(PAIR_CLASSES))


def with_duplicates(sets: list[list[tuple[str, tuple[str, ...]]]]) -> tuple[tuple[Task, ...], dict[str, int]]:
    """Class-set tasks ``(name, positives)`` of each planted set, each followed by its exact
    duplicate ("<name> again"), and the planted grouping: task name -> index of its set."""
    tasks, groups = [], {}
    for group, named in enumerate(sets):
        for name, positives in named:
            for task_name in (name, f"{name} again"):
                tasks.append(Task(task_name, "classes", positives))
                groups[task_name] = group
    return tuple(tasks), groups


def duplicates_together(names: list[str], labels: np.ndarray) -> bool:
    """Whether every duplicate ("<name> again" in ``names``) has its original's group in
    ``labels`` ``(n_tasks,)``."""
    return all(labels[i] == labels[names.index(n.removesuffix(" again"))] for i, n in enumerate(names)
               if n.endswith(" again"))


def digit_pairs_tasks(sets: str = "planted") -> tuple[tuple[Task, ...], dict[str, int]]:
    """The 12 tasks of the digit pairs with the positives of ``PAIRS_SETS[sets]`` (e.g. "left
    {0,4,6}": the left digit is 0, 4 or 6), each duplicated, and the planted grouping."""
    if sets not in PAIRS_SETS:
        raise ValueError(f"unknown task sets {sets!r}; known: {', '.join(PAIRS_SETS)}")
    named = []
    for half, (side, digit_sets) in enumerate(PAIRS_SETS[sets]):  # half 0: the left digit of "a|b"
        named.append([(f"{side} {{{','.join(digits)}}}",
                       tuple(c for c in PAIR_CLASSES if c.split("|")[half] in digits)) for digits in digit_sets])
    return with_duplicates(named)


def digit_pairs_spec(path: str | Path, *, epochs: int, seed: int = 0, feature_dim: int | None = None,
                     n_train: int = 3_000, sets: str = "planted") -> tuple[ExperimentSpec, dict[str, int]]:
    """The MTL run of the digit pairs in the ``.npz`` ``path`` (written with ``n_train``
    training images if it does not exist), with the tasks of :func:`digit_pairs_tasks`, and its
    planted grouping: task name -> 0 (left digit) or 1 (right digit)."""
    path = Path(path)
    if not path.exists():
        write_digit_pairs(path, n_train=n_train)
    tasks, groups = digit_pairs_tasks(sets)
    train = TrainConfig(epochs=epochs, seed=seed, feature_dim=feature_dim)
    spec = ExperimentSpec(dataset="npz", tasks=tasks, train=train, data_fingerprint=data_fingerprint(path.read_bytes()),
                          data_root=str(path))
    return spec, groups
