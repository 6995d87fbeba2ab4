"""Background jobs: training runs, evaluations and groupings as ``python -m stg_core.worker`` processes.

- :func:`submit` saves nothing new for a job that is already finished or alive (the same
  spec submitted twice — from two browser sessions, say — gives one job: the check and the
  start happen under a file lock), queues it when ``max_concurrent`` workers already run,
  and otherwise starts a worker in its own process group (``start_new_session``), its output
  going to ``worker.log`` in the run (or evaluation) folder (rotated at each start once it
  passes ``LOG_MAX_BYTES``). A job another process is writing — ``python -m stg_core train``
  in a terminal, say — is never started twice: submit answers ``running``.
- :func:`refresh` marks jobs whose writer died as ``interrupted`` — resumable — and starts
  queued jobs when slots free up. Liveness is the job's writer lock (:mod:`stg_core.locks`),
  whoever holds it; a worker's pid counts only for its first seconds, before it takes the lock.
  Workers call it when they exit; the app calls it when it polls.
- :func:`cancel` signals the worker's process group (SIGTERM): the worker stops between two
  steps and leaves the job resumable; a queued job is simply dequeued.
- :func:`delete` removes a run (or only its evaluations and groupings), refused while any
  of its jobs is being written.

Every status write outside the job's own writer (queueing, starting, marking interrupted)
happens while holding the job's lock, so two processes never write one status at once.

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

from stg_core import locks
from stg_core.store import ArtifactStore, open_private, read_json, update_status_file

ACTIVE = ("queued", "running")
#: ``worker.log`` is moved to ``worker.log.1`` (replacing the previous one) when a job starts
#: with a log larger than this: at most about twice this per job folder.
LOG_MAX_BYTES = 1_000_000


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

    def lock_args(self) -> tuple[str, str | None, str | None]:
        """``(run_id, kind, job_id)`` of this job's writer lock."""
        if self.evaluation_id is not None:
            return self.run_id, "evaluations", self.evaluation_id
        if self.grouping_id is not None:
            return self.run_id, "groupings", self.grouping_id
        return self.run_id, None, None


def writer_pid(store: ArtifactStore, job: Job) -> int | None:
    """Pid of the process writing ``job`` now (a worker, a command line, a library call; 0 if
    not known yet), or None when nobody is."""
    return store.writer_pid(*job.lock_args())


def _writer(store: ArtifactStore, job: Job, wait: float = 0) -> Any:
    return store.writer_lock(*job.lock_args(), wait=wait)


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
    with open_private(store.root / "jobs.lock") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


def rotate_log(path: Path, max_bytes: int = LOG_MAX_BYTES) -> None:
    """Move a log larger than ``max_bytes`` to ``<name>.1`` (replacing the previous one)."""
    try:
        if path.stat().st_size > max_bytes:
            os.replace(path, path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass


def _start(store: ArtifactStore, job: Job, device: str, max_concurrent: int) -> None:
    """Start a worker for ``job``, marking it running, under the job's lock (so a writer that
    started meanwhile makes this a :class:`~stg_core.locks.JobBusyError`, and nothing starts)."""
    cmd = [sys.executable, "-m", "stg_core.worker", job.run_id, "--store", str(store.root.resolve()),
           "--device", device, "--max-concurrent", str(max_concurrent)]
    if job.evaluation_id:
        cmd += ["--evaluation", job.evaluation_id]
    if job.grouping_id:
        cmd += ["--grouping", job.grouping_id]
    with _writer(store, job):
        rotate_log(job.log_path(store))
        log = open_private(job.log_path(store))  # the child keeps it; closed below in the parent
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=Path(__file__).resolve().parents[1])
        finally:
            log.close()
        write_job_status(store, job, state="running", pid=proc.pid, started=time.time(), error=None)


def _alive(store: ArtifactStore, job: Job, status: dict[str, Any]) -> bool:
    """Is someone writing ``job``: its lock held, or its worker still starting up?"""
    return writer_pid(store, job) is not None or locks.is_worker(status.get("pid"))


def _running(store: ArtifactStore) -> int:
    return sum(1 for j in all_jobs(store) if read_status(store, j).get("state") == "running")


def submit(store: ArtifactStore, job: Job, *, max_concurrent: int = 1, device: str = "auto") -> str:
    """Start (or queue, or reuse) ``job``; its spec must already be saved in the store.
    Returns the job's state afterwards: ``completed``, ``running`` or ``queued``. A job that
    another process is writing (a command-line ``train`` of the same run) is ``running``:
    nothing is started beside it."""
    if not (job.folder(store) / "spec.json").exists():
        raise ValueError(f"no saved spec for {job}: save it first")
    with _lock(store):
        _refresh_locked(store, max_concurrent, device, start_queued=False)
        state = read_status(store, job).get("state")
        if state in ("completed", "running", "queued"):
            return state
        try:
            if _running(store) < max_concurrent:
                _start(store, job, device, max_concurrent)
                return "running"
            with _writer(store, job):
                write_job_status(store, job, state="queued", queued=time.time(), error=None)
            return "queued"
        except locks.JobBusyError:
            return "running"  # written by another process, which writes its status


def cancel(store: ArtifactStore, job: Job) -> str:
    """Stop ``job``: SIGTERM to its worker's process group, or dequeue it. Returns the new state
    (or a sentence, for a job written by a process the app did not start)."""
    with _lock(store):
        status = read_status(store, job)
        if status.get("state") == "queued":
            try:
                with _writer(store, job):
                    write_job_status(store, job, state="interrupted", error="cancelled before it started")
            except locks.JobBusyError as exc:
                return str(exc)
            return "interrupted"
        if status.get("state") == "running" and locks.is_worker(status.get("pid")):
            os.killpg(status["pid"], signal.SIGTERM)  # the worker marks itself interrupted
            return "cancelling"
        pid = writer_pid(store, job)
        if pid is not None:
            return f"{locks.busy_message(*job.lock_args(), pid)}, not started here: stop it where it runs"
        return str(status.get("state"))


def refresh(store: ArtifactStore, *, max_concurrent: int = 1, device: str = "auto") -> None:
    """Mark dead writers' jobs interrupted and start queued jobs while slots are free."""
    with _lock(store):
        _refresh_locked(store, max_concurrent, device, start_queued=True)


def delete(store: ArtifactStore, run_id: str, *, derived_only: bool = False) -> int:
    """Delete a run, or only its evaluations and groupings (``derived_only``); return the bytes
    freed. Refused (:class:`~stg_core.locks.JobBusyError`) while one of those jobs is written.
    Holds the jobs lock, so no queued job of the run starts meanwhile."""
    with _lock(store):
        for job in all_jobs(store):  # a worker still starting up has not taken its lock yet
            status = read_status(store, job)
            if job.run_id == run_id and (job.kind != "training" or not derived_only) \
                    and status.get("state") == "running" and locks.is_worker(status.get("pid")):
                raise locks.JobBusyError(locks.busy_message(*job.lock_args(), status["pid"]), status["pid"])
        return store.delete_run(run_id, derived_only=derived_only)


def _refresh_locked(store: ArtifactStore, max_concurrent: int, device: str, *, start_queued: bool) -> None:
    queued = []
    for job in all_jobs(store):
        status = read_status(store, job)
        state = status.get("state")
        if state == "running":
            if not _alive(store, job, status):
                try:
                    with _writer(store, job):
                        status = read_status(store, job)  # as its writer left it
                        if status.get("state") == "running":
                            write_job_status(store, job, state="interrupted", pid=None,
                                             error=status.get("error") or "the worker stopped unexpectedly "
                                                                           "(resumable)")
                except locks.JobBusyError:
                    pass  # a writer started meanwhile
        elif state == "queued":
            queued.append((float(status.get("queued", 0)), job))
    if start_queued:
        for _, job in sorted(queued, key=lambda q: q[0]):
            if _running(store) >= max_concurrent:
                break
            try:
                _start(store, job, device, max_concurrent)
            except locks.JobBusyError:
                continue  # written by another process meanwhile
