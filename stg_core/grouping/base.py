"""What every grouping method shares: its result type, its cost, and access to a run's data.

A grouping method reads one completed training run (its task set, data, and — for the methods
that build on it — its MTL model or data maps) and returns a :class:`GroupingResult`:
memberships ``(n_tasks, k)`` (one-hot for hard methods), an optional task-affinity matrix
``(n_tasks, n_tasks)``, and what the grouping cost (:class:`GroupingCost`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from stg_core.config import ExperimentSpec
from stg_core.data import Dataset
from stg_core.store import ArtifactStore
from stg_core.training import TrainingData, resolve_device, spec_training_data

ProgressFn = Callable[[str, int, int], None]  # (message, step, n_steps)
P = TypeVar("P", bound="MethodParams")


@dataclass(frozen=True)
class MethodParams:
    """A grouping method's parameters: each subclass declares one field per parameter, with its
    default and unit. Values are kept as given (JSON numbers stay ints or floats), so a stored
    spec reads back to the same ids."""

    method: ClassVar[str] = ""

    @classmethod
    def from_dict(cls: type[P], values: Mapping[str, Any]) -> P:
        """The parameters from ``values`` (missing names: their defaults); ``ValueError`` on an
        unknown name."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r} for method {cls.method!r}; "
                             f"parameters: {', '.join(sorted(names)) or 'none'}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Every parameter by name, in declaration order (the stored spec's ``params``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def validate(self, n_tasks: int, k: int) -> None:
        """``ValueError`` naming the first field that is not valid for ``n_tasks`` tasks in ``k``
        groups."""


@dataclass(frozen=True)
class GroupingCost:
    """What finding a grouping cost, beyond nothing.

    ``wall_seconds``: wall time of the method's own work (its own training included).
    ``reused_training_seconds``: the run's MTL training that the method builds on without
    redoing it (STG reads its data maps, Grad-TAE its final model); not in ``wall_seconds``.
    ``models_trained``: network trainings the method needs, the reused one included.
    ``extra_forward_passes`` / ``extra_backward_passes``: minibatch passes through the network
    beyond those of one plain MTL training of the same length (TAG's lookahead, Grad-TAE's
    per-sample gradients). ``compute_factor``: cost of one training step relative to plain MTL
    (DMTG's K branches).
    """

    wall_seconds: float
    models_trained: int
    extra_forward_passes: int = 0
    extra_backward_passes: int = 0
    compute_factor: float = 1.0
    reused_training_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GroupingResult:
    """One grouping of a run's tasks.

    ``memberships`` ``(n_tasks, k)`` rows summing to 1 (one-hot for hard methods);
    ``affinity`` ``(n_tasks, n_tasks)`` or ``None`` (entry ``[i, j]``: how much task i helps
    task j, in the method's own units); ``notes``: how the result was obtained where that
    differs from the original method (deviations, approximations); ``warnings``: reasons to
    doubt this grouping (a collapse, a fallback taken, a grouping decided before the network had
    learned) — both shown wherever the result is shown, warnings as such; ``details``:
    method-specific JSON-able figures (e.g. TAG's search, DMTG's assignment logits).
    """

    method: str
    task_names: tuple[str, ...]
    memberships: np.ndarray
    cost: GroupingCost
    affinity: np.ndarray | None = None
    notes: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        w = np.asarray(self.memberships, dtype=np.float64)
        n = len(self.task_names)
        if w.ndim != 2 or w.shape[0] != n or w.shape[1] < 1:
            raise ValueError(f"memberships of shape {w.shape} do not match {n} tasks")
        if not np.all(np.isfinite(w)) or np.any(w < -1e-9) or not np.allclose(w.sum(1), 1.0, atol=1e-6):
            raise ValueError("memberships must be finite, non-negative, with rows summing to 1")
        object.__setattr__(self, "memberships", w)
        if self.affinity is not None:
            a = np.asarray(self.affinity, dtype=np.float64)
            if a.shape != (n, n):
                raise ValueError(f"affinity of shape {a.shape} does not match {n} tasks")
            object.__setattr__(self, "affinity", a)

    @property
    def n_clusters(self) -> int:
        return int(self.memberships.shape[1])

    @property
    def labels(self) -> np.ndarray:
        """Argmax cluster of each task ``(n_tasks,)``."""
        return self.memberships.argmax(1)

    @property
    def is_hard(self) -> bool:
        return bool(np.all((self.memberships == 0) | (self.memberships == 1)))

    def to_json(self, *, with_affinity: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method, "tasks": list(self.task_names), "memberships": self.memberships.round(6).tolist(),
            "labels": self.labels.tolist(), "cost": self.cost.to_json(), "notes": list(self.notes),
            "warnings": list(self.warnings), "details": self.details,
        }
        if with_affinity:
            out["affinity"] = None if self.affinity is None else self.affinity.tolist()
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any], affinity: np.ndarray | None = None) -> "GroupingResult":
        if affinity is None and obj.get("affinity") is not None:
            affinity = np.asarray(obj["affinity"], dtype=np.float64)
        return cls(obj["method"], tuple(obj["tasks"]), np.asarray(obj["memberships"], dtype=np.float64),
                   GroupingCost(**obj["cost"]), affinity, tuple(obj.get("notes", ())), dict(obj.get("details", {})),
                   tuple(obj.get("warnings", ())))


def one_hot(labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Hard memberships ``(n_tasks, k)`` from cluster labels ``(n_tasks,)``."""
    return np.eye(n_clusters)[np.asarray(labels, dtype=np.int64)]


class RunContext:
    """A completed training run as grouping methods see it: its spec, store and device, with
    the data loaded on first use (methods that only read data maps never load images)."""

    def __init__(self, store: ArtifactStore, run_id: str, device: str = "auto") -> None:
        status = store.read_status(run_id)
        if status.get("state") != "completed":
            raise ValueError(f"run {run_id} is {status.get('state', 'missing')}: group its tasks once training "
                             "has completed")
        self.store, self.run_id = store, run_id
        self.spec: ExperimentSpec = store.load_spec(run_id)
        self.device: torch.device = resolve_device(device)

    @property
    def task_names(self) -> tuple[str, ...]:
        return self.spec.task_names

    @property
    def n_tasks(self) -> int:
        return len(self.spec.tasks)

    @cached_property
    def _loaded(self) -> tuple[Dataset, TrainingData]:
        dataset, _, data = spec_training_data(self.spec, self.device)
        return dataset, data

    @property
    def dataset(self) -> Dataset:
        return self._loaded[0]

    @property
    def data(self) -> TrainingData:
        """Training and test tensors on the device (flips applied), as the run trained on them."""
        return self._loaded[1]

    def training_seconds(self) -> float:
        """Wall time the run's MTL training took (sum over its epochs)."""
        return float(sum(r.get("seconds", 0.0) for r in self.store.read_metrics(self.run_id)))


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start
