"""Seed sweeps: the same experiment trained once per training seed, recorded as one sweep.

A sweep is a base :class:`~stg_core.config.ExperimentSpec` and a list of seeds; run ``s`` is
the base spec with ``train.seed = s`` (weights, batch order, dropout; the data subset stays
``data_seed``'s). Runs already finished in the store are reused, so a stopped sweep resumes
run by run. The record lives at ``sweeps/<id>.json`` in the store::

    {"id", "spec": base spec, "seeds": [...], "runs": {seed: run id}, "state", "executor"}

With the local executor each run trains here through :func:`~stg_core.training.train_run`
(it also resumes a half-trained run from its last checkpoint). With Ray each unfinished run is
a Ray task that trains into a scratch folder on its worker and returns the run's files; this
process, the store's one writer, writes them in (``status.json`` last).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stg_core import config
from stg_core.config import ExperimentSpec
from stg_core.executors import Executor, LocalExecutor, torch_threads
from stg_core.store import ArtifactStore, read_json, write_json

_SWEEP_ID = re.compile(r"^[0-9a-f]{12}$")

ProgressFn = Callable[[str, int, int], None]  # (message, step, n_steps)


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0-9"`` → 0..9, ``"0,3,5-7"`` → 0, 3, 5, 6, 7 (sorted, without duplicates)."""
    seeds: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        first, sep, last = part.partition("-")
        try:
            lo, hi = int(first), int(last) if sep else int(first)
        except ValueError:
            raise ValueError(f"seeds {text!r}: write a range like 0-9 or a list like 0,3,5-7") from None
        if lo < 0 or hi < lo:
            raise ValueError(f"seeds {part!r}: a range goes from a non-negative seed up, like 0-9")
        seeds.update(range(lo, hi + 1))
    if len(seeds) < 2:
        raise ValueError(f"seeds {text!r}: a sweep needs at least two seeds")
    return tuple(sorted(seeds))


def sweep_id(base: ExperimentSpec, seeds: Sequence[int]) -> str:
    """12 hex digits hashing the base spec (its seed left out), the seeds and the training version."""
    spec = base.with_train(seed=0).to_json()
    spec.pop("data_root")
    text = json.dumps({"spec": spec, "seeds": sorted(seeds), "training_version": config.TRAINING_VERSION},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def sweep_path(store: ArtifactStore, sweep: str) -> Path:
    """``sweeps/<id>.json`` of the store; the id is checked so no path can escape the store."""
    if not isinstance(sweep, str) or not _SWEEP_ID.match(sweep):
        raise ValueError(f"invalid sweep id {sweep!r}: expected 12 hexadecimal digits")
    return store.root / "sweeps" / f"{sweep}.json"


def list_sweeps(store: ArtifactStore) -> list[dict[str, Any]]:
    """Every sweep record in the store, newest first."""
    folder = store.root / "sweeps"
    if not folder.exists():
        return []
    paths = sorted((p for p in folder.glob("*.json") if _SWEEP_ID.match(p.stem)), key=lambda p: p.stat().st_mtime,
                   reverse=True)
    return [read_json(p) for p in paths]


def read_sweep(store: ArtifactStore, sweep: str) -> dict[str, Any]:
    """The record of sweep ``sweep`` (an id or a unique prefix)."""
    if not _SWEEP_ID.match(sweep or ""):
        matches = [s["id"] for s in list_sweeps(store) if sweep and s["id"].startswith(sweep)]
        if len(matches) != 1:
            raise ValueError(f"no sweep {sweep!r} in {store.root}" if not matches else
                             f"sweep prefix {sweep!r} is ambiguous: {', '.join(matches)}")
        sweep = matches[0]
    path = sweep_path(store, sweep)
    if not path.exists():
        raise ValueError(f"no sweep {sweep!r} in {store.root}")
    return read_json(path)


def seed_spec(base: ExperimentSpec, seed: int) -> ExperimentSpec:
    return base.with_train(seed=seed)


def train_seed_unit(loaded: Any, spec: dict[str, Any], device: str = "auto") -> dict[str, Any]:
    """One run of a sweep as a pure unit: train ``spec`` (ExperimentSpec JSON) on ``loaded``
    (its dataset and labels) in a scratch store and return ``{"run_id", "files": {path in the
    run folder: bytes}}`` for the caller to write."""
    from stg_core.training import train_run  # torch only where a run trains

    experiment = ExperimentSpec.from_json(spec)
    with tempfile.TemporaryDirectory(prefix="stg-sweep-") as scratch:
        store = ArtifactStore(scratch)
        run_id = train_run(experiment, store, device=device, loaded=loaded)
        folder = store.run_dir(run_id)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
                 if p.is_file() and not p.name.startswith(".")}
    return {"run_id": run_id, "files": files}


def run_sweep(base: ExperimentSpec, seeds: Sequence[int], store: ArtifactStore, *, device: str = "auto",
              executor: Executor | None = None, progress: ProgressFn | None = None,
              epoch_progress: Callable[[int, int, int, int], None] | None = None,
              download: bool = False) -> dict[str, Any]:
    """Train one run of ``base`` per seed in ``seeds`` (finished runs reused) and record the
    sweep; return its record. ``progress`` is told of each finished run, ``epoch_progress``
    (local executor only) of each batch, as :func:`~stg_core.training.train_run`'s ``progress``."""
    from stg_core.training import load_spec_data, train_run

    base.train.validate()
    seeds = tuple(sorted(set(int(s) for s in seeds)))
    if len(seeds) < 2:
        raise ValueError("a sweep needs at least two seeds")
    executor = executor or LocalExecutor()
    sid = sweep_id(base, seeds)
    specs = {s: seed_spec(base, s) for s in seeds}
    record = {"id": sid, "spec": base.with_train(seed=0).to_json(), "seeds": list(seeds),
              "runs": {str(s): spec.run_id() for s, spec in specs.items()}, "state": "running",
              "executor": executor.name}
    path = sweep_path(store, sid)
    write_json(path, record)

    def finished(seed: int) -> bool:
        run_id = specs[seed].run_id()
        return store.exists(run_id) and store.read_status(run_id).get("state") == "completed"

    todo = [s for s in seeds if not finished(s)]
    done = len(seeds) - len(todo)
    if progress is not None and done:
        progress(f"reusing {done} finished run(s)", done, len(seeds))
    if todo:
        loaded = load_spec_data(base, download=download)  # the seed changes no data: loaded once for every run
        if isinstance(executor, LocalExecutor):
            for seed in todo:
                with torch_threads(executor.threads):
                    train_run(specs[seed], store, device=device, progress=epoch_progress, loaded=loaded)
                done += 1
                if progress is not None:
                    progress(f"seed {seed}: run {specs[seed].run_id()} done", done, len(seeds))
        else:
            units = [(str(s), {"spec": specs[s].to_json(), "device": device}) for s in todo]
            for seed, result in executor.map_units(train_seed_unit, loaded, units):
                run_id = result["run_id"]
                if run_id != specs[int(seed)].run_id():
                    raise ValueError(f"seed {seed} trained run {run_id}, not {specs[int(seed)].run_id()}")
                store.import_run_files(run_id, result["files"])
                done += 1
                if progress is not None:
                    progress(f"seed {seed}: run {run_id} done", done, len(seeds))
    record["state"] = "completed"
    write_json(path, record)
    return record
