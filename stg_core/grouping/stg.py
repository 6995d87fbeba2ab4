"""STG-MTL (Sherif et al., 2023): k-means plus fuzzy memberships on the run's data maps.

A thin adapter over :mod:`stg_core.clustering` (nothing is re-implemented here): the task
vectors are the data maps the training run recorded, so finding the grouping costs no extra
pass through the network — only the clustering of ``n_tasks`` vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

from stg_core.clustering import REPRESENTATIONS, SCALINGS, TaskClusterer
from stg_core.run_vectors import load_task_vectors
from stg_core.grouping.base import GroupingCost, GroupingResult, MethodParams, ProgressFn, RunContext, Timer
from stg_core.validation import check_choice, check_fuzziness, is_integer


@dataclass(frozen=True)
class STGParams(MethodParams):
    """STG-MTL's parameters (the k-means seed is the spec's seed)."""

    method = "stg"
    fuzziness: float = 2.0       # F of eq. 2, > 1 (paper: 2); larger = softer memberships
    representation: str = "raw"  # task vectors: raw (paper) | standardized | pattern
    scaling: str = "none"        # per-feature scaling before k-means: none (paper) | standard
    epochs: list[int] | None = None  # 1-based data-map epochs used; None = every recorded epoch

    def validate(self, n_tasks: int, k: int) -> None:
        check_fuzziness(self.fuzziness)
        epochs = self.epochs
        if epochs is not None and (not isinstance(epochs, (list, tuple)) or not epochs or any(
                not is_integer(e) or e < 1 for e in epochs)):
            raise ValueError(f"epochs={epochs!r} must be None (every recorded epoch) or a list of 1-based epochs")
        check_choice("representation", self.representation, REPRESENTATIONS)
        check_choice("scaling", self.scaling, SCALINGS)


PARAMS = STGParams


def group(ctx: RunContext, n_clusters: int, params: STGParams = STGParams(), *, seed: int = 0,
          progress: ProgressFn | None = None) -> GroupingResult:
    """Soft memberships ``(n_tasks, k)`` of the run's tasks from their data maps."""
    params.validate(ctx.n_tasks, n_clusters)
    fuzziness, representation, scaling = params.fuzziness, params.representation, params.scaling
    with Timer() as timer:
        vectors = load_task_vectors(ctx.store, ctx.run_id, params.epochs, representation)
        fitted = TaskClusterer(n_clusters, fuzziness=fuzziness, scaling=scaling, random_state=seed).fit(vectors)
    if progress is not None:
        progress("clustered the data maps", 1, 1)
    return GroupingResult(
        "stg", ctx.task_names, fitted.memberships_,
        GroupingCost(wall_seconds=timer.seconds, models_trained=1, reused_training_seconds=ctx.training_seconds()),
        details={"inertia": float(fitted.inertia_), "representation": representation, "scaling": scaling,
                 "fuzziness": float(fuzziness), "n_features": int(vectors.shape[1])})
