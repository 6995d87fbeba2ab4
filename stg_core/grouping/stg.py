"""STG-MTL (Sherif et al., 2023): k-means plus fuzzy memberships on the run's data maps.

A thin adapter over :mod:`stg_core.clustering` (nothing is re-implemented here): the task
vectors are the data maps the training run recorded, so finding the grouping costs no extra
pass through the network — only the clustering of ``n_tasks`` vectors.
"""

from __future__ import annotations

from typing import Any

from stg_core.clustering import REPRESENTATIONS, SCALINGS, TaskClusterer, load_task_vectors
from stg_core.grouping.base import GroupingCost, GroupingResult, ProgressFn, RunContext, Timer
from stg_core.validation import is_integer, is_number

DEFAULTS: dict[str, Any] = {
    "fuzziness": 2.0,          # F of eq. 2 (paper: 2)
    "representation": "raw",   # raw (paper) | standardized | pattern
    "scaling": "none",         # none (paper) | standard
    "epochs": None,            # data-map epochs used (list of 1-based epochs); None = all recorded
}


def check_params(params: dict[str, Any], n_tasks: int, n_clusters: int) -> None:
    fuzziness = params["fuzziness"]
    if not is_number(fuzziness) or not fuzziness > 1:
        raise ValueError(f"fuzziness F={fuzziness!r} must be a number greater than 1")
    epochs = params["epochs"]
    if epochs is not None and (not isinstance(epochs, (list, tuple)) or not epochs or any(
            not is_integer(e) or e < 1 for e in epochs)):
        raise ValueError(f"epochs={epochs!r} must be None (every recorded epoch) or a list of 1-based epochs")
    if params["representation"] not in REPRESENTATIONS:
        raise ValueError(f"unknown representation {params['representation']!r}; use {', '.join(REPRESENTATIONS)}")
    if params["scaling"] not in SCALINGS:
        raise ValueError(f"unknown scaling {params['scaling']!r}; use {', '.join(SCALINGS)}")


def group(ctx: RunContext, n_clusters: int, *, seed: int = 0, progress: ProgressFn | None = None,
          fuzziness: float = 2.0, representation: str = "raw", scaling: str = "none",
          epochs: list[int] | None = None) -> GroupingResult:
    """Soft memberships ``(n_tasks, k)`` of the run's tasks from their data maps."""
    with Timer() as timer:
        vectors = load_task_vectors(ctx.store, ctx.run_id, epochs, representation)
        fitted = TaskClusterer(n_clusters, fuzziness=fuzziness, scaling=scaling, random_state=seed).fit(vectors)
    if progress is not None:
        progress("clustered the data maps", 1, 1)
    return GroupingResult(
        "stg", ctx.task_names, fitted.memberships_,
        GroupingCost(wall_seconds=timer.seconds, models_trained=1, reused_training_seconds=ctx.training_seconds()),
        details={"inertia": float(fitted.inertia_), "representation": representation, "scaling": scaling,
                 "fuzziness": float(fuzziness), "n_features": int(vectors.shape[1])})
