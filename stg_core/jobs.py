"""Background jobs: training runs, evaluations and groupings as ``python -m stg_core.worker`` processes.

- :func:`submit` saves nothing new for a job that is already finished or alive (the same
  spec submitted twice — from two browser sessions, say — gives one job: the check and the
  start happen under a file lock), queues it when ``max_concurrent`` workers already run,
  and otherwise starts a worker in its own process group (``start_new_session``), its output
  going to ``worker.log`` in the run (or evaluation) folder.
- :func:`refresh` marks jobs whose worker died (its pid is gone or now belongs to another
  program) as ``interrupted`` — resumable — and starts queued jobs when slots free up.
  Workers call it when they exit; the app calls it when it polls.
- :func:`cancel` signals the worker's process group (SIGTERM): the worker stops between two
  steps and leaves the job resumable; a queued job is simply dequeued.

Threads and ``multiprocessing`` from a Streamlit page are avoided on purpose: a page script
is re-run and its threads outlive it; a separate process with its state on disk does not care.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from stg_core.store import ArtifactStore, read_json, update_status_file

ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class Job:
    """A training run (no ``evaluation_id`` nor ``grouping_id``), one evaluation of a run, or
    one grouping of a run's tasks by one method."""

    run_id: str
    evaluation_id: str | None = None
    grouping_id: str | None = None

    def __post_init__(self) -> None:
        if self.evaluation_id is not None and self.grouping_id is not None:
            raise ValueError("a job is an evaluation or a grouping, not both")

    @property
    def kind(self) -> str:
        return "evaluation" if self.evaluation_id else "grouping" if self.grouping_id else "training"

    def folder(self, store: ArtifactStore) -> Path:
        if self.evaluation_id is not None:
            from stg_core.evaluation import evaluation_dir

            return evaluation_dir(store, self.run_id, self.evaluation_id)
        if self.grouping_id is not None:
            from stg_core.grouping import grouping_dir

            return grouping_dir(store, self.run_id, self.grouping_id)
        return store.run_dir(self.run_id)

    def status_path(self, store: ArtifactStore) -> Path:
        return self.folder(store) / "status.json"

    def log_path(self, store: ArtifactStore) -> Path:
        return self.folder(store) / "worker.log"


def read_status(store: ArtifactStore, job: Job) -> dict[str, Any]:
    path = job.status_path(store)
    return read_json(path) if path.exists() else {"state": "missing"}


def write_job_status(store: ArtifactStore, job: Job, **fields: Any) -> None:
    if job.kind == "training":
        store.write_status(job.run_id, **fields)  # also updates the run index
    else:
        update_status_file(job.status_path(store), **fields)


@contextmanager
def _lock(store: ArtifactStore) -> Iterator[None]:
    with open(store.root / "jobs.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_worker(pid: Any) -> bool:
    """Is ``pid`` a live ``stg_core.worker`` process? (Not just any process: pids get reused.)"""
    if not _alive(pid):
        return False
    try:
        return b"stg_core.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (not Linux): trust the live pid


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) still answers kill(0).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def all_jobs(store: ArtifactStore) -> list[Job]:
    """Every training run, evaluation and grouping in the store."""
    jobs = []
    for run_id in store.run_ids():
        jobs.append(Job(run_id))
        for sub, make in (("evaluations", lambda i: Job(run_id, evaluation_id=i)),
                          ("groupings", lambda i: Job(run_id, grouping_id=i))):
            folder = store.run_dir(run_id) / sub
            if folder.exists():
                jobs.extend(make(p.name) for p in sorted(folder.iterdir()) if (p / "spec.json").exists())
    return jobs


def _start(store: ArtifactStore, job: Job, device: str, max_concurrent: int) -> None:
    cmd = [sys.executable, "-m", "stg_core.worker", job.run_id, "--store", str(store.root.resolve()),
           "--device", device, "--max-concurrent", str(max_concurrent)]
    if job.evaluation_id:
        cmd += ["--evaluation", job.evaluation_id]
    if job.grouping_id:
        cmd += ["--grouping", job.grouping_id]
    log = open(job.log_path(store), "ab")  # noqa: SIM115 - the child keeps it; closed below in the parent
    try:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=Path(__file__).resolve().parents[1])
    finally:
        log.close()
    write_job_status(store, job, state="running", pid=proc.pid, started=time.time(), error=None)


def _running(store: ArtifactStore) -> int:
    return sum(1 for j in all_jobs(store) if read_status(store, j).get("state") == "running")


def submit(store: ArtifactStore, job: Job, *, max_concurrent: int = 1, device: str = "auto") -> str:
    """Start (or queue, or reuse) ``job``; its spec must already be saved in the store.
    Returns the job's state afterwards: ``completed``, ``running`` or ``queued``."""
    if not (job.folder(store) / "spec.json").exists():
        raise ValueError(f"no saved spec for {job}: save it first")
    with _lock(store):
        _refresh_locked(store, max_concurrent, device, start_queued=False)
        state = read_status(store, job).get("state")
        if state in ("completed", "running", "queued"):
            return state
        if _running(store) < max_concurrent:
            _start(store, job, device, max_concurrent)
            return "running"
        write_job_status(store, job, state="queued", queued=time.time(), error=None)
        return "queued"


def cancel(store: ArtifactStore, job: Job) -> str:
    """Stop ``job``: SIGTERM to its worker's process group, or dequeue it. Returns the new state."""
    with _lock(store):
        status = read_status(store, job)
        if status.get("state") == "queued":
            write_job_status(store, job, state="interrupted", error="cancelled before it started")
            return "interrupted"
        if status.get("state") == "running" and _is_worker(status.get("pid")):
            os.killpg(status["pid"], signal.SIGTERM)  # the worker marks itself interrupted
            return "cancelling"
        return str(status.get("state"))


def refresh(store: ArtifactStore, *, max_concurrent: int = 1, device: str = "auto") -> None:
    """Mark dead workers' jobs interrupted and start queued jobs while slots are free."""
    with _lock(store):
        _refresh_locked(store, max_concurrent, device, start_queued=True)


def _refresh_locked(store: ArtifactStore, max_concurrent: int, device: str, *, start_queued: bool) -> None:
    queued = []
    for job in all_jobs(store):
        status = read_status(store, job)
        state = status.get("state")
        if state == "running":
            if not _is_worker(status.get("pid")):
                write_job_status(store, job, state="interrupted", pid=None,
                              error=status.get("error") or "the worker stopped unexpectedly (resumable)")
        elif state == "queued":
            queued.append((float(status.get("queued", 0)), job))
    if start_queued:
        for _, job in sorted(queued, key=lambda q: q[0]):
            if _running(store) >= max_concurrent:
                break
            _start(store, job, device, max_concurrent)
