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
from stg_core.clustering import TaskClusterer
from stg_core.run_vectors import load_task_vectors
from stg_core.config import ExperimentSpec
from stg_core.executors import Executor, LocalExecutor
from stg_core.store import ArtifactStore, job_running, read_json, update_status_file, write_json
from stg_core.tasks import apply_flips
from stg_core.training import (MultiTaskTrainer, TrainingData, binary_counts, load_spec_data, precision_amp,
                               resolve_device, scores_from_counts, seeded_model)

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


@dataclass(frozen=True)
class EvaluationData:
    """What every unit of one evaluation reads: the run's spec, its images ``(N, H, W, C)``
    uint8 (flips applied) and task labels ``(N, n_tasks)``, and the training settings of the
    evaluated models. Host arrays, so it can be put once in Ray's object store."""

    run_spec: dict[str, Any]  # ExperimentSpec.to_json()
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    epochs: int                    # training epochs of every model
    combination: str = "probabilities"
    device: str = "auto"           # resolved where the unit runs (a Ray worker's GPU, say)


def load_evaluation_data(spec: EvaluationSpec, store: ArtifactStore, device: str = "auto") -> EvaluationData:
    """The :class:`EvaluationData` of ``spec`` (loads the run's dataset)."""
    run_spec = store.load_spec(spec.run_id)
    dataset, labels = load_spec_data(run_spec)
    return EvaluationData(run_spec.to_json(), apply_flips(dataset.x_train, labels.flip_train), labels.y_train,
                          apply_flips(dataset.x_test, labels.flip_test), labels.y_test,
                          spec.epochs or run_spec.train.epochs, spec.combination, device)


UnitProgress = Callable[[str, int], None]  # (message, model-epochs done in this unit)


def train_models_unit(data: EvaluationData, name: str, weights: np.ndarray, combine: np.ndarray,
                      progress: UnitProgress | None = None) -> dict[str, Any]:
    """One unit of an evaluation, a pure function of its arguments: train ``m`` models with task
    weights ``weights`` ``(m, n_tasks)`` in lockstep and score their combination ``combine``
    ``(n_tasks, m)`` after every epoch, on the training and the test split.

    Returns ``{"name", "epochs": [{"epoch", "train": {metric: [per task]}, "test": {...}}],
    "models", "seconds"}``. Same data and spec give the same result wherever it runs."""
    t0 = time.perf_counter()
    run_spec = ExperimentSpec.from_json(data.run_spec)
    tensors = TrainingData.from_arrays(data.x_train, data.y_train, data.x_test, data.y_test,
                                       resolve_device(data.device))
    image_shape = tuple(data.x_train.shape[1:])
    t = run_spec.train
    weights = np.asarray(weights, dtype=np.float64)
    trainers = [MultiTaskTrainer(seeded_model(run_spec, image_shape), tensors, lr=t.lr, weight_decay=t.weight_decay,
                                 batch_size=t.batch_size, seed=t.seed, task_weights=w, record=False,
                                 amp=precision_amp(t.precision)) for w in weights]
    rows = []
    for epoch in range(1, data.epochs + 1):
        for i, trainer in enumerate(trainers):
            trainer.train_epoch(epoch)
            if progress is not None:
                progress(f"{name}: epoch {epoch}/{data.epochs}", (epoch - 1) * len(trainers) + i + 1)
        row: dict[str, Any] = {"epoch": epoch}
        for split, x, y in (("train", tensors.x_train, tensors.y_train), ("test", tensors.x_test, tensors.y_test)):
            logits = torch.stack([tr.predict_logits(x) for tr in trainers])
            row[split] = _scores(combine_outputs(logits, combine, data.combination), y)
        rows.append(row)
    return {"name": name, "epochs": rows, "models": len(trainers), "seconds": time.perf_counter() - t0}


@dataclass(frozen=True)
class _Unit:
    name: str
    weights: np.ndarray  # (m, n_tasks)
    combine: np.ndarray  # (n_tasks, m)


def _method_units(method: str, memberships: np.ndarray, n_tasks: int, n_clusters: int, seed: int) -> list[_Unit]:
    """The units of one method: one unit per model for the hard methods (each model trained on
    its group's tasks only), the k lockstep models of soft STG-MTL as one unit (its ensemble
    needs every model's outputs each epoch)."""
    ones = np.ones((n_tasks, 1))
    if method == "mtl":
        return [_Unit("mtl", np.ones((1, n_tasks)), ones)]
    if method == "stg":
        return [_Unit("stg", memberships.T, memberships)]
    hard = _hard_groups(method, memberships, n_tasks, n_clusters, seed)
    return [_Unit(f"{method}_{j}", hard[:, j][None, :], ones) for j in np.unique(hard.argmax(1))]


def _hard_groups(method: str, memberships: np.ndarray, n_tasks: int, n_clusters: int, seed: int) -> np.ndarray:
    """One-hot groups ``(n_tasks, m)`` of a hard method."""
    if method == "stl":
        return np.eye(n_tasks)
    if method == "stg-hard":
        return _hard(memberships)
    return random_grouping(n_tasks, n_clusters, seed)


def _method_rows(method: str, units: dict[str, list[dict[str, Any]]], memberships: np.ndarray, n_tasks: int,
                 n_clusters: int, seed: int) -> list[dict[str, Any]]:
    """A method's scores per epoch from its units' rows: a hard method scores each task by
    its group's model."""
    if method in ("mtl", "stg"):
        return units[method]
    groups = _hard_groups(method, memberships, n_tasks, n_clusters, seed).argmax(1)
    per_model = {j: units[f"{method}_{j}"] for j in np.unique(groups)}
    n_epochs = len(per_model[groups[0]])
    return [{"epoch": e + 1, **{split: {metric: [per_model[groups[t]][e][split][metric][t] for t in range(n_tasks)]
                                        for metric in per_model[groups[0]][e][split]}
                                for split in ("train", "test")}}
            for e in range(n_epochs)]


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


def _offset_progress(progress: ProgressFn, base: int, n_steps: int) -> UnitProgress:
    return lambda message, done: progress(message, base + done, n_steps)


def run_evaluation(spec: EvaluationSpec, store: ArtifactStore, *, device: str = "auto",
                   progress: ProgressFn | None = None, executor: Executor | None = None) -> dict[str, Any]:
    """Train and score every method of ``spec``; resumable (finished units are reused).

    ``executor`` runs the units (:mod:`stg_core.executors`; default: here, one after the
    other); this process alone writes each unit's result as it arrives, so a stopped
    evaluation resumes at unit granularity and any executor gives the same results.

    Returns (and stores as ``results.json``) ``{"task_names", "memberships", "methods": {name:
    {"epochs": [{"epoch", "train": {metric: [per task]}, "test": {...}}], "mean_f1": {"train": [per
    epoch], "test": [...]}, "models_trained", "seconds"}}}`` (``seconds``: the training time
    of the method's models, summed over units).
    """
    eval_id = save_evaluation_spec(spec, store)
    existing = read_results(store, spec.run_id, eval_id)
    if existing is not None:
        return existing
    folder = evaluation_dir(store, spec.run_id, eval_id)
    executor = executor or LocalExecutor()
    with store.writer_lock(spec.run_id, "evaluations", eval_id), job_running(folder):
        existing = read_results(store, spec.run_id, eval_id)  # finished by the previous writer
        if existing is not None:
            update_status_file(folder / "status.json", state="completed", progress=1.0, pid=None)
            return existing
        run_spec = store.load_spec(spec.run_id)
        n, k = len(run_spec.tasks), spec.n_clusters
        epochs = spec.epochs or run_spec.train.epochs
        memberships = grouping_memberships(spec, store)
        plan = {m: _method_units(m, memberships, n, k, spec.seed) for m in spec.methods}
        units = {u.name: u for method_units in plan.values() for u in method_units}
        n_steps = sum(len(u.weights) for u in units.values()) * epochs
        results: dict[str, dict[str, Any]] = {}
        for name in units:
            path = folder / "units" / f"{name}.json"
            if path.exists():
                results[name] = read_json(path)
        step = sum(len(units[name].weights) for name in results) * epochs
        todo = [name for name in units if name not in results]
        if todo:
            data = load_evaluation_data(spec, store, device)
            params = [(name, {"name": name, "weights": units[name].weights, "combine": units[name].combine})
                      for name in todo]
            if progress is not None and isinstance(executor, LocalExecutor):  # per epoch, as the units run here
                base = step
                for name, p in params:
                    p["progress"] = _offset_progress(progress, base, n_steps)
                    base += len(units[name].weights) * epochs
            for name, result in executor.map_units(train_models_unit, data, params):
                write_json(folder / "units" / f"{name}.json", result)
                results[name] = result
                step += len(units[name].weights) * epochs
                if progress is not None:
                    progress(f"{name}: done ({len(results)}/{len(units)} units)", step, n_steps)
        methods: dict[str, Any] = {}
        for method in spec.methods:
            rows = _method_rows(method, {u: r["epochs"] for u, r in results.items()}, memberships, n, k, spec.seed)
            methods[method] = {
                "epochs": rows, "models_trained": sum(len(u.weights) for u in plan[method]),
                "seconds": float(sum(results[u.name].get("seconds", 0.0) for u in plan[method])),
                "mean_f1": {s: [float(np.mean(r[s]["f1"])) for r in rows] for s in ("train", "test")},
            }
        results_json = {"evaluation_id": eval_id, "run_id": spec.run_id, "task_names": list(run_spec.task_names),
                        "memberships": memberships.tolist(), "spec": spec.to_json(), "methods": methods}
        write_json(folder / "results.json", results_json)
        update_status_file(folder / "status.json", state="completed", progress=1.0, pid=None)
        return results_json
