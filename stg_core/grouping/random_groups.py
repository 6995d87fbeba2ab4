"""Random grouping: k seeded groups of near-equal size — the floor every method must beat."""

from __future__ import annotations

from typing import Any

from stg_core.evaluation import random_grouping
from stg_core.grouping.base import GroupingCost, GroupingResult, ProgressFn, RunContext, Timer

DEFAULTS: dict[str, Any] = {}


def check_params(params: dict[str, Any], n_tasks: int, n_clusters: int) -> None:
    pass


def group(ctx: RunContext, n_clusters: int, *, seed: int = 0, progress: ProgressFn | None = None) -> GroupingResult:
    """One-hot memberships ``(n_tasks, k)``: a seeded permutation of ``0, 1, ..., k-1, 0, ...``
    (the same grouping the evaluation's ``random`` baseline trains)."""
    with Timer() as timer:
        memberships = random_grouping(ctx.n_tasks, n_clusters, seed)
    if progress is not None:
        progress("drew a random grouping", 1, 1)
    return GroupingResult("random", ctx.task_names, memberships, GroupingCost(timer.seconds, models_trained=0))
