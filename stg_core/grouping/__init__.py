"""Task-grouping methods side by side: STG-MTL and the methods it is compared with.

=========  =====================================================================  ==========
method     what it does                                                           output
=========  =====================================================================  ==========
stg        k-means + fuzzy memberships on the run's data maps (:mod:`stg_core.clustering`)  soft
tag        lookahead inter-task affinity during an MTL run, then group selection  hard
grad-tae   per-sample gradients at the run's MTL model, random task subsets, SDP  hard
dmtg       K branches, Gumbel-softmax task assignment trained jointly             hard
random     seeded random groups of (near) equal size: the floor to beat          hard
=========  =====================================================================  ==========

Every method returns a :class:`GroupingResult` (memberships ``(n_tasks, k)``, optional
affinity ``(n_tasks, n_tasks)``, :class:`GroupingCost`). :func:`run_grouping` runs one
:class:`GroupingSpec` on a completed run and keeps the result under
``runs/<id>/groupings/<grouping id>/`` (``spec.json``, ``status.json``, ``result.json``,
``affinity.npy``), so the app and the command line reuse it; ``python -m stg_core.worker RUN
--grouping ID`` runs it in the background.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stg_core import config
from stg_core.grouping.base import GroupingCost, GroupingResult, MethodParams, ProgressFn, RunContext, one_hot
from stg_core.store import ArtifactStore, job_running, read_json, update_status_file, write_json, write_npy
from stg_core.validation import check_n_clusters

if TYPE_CHECKING:
    from stg_core.executors import Executor

__all__ = ["GROUPING_METHODS", "GroupingCost", "GroupingResult", "GroupingSpec", "MethodParams", "RunContext",
           "default_params", "grouping_dir", "grouping_unit", "list_groupings", "load_grouping_spec", "one_hot",
           "params_class", "read_grouping", "run_grouping", "run_groupings", "save_grouping_spec"]

# Bumped whenever a method's code changes what a spec produces: part of the grouping id, so a
# stored grouping is never reused across such a change.
GROUPING_VERSION = 2  # 2: warnings (collapse, fallback, early settling) apart from notes

#: Method name -> module in this package (imported on use: TAG and DMTG pull in training code).
GROUPING_METHODS = {"stg": "stg", "tag": "tag", "grad-tae": "grad_tae", "dmtg": "dmtg", "random": "random_groups"}


def _module(method: str) -> Any:
    if method not in GROUPING_METHODS:
        raise ValueError(f"unknown grouping method {method!r}; methods: {', '.join(GROUPING_METHODS)}")
    return importlib.import_module(f"stg_core.grouping.{GROUPING_METHODS[method]}")


def params_class(method: str) -> type[MethodParams]:
    """The dataclass that declares the method's parameters (each module's ``PARAMS``)."""
    return _module(method).PARAMS


def default_params(method: str) -> dict[str, Any]:
    """The method's parameters and their defaults, by name."""
    return params_class(method)().to_dict()


@dataclass(frozen=True)
class GroupingSpec:
    """One grouping to compute: ``method`` with ``n_clusters`` groups on run ``run_id``.

    ``params``: the method's parameters, or a mapping of those that differ from the defaults
    (read by the method's :class:`MethodParams`; an unknown method or name is a ``ValueError``).
    The id hashes the full parameter set, defaults included.
    """

    run_id: str
    method: str
    n_clusters: int
    seed: int = 0
    params: MethodParams | Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        cls = params_class(self.method)
        if not isinstance(self.params, cls):
            if isinstance(self.params, MethodParams):
                raise ValueError(f"{type(self.params).__name__} are not the parameters of method {self.method!r}")
            object.__setattr__(self, "params", cls.from_dict(self.params or {}))

    @property
    def method_params(self) -> MethodParams:
        assert isinstance(self.params, MethodParams)  # __post_init__
        return self.params

    def resolved_params(self) -> dict[str, Any]:
        """Every parameter by name, defaults included (the stored spec's ``params``)."""
        return self.method_params.to_dict()

    def validate(self, n_tasks: int) -> None:
        check_n_clusters(self.n_clusters, n_tasks)
        self.method_params.validate(n_tasks, self.n_clusters)

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "method": self.method, "n_clusters": int(self.n_clusters),
                "seed": int(self.seed), "params": self.resolved_params()}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "GroupingSpec":
        return cls(obj["run_id"], obj["method"], int(obj["n_clusters"]), int(obj.get("seed", 0)),
                   dict(obj.get("params", {})))

    def grouping_id(self) -> str:
        # TAG, Grad-TAE and DMTG train with the training code: its version is part of the id too.
        text = json.dumps({**self.to_json(), "version": GROUPING_VERSION, "training_version": config.TRAINING_VERSION},
                          sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def grouping_dir(store: ArtifactStore, run_id: str, grouping_id: str) -> Path:
    return store.job_dir(run_id, "groupings", grouping_id)


def save_grouping_spec(spec: GroupingSpec, store: ArtifactStore) -> str:
    """Validate ``spec`` against its (completed) run and create its folder; return the id."""
    run_spec = store.load_spec(spec.run_id)
    spec.validate(len(run_spec.tasks))
    gid = spec.grouping_id()
    store.create_job(spec.run_id, "groupings", gid, spec.to_json(), needs="group its tasks")
    return gid


def load_grouping_spec(store: ArtifactStore, run_id: str, grouping_id: str) -> GroupingSpec:
    return GroupingSpec.from_json(read_json(grouping_dir(store, run_id, grouping_id) / "spec.json"))


def read_grouping(store: ArtifactStore, run_id: str, grouping_id: str) -> GroupingResult | None:
    """The stored result of a finished grouping, or ``None``."""
    folder = grouping_dir(store, run_id, grouping_id)
    if not (folder / "result.json").exists():
        return None
    affinity_path = folder / "affinity.npy"
    affinity = np.load(affinity_path, allow_pickle=False) if affinity_path.exists() else None
    return GroupingResult.from_json(read_json(folder / "result.json"), affinity)


def list_groupings(store: ArtifactStore, run_id: str) -> list[tuple[str, GroupingSpec]]:
    """Every saved grouping of a run, oldest first: ``(grouping id, spec)``."""
    folder = store.run_dir(run_id) / "groupings"
    if not folder.exists():
        return []
    found = sorted((p for p in folder.iterdir() if (p / "spec.json").exists()),
                   key=lambda p: ((p / "spec.json").stat().st_mtime, p.name))
    return [(p.name, GroupingSpec.from_json(read_json(p / "spec.json"))) for p in found]


def run_grouping(spec: GroupingSpec, store: ArtifactStore, *, device: str = "auto",
                 progress: ProgressFn | None = None) -> GroupingResult:
    """Compute (or reuse) the grouping of ``spec`` and store it; ``progress`` follows the
    method's steps. A killed grouping job starts over when resubmitted (none of the methods runs
    for more than one training's time)."""
    return run_groupings([spec], store, device=device, progress=progress)[0]


def _write_grouping(folder: Path, gid: str, spec: GroupingSpec, result: GroupingResult) -> None:
    """The grouping's files, written by the one process that holds its lock; status last."""
    if result.affinity is not None:
        write_npy(folder / "affinity.npy", result.affinity)
    write_json(folder / "result.json", {"grouping_id": gid, "spec": spec.to_json(),
                                        **result.to_json(with_affinity=False)})
    update_status_file(folder / "status.json", state="completed", progress=1.0, pid=None)


def grouping_unit(store_root: str, *, spec: dict[str, Any], device: str,
                  progress: ProgressFn | None = None) -> GroupingResult:
    """One grouping computed from the run at ``store_root`` and returned, not written: what an
    executor runs per method (:func:`run_groupings`). Reads the store only."""
    grouping = GroupingSpec.from_json(spec)
    ctx = RunContext(ArtifactStore(store_root), grouping.run_id, device)
    return _module(grouping.method).group(ctx, grouping.n_clusters, grouping.method_params, seed=grouping.seed,
                                          progress=progress)


def run_groupings(specs: Sequence[GroupingSpec], store: ArtifactStore, *, device: str = "auto",
                  executor: Executor | None = None, progress: ProgressFn | None = None) -> list[GroupingResult]:
    """Several groupings of one store (one per method, say) as independent units on
    ``executor`` (default: one after the other here); finished ones are reused. This process
    holds every pending grouping's lock and writes each result as it arrives, so the store keeps
    a single writer. ``progress(message, step, n_steps)``: each method's own steps when the
    units run here, and after each unit ``(method: done, units done, units)``. Results in
    ``specs``' order."""
    from stg_core.executors import LocalExecutor

    executor = executor or LocalExecutor()
    ids = [save_grouping_spec(spec, store) for spec in specs]
    results: dict[str, GroupingResult] = {}
    with ExitStack() as stack:
        pending: dict[str, GroupingSpec] = {}
        for gid, spec in zip(ids, specs):
            if gid in pending or gid in results:
                continue
            existing = read_grouping(store, spec.run_id, gid)
            folder = grouping_dir(store, spec.run_id, gid)
            if existing is None:
                stack.enter_context(store.writer_lock(spec.run_id, "groupings", gid))
                existing = read_grouping(store, spec.run_id, gid)  # finished by the previous writer
                if existing is not None:  # its status may still be the "running" of a worker start
                    update_status_file(folder / "status.json", state="completed", progress=1.0, pid=None)
            if existing is not None:
                results[gid] = existing
                continue
            stack.enter_context(job_running(folder))  # failed or interrupted unless written below
            pending[gid] = spec
        local = isinstance(executor, LocalExecutor)
        units = [(gid, {"spec": spec.to_json(), "device": device, **({"progress": progress} if local else {})})
                 for gid, spec in pending.items()]
        for gid, result in executor.map_units(grouping_unit, str(store.root), units):
            spec = pending[gid]
            _write_grouping(grouping_dir(store, spec.run_id, gid), gid, spec, result)
            results[gid] = result
            if progress is not None and len(units) > 1:
                progress(f"{spec.method}: done", len(results), len(set(ids)))
    return [results[gid] for gid in ids]
