"""Experiment specification: everything that determines a training run, and its stable id.

The spec is saved inside every run folder (``spec.json``); the run id is a hash of its
canonical JSON, so an identical spec maps to the same run and is reused, not retrained.
Where the data lives (``data_root``) and which device trains are *not* part of the id: they
change where bytes come from and how fast, not what is learned. A user ``.npz`` file is
identified by the hash of its content instead.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from stg_core.tasks import Task, get_preset

# Bumped whenever the training code changes what a spec produces (initialisation, batching,
# recording): it is part of the run id, so a stored run is never reused across such a change.
TRAINING_VERSION = 3


PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one multi-task training run (paper setting: Adam, no schedule)."""

    model: str = "auto"        # see models.MODEL_NAMES; "auto" = small CNN for images <= 16 px, else paper CNN
    epochs: int = 15           # passes over the training subset
    batch_size: int = 256      # images per optimiser step
    lr: float = 1e-3           # Adam learning rate
    weight_decay: float = 0.0  # L2 on all parameters (the original uses none)
    seed: int = 0              # initial weights, batch order and dropout masks
    precision: str = "auto"    # "fp32", "bf16" (autocast), or "auto": see training.use_mixed_precision
    feature_dim: int | None = None  # units of the CNN's last FC layer, read by every head; None = 128 (paper)

    def validate(self) -> None:
        from stg_core.models import MODEL_NAMES, check_feature_dim

        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}; known models: {', '.join(MODEL_NAMES)}")
        if self.epochs < 1:
            raise ValueError(f"epochs={self.epochs} must be at least 1")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be at least 1")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be positive")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay={self.weight_decay} must not be negative")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; use {', '.join(PRECISIONS)}")
        check_feature_dim(self.model, self.feature_dim)


@dataclass(frozen=True)
class ExperimentSpec:
    """A dataset, a task set and training settings: one MTL run that records data maps."""

    dataset: str
    tasks: tuple[Task, ...]
    train: TrainConfig = field(default_factory=TrainConfig)
    subset: int | None = None       # training images kept (seeded choice); None = all
    test_subset: int | None = None  # test images kept; None = all
    data_seed: int = 0              # picks the subsets
    preset: str | None = None       # informational: the preset the tasks came from
    data_fingerprint: str = ""      # content hash for user files (npz); empty for named datasets
    data_root: str | None = field(default=None, compare=False)  # where to read the data; not hashed

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["tasks"] = [t.to_json() for t in self.tasks]
        out["train"] = asdict(self.train)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "ExperimentSpec":
        known = {f.name for f in fields(cls)}
        unknown = set(obj) - known
        if unknown:
            raise ValueError(f"unknown spec fields: {', '.join(sorted(unknown))}")
        kwargs = dict(obj)
        kwargs["tasks"] = tuple(Task.from_json(t) for t in obj["tasks"])
        kwargs["train"] = TrainConfig(**obj.get("train", {}))
        return cls(**kwargs)

    def run_id(self) -> str:
        """Stable 12-hex-digit id: SHA-256 of the canonical JSON of the hashed fields."""
        obj = self.to_json()
        obj.pop("data_root")
        if obj["train"]["feature_dim"] is None:  # added later: left out at its default, so earlier ids stay
            del obj["train"]["feature_dim"]
        obj["training_version"] = TRAINING_VERSION
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def with_train(self, **changes: Any) -> "ExperimentSpec":
        return replace(self, train=replace(self.train, **changes))


def data_fingerprint(content: bytes) -> str:
    """``ExperimentSpec.data_fingerprint`` of a user file: the SHA-256 of its bytes (64 hex digits)."""
    return hashlib.sha256(content).hexdigest()


def spec_from_preset(name: str, **kwargs: Any) -> ExperimentSpec:
    """The spec of preset ``name`` (e.g. ``"digits-g2"``); ``kwargs`` as in :class:`ExperimentSpec`."""
    preset = get_preset(name)
    return ExperimentSpec(dataset=preset.dataset, tasks=preset.tasks, preset=name, **kwargs)
