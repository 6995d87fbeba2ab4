"""Random grouping: k seeded groups of near-equal size — the floor every method must beat."""

from __future__ import annotations

from dataclasses import dataclass

from stg_core.evaluation import random_grouping
from stg_core.grouping.base import GroupingCost, GroupingResult, MethodParams, ProgressFn, RunContext, Timer


@dataclass(frozen=True)
class RandomParams(MethodParams):
    """No parameters: the spec's seed draws the groups."""

    method = "random"


PARAMS = RandomParams


def group(ctx: RunContext, n_clusters: int, params: RandomParams = RandomParams(), *, seed: int = 0,
          progress: ProgressFn | None = None) -> GroupingResult:
    """One-hot memberships ``(n_tasks, k)``: a seeded permutation of ``0, 1, ..., k-1, 0, ...``
    (the same grouping the evaluation's ``random`` baseline trains)."""
    with Timer() as timer:
        memberships = random_grouping(ctx.n_tasks, n_clusters, seed)
    if progress is not None:
        progress("drew a random grouping", 1, 1)
    return GroupingResult("random", ctx.task_names, memberships, GroupingCost(timer.seconds, models_trained=0))
