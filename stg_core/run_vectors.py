"""Task vectors of a stored run: the epoch selection, the vectors built from p_true, and their
exact reduction, from the Gram statistics recorded with each epoch (:mod:`stg_core.reduction`)
or, where those cannot answer, from the vectors once (kept in the run folder).

The reduction and the clustering themselves are in :mod:`stg_core.clustering`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np

from stg_core import clustering
from stg_core.clustering import SCALINGS, _check_representation, task_vectors
from stg_core.datamaps import data_maps_at
from stg_core.reduction import reduce_gram, selection_gram
from stg_core.store import ArtifactStore, read_json, write_json
from stg_core.validation import is_integer


def load_task_vectors(store: ArtifactStore, run_id: str, epochs: Sequence[int] | None = None,
                      representation: str = "raw") -> np.ndarray:
    """Task vectors ``(n_tasks, len(epochs) * N * 2)`` float32 of a stored run.

    ``epochs``: 1-based epochs whose data maps (over epochs 1..e each) are concatenated, used in
    ascending order without duplicates; ``None`` = every recorded epoch. ``ValueError`` names
    an epoch that is not recorded. See :func:`task_vectors` for ``representation``.
    """
    _check_representation(representation)
    wanted = recorded_selection(store, run_id, epochs)
    maps = data_maps_at(store.iter_p_true(run_id, wanted[-1]), wanted)
    return task_vectors(maps, representation)


def recorded_selection(store: ArtifactStore, run_id: str, epochs: Sequence[int] | None = None) -> list[int]:
    """``epochs`` of a run checked and sorted without duplicates (``None`` = every recorded
    epoch). ``ValueError`` names an epoch that is not recorded, or a hole below the last one
    chosen (the data map at epoch e needs every epoch from 1)."""
    recorded = store.recorded_epochs(run_id)
    if epochs is None:
        if not recorded:
            raise ValueError(f"run {run_id} has no recorded epoch")
        wanted = recorded
    else:
        wanted = []
        for e in epochs:
            if not is_integer(e):
                raise ValueError(f"epoch {e!r} is not an integer")
            wanted.append(int(e))
        if not wanted:
            raise ValueError("epochs is empty: give at least one epoch (or None for all)")
        wanted = sorted(set(wanted))
        missing = [e for e in wanted if e not in recorded]
        if missing:
            raise ValueError(f"epoch {missing[0]} is not recorded for run {run_id} "
                             f"(recorded: {epoch_ranges(recorded) or 'none'})")
    holes = [e for e in range(1, wanted[-1] + 1) if e not in recorded]
    if holes:
        raise ValueError(f"epoch {holes[0]} is not recorded for run {run_id}, and the data map at "
                         f"epoch {wanted[-1]} needs every epoch from 1")
    return wanted


def has_statistics(store: ArtifactStore, run_id: str, epochs: Sequence[int] | None = None,
                   representation: str = "raw", scaling: str = "none") -> bool:
    """Can :func:`load_reduced_task_vectors` answer from the recorded Gram statistics (fast),
    without reading p_true? False for runs recorded before the statistics existed (compute
    them with :func:`stg_core.recording.record_statistics`) and for pattern vectors with
    standard scaling, which no per-epoch statistic describes."""
    if scaling == "standard" and representation == "pattern":
        return False
    wanted = recorded_selection(store, run_id, epochs)
    return set(wanted) <= set(store.statistics_epochs(run_id))


def load_reduced_task_vectors(store: ArtifactStore, run_id: str, epochs: Sequence[int] | None = None,
                              representation: str = "raw", scaling: str = "none") -> tuple[np.ndarray, int]:
    """The exact reduction ``(n_tasks, r)`` of a run's task vectors and their original width ``D``.
    Pass ``n_features=D`` to :func:`cluster_tasks` for scikit-learn's exact result.

    From the Gram statistics recorded with each epoch (:mod:`stg_core.reduction`): a sum of
    small matrices and one eigendecomposition, whatever the representation and epochs.
    Standard scaling of raw or standardized vectors is the standardized representation. Where
    the statistics cannot answer (see :func:`has_statistics`), the task vectors are built from
    p_true and reduced once per (run, epochs, representation, scaling), the result kept in the
    run folder (``reduced/<key>.npy`` + ``.json``).
    """
    _check_representation(representation)
    if scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {scaling!r}; known scalings: {', '.join(SCALINGS)}")
    wanted = recorded_selection(store, run_id, epochs)
    if scaling == "standard" and representation != "pattern":
        representation, scaling = "standardized", "none"  # standardised raw columns are that representation
    if has_statistics(store, run_id, wanted, representation, scaling):
        grams = store.load_grams(run_id, wanted)
        gram = selection_gram(grams, wanted, representation)
        return reduce_gram(gram), len(wanted) * store.statistics_samples(run_id) * 2
    key_text = json.dumps({"epochs": wanted, "representation": representation, "scaling": scaling})
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    meta_path = store.run_dir(run_id) / "reduced" / f"r{key}.json"
    if meta_path.exists():
        meta = read_json(meta_path)
        return store.read_array(run_id, f"reduced/r{key}"), int(meta["n_features"])
    x = load_task_vectors(store, run_id, wanted, representation)
    reduced = clustering.reduce_task_vectors(x, standardize=scaling == "standard")
    store.write_array(run_id, f"reduced/r{key}", reduced)
    write_json(meta_path, {**json.loads(key_text), "n_features": int(x.shape[1])})
    return reduced, int(x.shape[1])


def epoch_ranges(epochs: Sequence[int], sep: str = ", ") -> str:
    """Sorted ``epochs`` as ranges: ``[1, 2, 3, 5]`` -> ``"1-3, 5"``."""
    parts, i = [], 0
    while i < len(epochs):
        j = i
        while j + 1 < len(epochs) and epochs[j + 1] == epochs[j] + 1:
            j += 1
        parts.append(str(epochs[i]) if i == j else f"{epochs[i]}-{epochs[j]}")
        i = j + 1
    return sep.join(parts)
