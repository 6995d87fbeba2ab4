"""Does the grouping help? STG-MTL's specialised models against MTL, STL and random groups.

Every method is a set of models trained on *all* tasks with a per-task loss weight vector
(paper eq. 3), plus a rule that turns their outputs into one prediction per task:

=========  ==================================  ==========================================
method     models (task weights)               prediction of task t
=========  ==================================  ==========================================
mtl        1 model, all weights 1              that model
stl        n models, model t: one-hot on t     model t
stg        k models, model j: membership col j Σ_j w_tj · output_j (eq. 4, soft)
stg-hard   k models, one-hot argmax cluster    the model of t's argmax cluster
random     k models, seeded random hard groups the model of t's random group
=========  ==================================  ==========================================

``stg`` combines either probabilities, ``Σ_j w_tj σ(z_tj)`` (the paper's text; default), or
logits, ``σ(Σ_j w_tj z_tj)`` (the original code). All methods share data, seed, epochs and
hyperparameters with the run whose data maps gave the grouping. Metrics per task and epoch on
the training split (eval mode) and the test split: F1 at threshold 0.5 (0, never NaN, when
nothing is predicted positive), accuracy, balanced accuracy.

Results live under the run: ``runs/<id>/evaluations/<eval id>/`` — ``spec.json``,
``status.json``, one JSON per finished unit of work (so a killed evaluation resumes where it
stopped), and ``results.json``. One process at a time computes an evaluation: it holds the
evaluation's writer lock (:mod:`stg_core.locks`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from stg_core import config
from stg_core.clustering import TaskClusterer, load_task_vectors
from stg_core.config import ExperimentSpec
from stg_core.store import ArtifactStore, job_running, read_json, update_status_file, write_json
from stg_core.training import (MultiTaskTrainer, binary_counts, precision_amp, resolve_device, scores_from_counts,
                               seeded_model, spec_training_data)

if TYPE_CHECKING:
    from stg_core.claims import GroupingSettings

METHODS = ("mtl", "stl", "stg", "stg-hard", "random")
COMBINATIONS = ("probabilities", "logits")


@dataclass(frozen=True)
class EvaluationSpec:
    """What to evaluate on run ``run_id``: the grouping (k, F, data-map epochs, representation)
    and the methods compared."""

    run_id: str
    n_clusters: int
    fuzziness: float = 2.0
    datamap_epochs: tuple[int, ...] | None = None  # epochs whose data maps form the task vectors; None = all
    representation: str = "raw"
    scaling: str = "none"
    methods: tuple[str, ...] = METHODS
    combination: str = "probabilities"
    epochs: int | None = None   # training epochs of every evaluated model; None = the run's
    seed: int = 0               # k-means and the random grouping
    memberships: tuple[tuple[float, ...], ...] | None = field(default=None)  # a given grouping instead of STG's

    def validate(self, n_tasks: int) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown method {unknown[0] if unknown else '(none)'}; methods: {', '.join(METHODS)}")
        if self.combination not in COMBINATIONS:
            raise ValueError(f"unknown combination {self.combination!r}; use {' or '.join(COMBINATIONS)}")
        if not 2 <= self.n_clusters <= n_tasks:
            raise ValueError(f"k={self.n_clusters} must be between 2 and the number of tasks ({n_tasks})")
        if not self.fuzziness > 1:
            raise ValueError(f"fuzziness F={self.fuzziness} must be greater than 1")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs={self.epochs} must be at least 1")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("datamap_epochs", "methods", "memberships"):
            if out[key] is not None:
                out[key] = [list(r) if isinstance(r, tuple) else r for r in out[key]]
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "EvaluationSpec":
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in obj.items() if k in known}
        for key in ("datamap_epochs", "methods"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(kwargs[key])
        if kwargs.get("memberships") is not None:
            kwargs["memberships"] = tuple(tuple(r) for r in kwargs["memberships"])
        return cls(**kwargs)

    def evaluation_id(self) -> str:
        """12 hex digits hashing the spec and the training code's version (it trains models)."""
        text = json.dumps({**self.to_json(), "training_version": config.TRAINING_VERSION}, sort_keys=True,
                          separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def combine_outputs(logits: np.ndarray | torch.Tensor, memberships: np.ndarray | torch.Tensor,
                    combination: str = "probabilities") -> torch.Tensor:
    """Ensemble prediction (paper eq. 4): probabilities ``(N, n_tasks)`` from the logits of m
    models ``(m, N, n_tasks)`` and memberships ``(n_tasks, m)``."""
    z = torch.as_tensor(logits, dtype=torch.float32)
    w = torch.as_tensor(np.array(memberships, dtype=np.float32), device=z.device).t().unsqueeze(1)  # (m, 1, n_tasks)
    if combination == "probabilities":
        return (w * torch.sigmoid(z)).sum(0)
    if combination == "logits":
        return torch.sigmoid((w * z).sum(0))
    raise ValueError(f"unknown combination {combination!r}; use {' or '.join(COMBINATIONS)}")


def random_grouping(n_tasks: int, n_clusters: int, seed: int) -> np.ndarray:
    """Seeded random hard grouping with no empty cluster: one-hot memberships ``(n_tasks, k)``."""
    labels = np.random.default_rng(seed).permutation(np.arange(n_tasks) % n_clusters)
    return np.eye(n_clusters)[labels]


def _hard(memberships: np.ndarray) -> np.ndarray:
    return np.eye(memberships.shape[1])[memberships.argmax(1)]


def _scores(prob: torch.Tensor, y: torch.Tensor) -> dict[str, list[float]]:
    return scores_from_counts(binary_counts(prob > 0.5, y.bool()).cpu().numpy())


ProgressFn = Callable[[str, int, int], None]  # (message, step, n_steps)


class _Evaluator:
    """Trains the models of each method on one run's data and writes their metrics."""

    def __init__(self, spec: EvaluationSpec, store: ArtifactStore, device: str, progress: ProgressFn | None) -> None:
        self.spec, self.store, self.progress = spec, store, progress
        self.run_spec: ExperimentSpec = store.load_spec(spec.run_id)
        self.epochs = spec.epochs or self.run_spec.train.epochs
        self.folder = evaluation_dir(store, spec.run_id, spec.evaluation_id())
        dev = resolve_device(device)
        dataset, _, self.data = spec_training_data(self.run_spec, dev)
        self.image_shape = dataset.image_shape
        self.n_tasks = len(self.run_spec.tasks)
        self.step, self.n_steps = 0, 0

    def _trainer(self, weights: np.ndarray) -> MultiTaskTrainer:
        t = self.run_spec.train
        return MultiTaskTrainer(seeded_model(self.run_spec, self.image_shape), self.data, lr=t.lr,
                                weight_decay=t.weight_decay, batch_size=t.batch_size, seed=t.seed,
                                task_weights=weights, record=False, amp=precision_amp(t.precision))

    def train_unit(self, name: str, weights: np.ndarray, combine: np.ndarray) -> list[dict[str, Any]]:
        """Train ``m`` models with task weights ``(m, n_tasks)`` in lockstep and score the
        combination ``(n_tasks, m)`` every epoch; cached as ``units/<name>.json``."""
        path = self.folder / "units" / f"{name}.json"
        if path.exists():
            self.step += len(weights) * self.epochs
            return read_json(path)["epochs"]
        trainers = [self._trainer(w) for w in weights]
        rows = []
        for epoch in range(1, self.epochs + 1):
            for trainer in trainers:
                trainer.train_epoch(epoch)
                self.step += 1
                if self.progress is not None:
                    self.progress(f"{name}: epoch {epoch}/{self.epochs}", self.step, self.n_steps)
            row: dict[str, Any] = {"epoch": epoch}
            for split, x, y in (("train", self.data.x_train, self.data.y_train),
                                ("test", self.data.x_test, self.data.y_test)):
                logits = torch.stack([tr.predict_logits(x) for tr in trainers])
                row[split] = _scores(combine_outputs(logits, combine, self.spec.combination), y)
            rows.append(row)
        write_json(path, {"name": name, "epochs": rows})
        return rows

    def hard_method(self, name: str, memberships: np.ndarray) -> list[dict[str, Any]]:
        """One model per group, trained on its tasks only; each task scored by its group's model."""
        groups = memberships.argmax(1)
        per_model = {j: self.train_unit(f"{name}_{j}", memberships[:, j][None, :], np.ones((self.n_tasks, 1)))
                     for j in np.unique(groups)}
        return [{"epoch": e + 1, **{split: {metric: [per_model[groups[t]][e][split][metric][t]
                                                     for t in range(self.n_tasks)]
                                            for metric in per_model[groups[0]][e][split]}
                                    for split in ("train", "test")}}
                for e in range(self.epochs)]


def evaluation_dir(store: ArtifactStore, run_id: str, evaluation_id: str) -> Path:
    return store.job_dir(run_id, "evaluations", evaluation_id)


def grouping_memberships(spec: EvaluationSpec, store: ArtifactStore) -> np.ndarray:
    """STG-MTL memberships ``(n_tasks, k)`` of ``spec`` (or the given ones)."""
    if spec.memberships is not None:
        return np.asarray(spec.memberships, dtype=np.float64)
    vectors = load_task_vectors(store, spec.run_id, spec.datamap_epochs, spec.representation)
    clusterer = TaskClusterer(spec.n_clusters, fuzziness=spec.fuzziness, scaling=spec.scaling,
                              random_state=spec.seed).fit(vectors)
    return clusterer.memberships_


def evaluation_spec_for(run_id: str, grouping: "GroupingSettings", recorded_epochs: list[int], **kwargs: Any
                        ) -> EvaluationSpec:
    """The evaluation of the STG-MTL grouping ``grouping`` (data-map epochs written as ``None``
    when they are all the recorded ones, as the Evaluation page writes them); ``kwargs`` set
    the other fields (methods, combination, epochs)."""
    epochs = None if list(grouping.epochs) == sorted(recorded_epochs) else tuple(grouping.epochs)
    return EvaluationSpec(run_id, grouping.k, fuzziness=grouping.fuzziness, datamap_epochs=epochs,
                          representation=grouping.representation, scaling=grouping.scaling, seed=grouping.seed,
                          **kwargs)


def save_evaluation_spec(spec: EvaluationSpec, store: ArtifactStore) -> str:
    """Validate ``spec`` against its run and create its folder; return the evaluation id."""
    run_spec = store.load_spec(spec.run_id)
    spec.validate(len(run_spec.tasks))
    eval_id = spec.evaluation_id()
    store.create_job(spec.run_id, "evaluations", eval_id, spec.to_json(), needs="evaluate it")
    return eval_id


def load_evaluation_spec(store: ArtifactStore, run_id: str, evaluation_id: str) -> EvaluationSpec:
    return EvaluationSpec.from_json(read_json(evaluation_dir(store, run_id, evaluation_id) / "spec.json"))


def read_results(store: ArtifactStore, run_id: str, evaluation_id: str) -> dict[str, Any] | None:
    return store.read_job_file(run_id, "evaluations", evaluation_id, "results")


def run_evaluation(spec: EvaluationSpec, store: ArtifactStore, *, device: str = "auto",
                   progress: ProgressFn | None = None) -> dict[str, Any]:
    """Train and score every method of ``spec``; resumable (finished units are reused).

    Returns (and stores as ``results.json``) ``{"task_names", "memberships", "methods": {name:
    {"epochs": [{"epoch", "train": {metric: [per task]}, "test": {...}}], "mean_f1": {"train": [per
    epoch], "test": [...]}, "models_trained", "seconds"}}}``.
    """
    eval_id = save_evaluation_spec(spec, store)
    existing = read_results(store, spec.run_id, eval_id)
    if existing is not None:
        return existing
    folder = evaluation_dir(store, spec.run_id, eval_id)
    with store.writer_lock(spec.run_id, "evaluations", eval_id), job_running(folder):
        existing = read_results(store, spec.run_id, eval_id)  # finished by the previous writer
        if existing is not None:
            update_status_file(folder / "status.json", state="completed", progress=1.0, pid=None)
            return existing
        ev = _Evaluator(spec, store, device, progress)
        memberships = grouping_memberships(spec, store)
        k, n = spec.n_clusters, ev.n_tasks
        models = {"mtl": 1, "stl": n, "stg": k, "stg-hard": len(np.unique(memberships.argmax(1))), "random": k}
        ev.n_steps = sum(models[m] for m in spec.methods) * ev.epochs
        methods: dict[str, Any] = {}
        for method in spec.methods:
            t0 = time.perf_counter()
            if method == "mtl":
                rows = ev.train_unit("mtl", np.ones((1, n)), np.ones((n, 1)))
            elif method == "stl":
                rows = ev.hard_method("stl", np.eye(n))
            elif method == "stg":
                rows = ev.train_unit("stg", memberships.T, memberships)
            elif method == "stg-hard":
                rows = ev.hard_method("stg-hard", _hard(memberships))
            else:
                rows = ev.hard_method("random", random_grouping(n, k, spec.seed))
            methods[method] = {
                "epochs": rows, "models_trained": models[method], "seconds": time.perf_counter() - t0,
                "mean_f1": {s: [float(np.mean(r[s]["f1"])) for r in rows] for s in ("train", "test")},
            }
        results = {"evaluation_id": eval_id, "run_id": spec.run_id, "task_names": list(ev.run_spec.task_names),
                   "memberships": memberships.tolist(), "spec": spec.to_json(), "methods": methods}
        write_json(folder / "results.json", results)
        update_status_file(folder / "status.json", state="completed", progress=1.0, pid=None)
        return results
