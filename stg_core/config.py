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

from stg_core.data import DATASET_NAMES
from stg_core.tasks import MAX_TASKS, Task, check_unique_names, get_preset
from stg_core.validation import MAX_SEED, check_integer, check_number, show

# Bumped whenever the training code changes what a spec produces (initialisation, batching,
# recording): it is part of the run id, so a stored run is never reused across such a change.
TRAINING_VERSION = 3


PRECISIONS = ("auto", "fp32", "bf16")

# Ranges of the training settings (checked by TrainConfig.validate, named in its errors).
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 65_536
MAX_LR = 10.0            # Adam beyond this diverges at once: refused rather than trained to NaN
MAX_WEIGHT_DECAY = 1.0
MAX_FEATURE_DIM = 65_536
MAX_IMAGES = 10**9       # subset / test_subset


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
        """One-line ``ValueError`` naming the setting unless each has its type and range."""
        from stg_core.models import MODEL_NAMES, check_feature_dim

        if not isinstance(self.model, str) or self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {show(self.model)}; known models: {', '.join(MODEL_NAMES)}")
        check_integer("epochs", self.epochs, 1, MAX_EPOCHS)
        check_integer("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        check_number("lr", self.lr, 0.0, MAX_LR, low_inclusive=False)
        check_number("weight_decay", self.weight_decay, 0.0, MAX_WEIGHT_DECAY)
        check_integer("seed", self.seed, 0, MAX_SEED)
        if not isinstance(self.precision, str) or self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {show(self.precision)}; use {', '.join(PRECISIONS)}")
        if self.feature_dim is not None:
            check_integer("feature_dim", self.feature_dim, 1, MAX_FEATURE_DIM)
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

    def validate(self) -> None:
        """One-line ``ValueError`` naming the field unless every field has its type and range;
        checks nothing that needs the data (``training.train_run`` checks the data, the task
        labels and the model before it writes anything)."""
        if not isinstance(self.dataset, str) or self.dataset not in DATASET_NAMES:
            raise ValueError(f"unknown dataset={show(self.dataset)}; known datasets: {', '.join(DATASET_NAMES)}")
        if not isinstance(self.tasks, tuple) or not 0 < len(self.tasks) <= MAX_TASKS:
            raise ValueError(f"tasks must be a tuple of 1 to MAX_TASKS={MAX_TASKS} tasks, got {show(self.tasks)}")
        for t in self.tasks:
            if not isinstance(t, Task):
                raise ValueError(f"tasks: {show(t)} is not a Task")
            t.validate()
        check_unique_names(self.tasks)
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"train={show(self.train)} must be a TrainConfig")
        self.train.validate()
        for name in ("subset", "test_subset"):
            if getattr(self, name) is not None:
                check_integer(name, getattr(self, name), 1, MAX_IMAGES)
        check_integer("data_seed", self.data_seed, 0, MAX_SEED)
        for name in ("preset", "data_root"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ValueError(f"{name}={show(getattr(self, name))} must be a string or None")
        if not isinstance(self.data_fingerprint, str):
            raise ValueError(f"data_fingerprint={show(self.data_fingerprint)} must be a string")

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "ExperimentSpec":
        """The spec of its JSON form (``to_json``); ``ValueError`` naming a field of the wrong
        shape. Values are not range-checked here: call :meth:`validate` before training."""
        if not isinstance(obj, dict):
            raise ValueError(f"a spec must be an object, got {show(obj)}")
        known = {f.name for f in fields(cls)}
        unknown = set(obj) - known
        if unknown:
            raise ValueError(f"unknown spec fields: {', '.join(sorted(unknown))}")
        if "dataset" not in obj:
            raise ValueError("spec field 'dataset' is missing")
        if not isinstance(obj.get("tasks"), list):
            raise ValueError(f"spec field 'tasks' must be a list, got {show(obj.get('tasks'))}")
        train = obj.get("train", {})
        known_train = {f.name for f in fields(TrainConfig)}
        if not isinstance(train, dict) or set(train) - known_train:
            raise ValueError(f"spec field 'train' must be an object with fields {', '.join(sorted(known_train))}, "
                             f"got {show(train)}")
        kwargs = dict(obj)
        kwargs["tasks"] = tuple(Task.from_json(t, i) for i, t in enumerate(obj["tasks"]))
        kwargs["train"] = TrainConfig(**train)
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
