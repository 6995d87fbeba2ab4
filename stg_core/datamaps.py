"""Data maps: confidence and variability of p_true over epochs (numpy only; recording them
during training is :mod:`stg_core.recording`).

For a binary head with logit z and label y, ``p_true = y·σ(z) + (1−y)·(1−σ(z))`` is the
probability the model gives to the true label.

The data map of a task at epoch e is, per training sample, the mean (**confidence**) and
population standard deviation (**variability**) of p_true over the epochs 1..e, plus
**correctness**, the fraction of those epochs in which the sample was classified right.
One epoch gives variability 0, never NaN (the original's ddof=1 gives NaN there).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DataMap:
    """Per-sample training dynamics of tasks, each array ``(n_tasks, n_samples)``."""

    confidence: np.ndarray   # mean p_true over the epochs
    variability: np.ndarray  # population std of p_true over the epochs
    correctness: np.ndarray  # fraction of epochs with p_true > 0.5
    n_epochs: int


def data_map(p_true_epochs: Iterable[np.ndarray]) -> DataMap:
    """Data map from p_true of successive epochs 1..e, each ``(n_tasks, n_samples)``.

    Streams over the epochs with float64 running sums, so host memory stays
    ``O(n_tasks × n_samples)`` whatever the number of epochs.
    """
    maps = data_maps_at(p_true_epochs, None)
    if not maps:
        raise ValueError("a data map needs at least one recorded epoch")
    return maps[0]


def data_maps_at(p_true_epochs: Iterable[np.ndarray], epochs: Iterable[int] | None) -> list[DataMap]:
    """Data maps at each of ``epochs`` (1-based, ascending) in one pass over p_true of epochs
    1, 2, ... (each ``(n_tasks, n_samples)``); ``None`` = only after the last epoch given."""
    wanted = None if epochs is None else sorted(set(epochs))
    if wanted is not None and (not wanted or wanted[0] < 1):
        raise ValueError(f"epochs must be 1-based and non-empty, got {epochs!r}")
    total = total_sq = correct = None
    n = 0
    out: list[DataMap] = []
    for p in p_true_epochs:
        p = np.asarray(p, dtype=np.float64)
        if total is None:
            total, total_sq, correct = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
        elif p.shape != total.shape:
            raise ValueError(f"epoch {n + 1} has shape {p.shape}, earlier epochs {total.shape}")
        total += p
        total_sq += p * p
        correct += p > 0.5
        n += 1
        if wanted is not None and n in wanted:
            out.append(_snapshot(total, total_sq, correct, n))
            if n == wanted[-1]:
                break
    if wanted is None:
        return [_snapshot(total, total_sq, correct, n)] if n else []
    if len(out) < len(wanted):
        raise ValueError(f"epochs {wanted[len(out):]} are not recorded (only {n})")
    return out


def _snapshot(total: np.ndarray, total_sq: np.ndarray, correct: np.ndarray, n: int) -> DataMap:
    confidence = total / n
    # E[p²] − E[p]² can dip below zero by rounding; the clip keeps sqrt real (and 0 for one epoch).
    variability = np.sqrt(np.clip(total_sq / n - confidence**2, 0.0, None))
    return DataMap(confidence, variability, correct / n, n)
