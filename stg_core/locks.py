"""One writer per job: an OS file lock per training run, evaluation and grouping.

Whoever trains, evaluates or groups — the command line, an app worker or a library call —
holds the job's lock (``locks/<run>.lock``, ``locks/<run>.evaluations.<id>.lock``, …) for the
whole job, and writes its pid beside it (``.owner``). A second starter waits a moment, then
refuses with "run X is being trained by process P". The operating system releases the lock
when its holder dies, even by SIGKILL, so a job is *live* exactly while its lock is held:
nothing is inferred from process names or heartbeats.

The holder writes the job's ``status.json``; others write it only while holding the lock
themselves (marking a dead job interrupted, queueing one), so no two processes ever write one
status at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import filelock

#: Seconds a starter waits for a held lock before refusing. Probes (:func:`lock_holder`) hold
#: a free lock for microseconds; this wait keeps them from turning a start into a refusal.
WAIT_SECONDS = 2.0

_ID = re.compile(r"^[0-9a-f]{12}$")
_KINDS = {None: ("run {run}", "trained"), "evaluations": ("evaluation {job} of run {run}", "computed"),
          "groupings": ("grouping {job} of run {run}", "computed")}


class JobBusyError(ValueError):
    """The job is held by another process (``pid``; 0 when it has not written it yet)."""

    def __init__(self, message: str, pid: int) -> None:
        super().__init__(message)
        self.pid = pid


def lock_name(run_id: str, kind: str | None = None, job_id: str | None = None) -> str:
    """File name (without suffix) of a job's lock: ``<run>`` for training, ``<run>.<kind>.<id>``
    for an evaluation or grouping. Ids are checked, so no name can leave the locks folder."""
    if kind not in _KINDS or (kind is None) != (job_id is None):
        raise ValueError(f"unknown kind of job {kind!r}")
    for value in (run_id,) if kind is None else (run_id, job_id):
        if not isinstance(value, str) or not _ID.match(value):
            raise ValueError(f"invalid id {value!r}: expected 12 hexadecimal digits")
    return run_id if kind is None else f"{run_id}.{kind}.{job_id}"


def busy_message(run_id: str, kind: str | None, job_id: str | None, pid: int) -> str:
    """"run X is being trained by process P" (or "evaluation E of run X is being computed by …")."""
    what, verb = _KINDS[kind]
    who = f"process {pid}" if pid > 0 else "another process"
    return f"{what.format(run=run_id, job=job_id)} is being {verb} by {who}"


def _owner_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


@contextmanager
def job_lock(root: Path, run_id: str, kind: str | None = None, job_id: str | None = None, *,
             wait: float = WAIT_SECONDS) -> Iterator[None]:
    """Hold the job's lock for the ``with`` block; :class:`JobBusyError` (a ``ValueError``)
    when another process still holds it after ``wait`` seconds."""
    from stg_core.store import open_private, private_dir  # (the store imports this module)

    name = lock_name(run_id, kind, job_id)
    folder = Path(root) / "locks"
    private_dir(folder)
    lock = filelock.FileLock(folder / f"{name}.lock", mode=0o600)
    try:
        lock.acquire(timeout=wait)
    except filelock.Timeout:
        pid = _owner_pid(folder / f"{name}.owner")
        raise JobBusyError(busy_message(run_id, kind, job_id, pid), pid) from None
    try:
        with open_private(folder / f"{name}.owner", "w") as owner:
            owner.write(str(os.getpid()))
        yield
    finally:
        (folder / f"{name}.owner").unlink(missing_ok=True)
        lock.release()


def lock_holder(root: Path, run_id: str, kind: str | None = None, job_id: str | None = None) -> int | None:
    """Pid of the process holding the job's lock (0 if it has not written it yet), or None when
    the lock is free — its holder finished or died."""
    name = lock_name(run_id, kind, job_id)
    path = Path(root) / "locks" / f"{name}.lock"
    if not path.exists():
        return None
    lock = filelock.FileLock(path, mode=0o600)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return _owner_pid(path.with_suffix(".owner"))
    lock.release()
    return None


def remove_locks(root: Path, run_id: str, kinds: tuple[str | None, ...]) -> None:
    """Delete the lock files of a deleted run's jobs of ``kinds`` (None: its training lock)."""
    folder = Path(root) / "locks"
    if not folder.is_dir():
        return
    lock_name(run_id)  # checks the id
    for path in folder.iterdir():
        parts = path.name.split(".")
        if parts[0] == run_id and ((None in kinds and len(parts) == 2) or (len(parts) == 4 and parts[1] in kinds)):
            path.unlink(missing_ok=True)


def pid_alive(pid: Any) -> bool:
    """Is ``pid`` a live process (not a zombie)?"""
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


def is_worker(pid: Any) -> bool:
    """Is ``pid`` a live ``stg_core.worker`` process? (Not just any process: pids get reused.)
    Used only for a worker's first seconds, before it has taken its job's lock."""
    if not pid_alive(pid):
        return False
    try:
        return b"stg_core.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (not Linux): trust the live pid
