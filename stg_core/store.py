"""Artifact store: one folder per run, JSON and .npy only, every write atomic.

Layout under the store root (``--store``, env ``STG_STORE``, default ``cache/``)::

    runs/<id>/spec.json                 the ExperimentSpec (plus library versions)
    runs/<id>/status.json               state, epochs done, pid, heartbeat, error
    runs/<id>/metrics.json              one row per finished epoch (loss, accuracy, F1 per task)
    runs/<id>/dataset.json              class names, known super-groups, image shape
    runs/<id>/samples/labels.npy        (N, n_tasks) uint8 task labels of the training samples
    runs/<id>/samples/classes.npy       (N,) int64 original class of each sample (-1 for attributes)
    runs/<id>/datamaps/epoch_<e>.npy    (n_tasks, N) float16 p_true of epoch e (1-based)
    runs/<id>/datamaps/gram_<e>.npy     (3, n_tasks, n_tasks) float64 Gram statistics of the data maps
                                        at epoch e, one per representation (stg_core.reduction)
    runs/<id>/datamaps/summary_<e>.npy  (2, n_tasks) float64 mean confidence and mean variability
    runs/<id>/datamaps/statistics.json  version of the statistics and N
    runs/<id>/checkpoint.npz            weights + optimiser state of the last finished epoch
    runs/<id>/evaluations/, groupings/  derived results (stg_core.evaluation, stg_core.grouping)
    index/                              diskcache index (JSONDisk) run id -> status, rebuilt from
                                        the status files whenever they disagree
    locks/                              one OS file lock per job: its single writer (stg_core.locks)

Everything is private to its owner: folders 0700 and files 0600 whatever the umask, and an
existing root that others can read is tightened. See docs/store.md.

Nothing is ever unpickled: arrays are loaded with ``allow_pickle=False`` and the diskcache
index stores JSON. diskcache's default disk pickles, and even its ``JSONDisk`` unpickles any
row whose mode column says "pickle" — so anyone who can write the index database could run
code in the app. :class:`JSONOnlyDisk` refuses such rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import warnings
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import diskcache
import numpy as np

from stg_core import locks
from stg_core.config import ExperimentSpec
from stg_core.reduction import STATISTICS_VERSION, EpochStatistics

_RUN_ID = re.compile(r"^[0-9a-f]{12}$")


class JSONOnlyDisk(diskcache.JSONDisk):
    """``JSONDisk`` that refuses pickled keys and values instead of unpickling them."""

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise ValueError("refusing a pickled key in the store index")
        return super().get(key, raw)

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode not in (diskcache.core.MODE_RAW, diskcache.core.MODE_BINARY):
            raise ValueError(f"refusing a non-JSON entry (mode {mode}) in the store index")
        return super().fetch(mode, filename, value, read)


def default_store_root() -> Path:
    return Path(os.environ.get("STG_STORE") or "cache")


def private_dir(path: Path) -> None:
    """Create the folder ``path`` and its missing parents with mode 0700, whatever the umask."""
    if path.is_dir():
        return
    private_dir(path.parent)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return
    os.chmod(path, 0o700)


def open_private(path: Path, mode: str = "ab") -> Any:
    """Open ``path`` for appending (``"ab"``) or writing, created with mode 0600 whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), mode)


def _atomic_write(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, then ``os.replace`` it into place,
    so a reader (or a process killed mid-write) never sees a half-written file. The file is
    0600 (``mkstemp``'s mode), its new folders 0700."""
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    _atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def update_status_file(path: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into the JSON status at ``path`` with a fresh heartbeat (atomic)."""
    status = read_json(path) if path.exists() else {}
    status.update(fields, heartbeat=time.time())
    write_json(path, status)
    return status


@contextmanager
def job_running(folder: Path) -> Iterator[None]:
    """A job's work inside ``folder``: its status is ``running`` meanwhile; an exception marks
    it ``failed`` (``interrupted`` for a KeyboardInterrupt: SIGTERM/SIGINT) with its message and
    is re-raised, unless the job was marked ``completed`` already. The caller marks success
    itself, once the results are written."""
    update_status_file(folder / "status.json", state="running", error=None)
    try:
        yield
    except BaseException as exc:
        if read_json(folder / "status.json").get("state") != "completed":  # its results were written
            update_status_file(folder / "status.json", error=f"{type(exc).__name__}: {exc}",
                               state="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
        raise


def _npy_shape(path: Path) -> tuple[int, ...]:
    """The shape an ``.npy`` file declares, read from its header only (``ValueError`` if it has none)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, _ = read_header(f)
    return tuple(shape)


def write_npy(path: Path, array: np.ndarray) -> None:
    _atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False))


def _tighten(folder: Path) -> None:
    """Make an existing folder 0700; ``ValueError`` if others can use it and it cannot be changed."""
    mode = folder.stat().st_mode & 0o777
    if mode & 0o077:
        try:
            os.chmod(folder, 0o700)
        except OSError as exc:
            raise ValueError(f"the store folder {folder} is open to other users (mode {mode:o}) and cannot be "
                             f"made private ({exc.strerror}): use a store of your own") from None


class ArtifactStore:
    """Run folders under ``root``: folders 0700, files 0600; an existing root open to others
    is tightened."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_store_root()
        private_dir(self.root)
        _tighten(self.root)
        private_dir(self.root / "runs")
        _tighten(self.root / "runs")

    # ---- paths -------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        """Folder of ``run_id``; the id is checked so no path can escape the store."""
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
            raise ValueError(f"invalid run id {run_id!r}: expected 12 hexadecimal digits")
        return self.root / "runs" / run_id

    def job_dir(self, run_id: str, kind: str, job_id: str) -> Path:
        """Folder of one of a run's jobs (``kind``: ``"evaluations"`` or ``"groupings"``); the
        12-hex-digit id is checked like a run id, so no path can escape the store."""
        if kind not in ("evaluations", "groupings"):
            raise ValueError(f"unknown kind of job folder {kind!r}")
        if not isinstance(job_id, str) or not _RUN_ID.match(job_id):
            raise ValueError(f"invalid {kind[:-1]} id {job_id!r}")
        return self.run_dir(run_id) / kind / job_id

    def create_job(self, run_id: str, kind: str, job_id: str, spec: dict[str, Any], needs: str) -> Path:
        """The folder of a job of a completed run, with ``spec.json`` and status ``created`` the
        first time (idempotent). ``needs`` finishes the error for a run still training, e.g.
        ``"evaluate it"`` → "run … has not finished training: evaluate it once it is completed"."""
        if self.read_status(run_id).get("state") != "completed":
            raise ValueError(f"run {run_id} has not finished training: {needs} once it is completed")
        folder = self.job_dir(run_id, kind, job_id)
        if not (folder / "spec.json").exists():
            write_json(folder / "spec.json", spec)
            update_status_file(folder / "status.json", state="created")
        return folder

    def finished_jobs(self, run_id: str, kind: str) -> list[str]:
        """Ids of a run's finished jobs of ``kind`` (``"evaluations"`` or ``"groupings"``: those
        with a ``results.json``), newest first."""
        self.job_dir(run_id, kind, "0" * 12)  # checks the run id and the kind
        folder = self.run_dir(run_id) / kind
        if not folder.exists():
            return []
        done = sorted(folder.glob("*/results.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        return [p.parent.name for p in done if _RUN_ID.match(p.parent.name)]

    def read_job_file(self, run_id: str, kind: str, job_id: str, name: str) -> Any:
        """A job's ``spec.json`` or ``results.json`` (``name``: ``"spec"`` or ``"results"``), or
        None when it does not exist."""
        if name not in ("spec", "results"):
            raise ValueError(f"unknown job file {name!r}")
        path = self.job_dir(run_id, kind, job_id) / f"{name}.json"
        return read_json(path) if path.exists() else None

    def exists(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / "spec.json").exists()

    def resolve(self, prefix: str) -> str:
        """Full run id from a unique prefix (as ``git`` does for commits)."""
        if _RUN_ID.match(prefix or "") and self.exists(prefix):
            return prefix
        matches = [r for r in self.run_ids() if r.startswith(prefix)] if prefix else []
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise ValueError(f"no run {prefix!r} in {self.root}")
        raise ValueError(f"run prefix {prefix!r} is ambiguous: {', '.join(matches)}")

    def remove_partial_writes(self, run_id: str) -> int:
        """Delete temporary files left by a process killed mid-write; return how many."""
        stale = list(self.run_dir(run_id).rglob(".*.tmp"))
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def import_run_files(self, run_id: str, files: dict[str, bytes]) -> None:
        """Write a run trained elsewhere (a Ray worker's scratch store) into this store: its
        files ``{path relative to the run folder: content}``, each atomically, ``status.json``
        last, so the run counts as finished only once every other file is in place."""
        folder = self.run_dir(run_id)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in sorted(files, key=lambda n: n == "status.json"):
            if not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", name) or ".." in name.split("/"):
                raise ValueError(f"invalid run file name {name!r}")
            content = files[name]
            _atomic_write(folder / name, lambda f: f.write(content))
        self._index_set(run_id, self.read_status(run_id))

    def run_ids(self) -> list[str]:
        runs = self.root / "runs"
        return sorted(p.name for p in runs.iterdir() if _RUN_ID.match(p.name) and (p / "spec.json").exists())

    def save_upload(self, content: bytes, suffix: str = ".npz") -> Path:
        """Store a user's uploaded file under ``uploads/`` by content hash (the same file
        uploaded twice is stored once) and return its path."""
        if not re.fullmatch(r"\.[a-z0-9]{1,8}", suffix):
            raise ValueError(f"invalid file suffix {suffix!r}")
        folder = self.root / "uploads"
        private_dir(folder)
        path = folder / f"{hashlib.sha256(content).hexdigest()[:20]}{suffix}"
        if not path.exists():
            _atomic_write(path, lambda f: f.write(content))
        return path

    # ---- spec and status ---------------------------------------------------------------
    def save_spec(self, spec: ExperimentSpec, extra: dict[str, Any] | None = None) -> str:
        """Create the run folder for ``spec`` (idempotent) and return its id."""
        run_id = spec.run_id()
        path = self.run_dir(run_id) / "spec.json"
        if not path.exists():
            write_json(path, {"spec": spec.to_json(), **(extra or {})})
            self.write_status(run_id, state="created", epochs_done=0, epochs=spec.train.epochs)
        return run_id

    def load_spec(self, run_id: str) -> ExperimentSpec:
        return ExperimentSpec.from_json(read_json(self.run_dir(run_id) / "spec.json")["spec"])

    def read_status(self, run_id: str) -> dict[str, Any]:
        path = self.run_dir(run_id) / "status.json"
        return read_json(path) if path.exists() else {"state": "missing", "epochs_done": 0}

    def write_status(self, run_id: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the run's status (with a fresh heartbeat) and index it."""
        status = update_status_file(self.run_dir(run_id) / "status.json", **fields)
        self._index_set(run_id, status)
        return status

    def write_dataset_info(self, run_id: str, info: dict[str, Any]) -> None:
        """Class names, known super-groups and image shape of the run's dataset (``dataset.json``)."""
        write_json(self.run_dir(run_id) / "dataset.json", info)

    def read_dataset_info(self, run_id: str) -> dict[str, Any]:
        path = self.run_dir(run_id) / "dataset.json"
        return read_json(path) if path.exists() else {}

    # ---- per-epoch artifacts -----------------------------------------------------------
    def write_p_true(self, run_id: str, epoch: int, p_true: np.ndarray) -> None:
        """Store p_true ``(n_tasks, N)`` of ``epoch`` (1-based) as float16."""
        write_npy(self.run_dir(run_id) / "datamaps" / f"epoch_{epoch}.npy", p_true.astype(np.float16, copy=False))

    def load_p_true(self, run_id: str, epoch: int) -> np.ndarray:
        """p_true ``(n_tasks, N)`` float16 of ``epoch``; ``ValueError`` if it was not recorded."""
        path = self.run_dir(run_id) / "datamaps" / f"epoch_{epoch}.npy"
        if not path.exists():
            raise ValueError(f"epoch {epoch} is not recorded for run {run_id} "
                             f"(recorded: {self.recorded_epochs(run_id) or 'none'})")
        return np.load(path, allow_pickle=False)

    def iter_p_true(self, run_id: str, last_epoch: int) -> Iterator[np.ndarray]:
        for e in range(1, last_epoch + 1):
            yield self.load_p_true(run_id, e)

    def write_epoch_statistics(self, run_id: str, epoch: int, stats: EpochStatistics) -> None:
        """Store the :class:`~stg_core.reduction.EpochStatistics` of ``epoch`` (1-based)."""
        folder = self.run_dir(run_id) / "datamaps"
        meta = {"version": STATISTICS_VERSION, "n_samples": stats.n_samples}
        if not (folder / "statistics.json").exists() or read_json(folder / "statistics.json") != meta:
            write_json(folder / "statistics.json", meta)
        write_npy(folder / f"gram_{epoch}.npy", stats.gram)
        write_npy(folder / f"summary_{epoch}.npy", np.stack([stats.mean_confidence, stats.mean_variability]))

    def statistics_epochs(self, run_id: str) -> list[int]:
        """Epochs whose Gram statistics are stored in the current version (``[]`` when the
        run's statistics are missing or of another version: compute them again)."""
        folder = self.run_dir(run_id) / "datamaps"
        meta_path = folder / "statistics.json"
        try:
            meta = read_json(meta_path) if meta_path.exists() else {}
        except ValueError:  # a damaged file: the statistics are recomputed
            return []
        if meta.get("version") != STATISTICS_VERSION:
            return []
        found = (re.fullmatch(r"gram_(\d+)\.npy", p.name) for p in folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def statistics_samples(self, run_id: str) -> int:
        """N, the number of training samples the stored statistics were computed over."""
        return int(read_json(self.run_dir(run_id) / "datamaps" / "statistics.json")["n_samples"])

    def load_grams(self, run_id: str, epochs: list[int]) -> dict[int, np.ndarray]:
        """Gram statistics ``{epoch: (3, n_tasks, n_tasks)}`` of ``epochs``, memory-mapped (only
        the representation used is read from disk)."""
        folder = self.run_dir(run_id) / "datamaps"
        out = {}
        for e in epochs:
            out[e] = np.load(folder / f"gram_{e}.npy", mmap_mode="r", allow_pickle=False)
        return out

    def load_summary(self, run_id: str, epoch: int) -> np.ndarray:
        """``(2, n_tasks)``: each task's mean confidence and mean variability at ``epoch``."""
        return np.load(self.run_dir(run_id) / "datamaps" / f"summary_{epoch}.npy", allow_pickle=False)

    def load_task_p_true(self, run_id: str, task_index: int, epochs: list[int]) -> np.ndarray:
        """p_true of one task at each of ``epochs``: ``(len(epochs), N)`` float16. Reads one row
        per epoch file through a memory map, not the whole ``(n_tasks, N)`` array."""
        rows = []
        for e in epochs:
            path = self.run_dir(run_id) / "datamaps" / f"epoch_{e}.npy"
            if not path.exists():
                raise ValueError(f"epoch {e} is not recorded for run {run_id}")
            rows.append(np.array(np.load(path, mmap_mode="r", allow_pickle=False)[task_index]))
        return np.stack(rows) if rows else np.zeros((0, 0), np.float16)

    def recorded_epochs(self, run_id: str) -> list[int]:
        folder = self.run_dir(run_id) / "datamaps"
        if not folder.exists():
            return []
        found = (re.fullmatch(r"epoch_(\d+)\.npy", p.name) for p in folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def write_metrics(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        write_json(self.run_dir(run_id) / "metrics.json", rows)

    def read_metrics(self, run_id: str) -> list[dict[str, Any]]:
        path = self.run_dir(run_id) / "metrics.json"
        return read_json(path) if path.exists() else []

    def write_array(self, run_id: str, name: str, array: np.ndarray) -> None:
        """A named array of the run (e.g. ``"samples/labels"``); ``name`` is a relative path."""
        write_npy(self._array_path(run_id, name), array)

    def read_array(self, run_id: str, name: str) -> np.ndarray:
        return np.load(self._array_path(run_id, name), allow_pickle=False)

    def _array_path(self, run_id: str, name: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_]+(/[A-Za-z0-9_]+)*", name):
            raise ValueError(f"invalid array name {name!r}")
        return self.run_dir(run_id) / f"{name}.npy"

    # ---- checkpoint --------------------------------------------------------------------
    def save_checkpoint(self, run_id: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """One ``.npz`` holding every array plus ``meta`` as JSON bytes: a single atomic file,
        so weights and the epoch they belong to can never disagree."""
        payload = dict(arrays)
        payload["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        _atomic_write(self.run_dir(run_id) / "checkpoint.npz", lambda f: np.savez(f, **payload))

    def load_checkpoint(self, run_id: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        path = self.run_dir(run_id) / "checkpoint.npz"
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(arrays.pop("__meta__").tobytes().decode())
        return arrays, meta

    # ---- integrity ---------------------------------------------------------------------
    def check_run(self, run_id: str) -> list[str]:
        """What is missing or damaged in a run's artifacts, one sentence each (``[]``: nothing).
        Cheap: reads headers and small files, never p_true itself. Pages show these instead of
        failing on the first unreadable file."""
        folder = self.run_dir(run_id)
        problems: list[str] = []
        try:
            spec = self.load_spec(run_id)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return [f"spec.json cannot be read ({type(exc).__name__}: {exc})"]
        n_tasks = len(spec.tasks)
        recorded = self.recorded_epochs(run_id)
        for name in ("status", "dataset") if recorded else ("status",):  # dataset.json comes with epoch 1
            path = folder / f"{name}.json"
            try:
                read_json(path)
            except FileNotFoundError:
                problems.append(f"{name}.json is missing")
            except (OSError, ValueError) as exc:
                problems.append(f"{name}.json is damaged ({type(exc).__name__})")
        n_samples = None
        for e in recorded:
            try:
                shape = _npy_shape(folder / "datamaps" / f"epoch_{e}.npy")
            except (OSError, ValueError) as exc:
                problems.append(f"the p_true of epoch {e} is damaged ({exc})")
                continue
            if len(shape) != 2 or shape[0] != n_tasks or (n_samples is not None and shape[1] != n_samples):
                problems.append(f"the p_true of epoch {e} has shape {shape}, not ({n_tasks}, N) like the others")
            n_samples = n_samples or (shape[1] if len(shape) == 2 else None)
        holes = [e for e in range(1, (recorded or [0])[-1] + 1) if e not in recorded]
        if holes:
            problems.append(f"the p_true of epoch{'s' if len(holes) > 1 else ''} {', '.join(map(str, holes[:5]))} "
                            "is missing")
        if recorded:
            for name, expected in (("labels", (n_samples, n_tasks)), ("classes", (n_samples,))):
                try:
                    shape = _npy_shape(self._array_path(run_id, f"samples/{name}"))
                except FileNotFoundError:
                    problems.append(f"samples/{name}.npy is missing")
                    continue
                except (OSError, ValueError) as exc:
                    problems.append(f"samples/{name}.npy is damaged ({exc})")
                    continue
                if shape != expected:
                    problems.append(f"samples/{name}.npy has shape {shape}, expected {expected}")
        return problems

    # ---- writers, disk, deletion -------------------------------------------------------
    def writer_lock(self, run_id: str, kind: str | None = None, job_id: str | None = None, *,
                    wait: float = locks.WAIT_SECONDS) -> Any:
        """Context manager holding the lock of a run's training (``kind`` None) or of one of its
        evaluations / groupings: the only process allowed to write that job. Raises
        :class:`~stg_core.locks.JobBusyError` ("run X is being trained by process P")."""
        return locks.job_lock(self.root, run_id, kind, job_id, wait=wait)

    def writer_pid(self, run_id: str, kind: str | None = None, job_id: str | None = None) -> int | None:
        """Pid of the process writing that job now (0: not known yet), None when nobody is."""
        return locks.lock_holder(self.root, run_id, kind, job_id)

    def live_state(self, run_id: str, status: dict[str, Any]) -> str:
        """The run's state as the status file says, except that a ``running`` run whose writer
        is gone (its lock free and no worker starting up under its pid) is ``interrupted``."""
        state = str(status.get("state", "unknown"))
        if state == "running" and self.writer_pid(run_id) is None and not locks.is_worker(status.get("pid")):
            return "interrupted"
        return state

    def disk_usage(self, run_id: str) -> int:
        """Bytes of the run's files, its evaluations and groupings included."""
        return _tree_bytes(self.run_dir(run_id))

    def delete_run(self, run_id: str, *, derived_only: bool = False) -> int:
        """Delete a run (``derived_only``: only its evaluations and groupings); return the bytes
        freed. Refused with :class:`~stg_core.locks.JobBusyError` while any job of the run that
        would be deleted is being written: every such lock is held for the deletion."""
        folder = self.run_dir(run_id)
        if not (folder / "spec.json").exists():
            raise ValueError(f"no run {run_id} in {self.root}")
        kinds: tuple[str | None, ...] = ("evaluations", "groupings") if derived_only else (None, "evaluations",
                                                                                             "groupings")
        targets = [folder / k for k in kinds if k is not None] if derived_only else [folder]
        freed = sum(_tree_bytes(t) for t in targets)
        with ExitStack() as held:
            for kind in kinds:
                job_ids = [None] if kind is None else sorted(p.name for p in (folder / kind).glob("*")
                                                             if _RUN_ID.match(p.name))
                for job_id in job_ids:
                    held.enter_context(self.writer_lock(run_id, kind, job_id, wait=0))
            for target in targets:
                if target.exists():
                    shutil.rmtree(target)
            if not derived_only:
                with self._index() as index:
                    index.delete(run_id)
            locks.remove_locks(self.root, run_id, kinds)
        return freed

    def collect_garbage(self, *, uploads: bool = False, min_age_seconds: float = 3600.0) -> tuple[int, int]:
        """Delete what nothing needs; return ``(files, bytes)`` removed. Temporary files left
        by killed writers, in runs nobody is writing now; with ``uploads``, uploaded datasets
        that no run uses and that are older than ``min_age_seconds`` (a newer one may be about
        to be launched from the app)."""
        removed, freed = 0, 0
        stale: list[Path] = []
        for run_id in self.run_ids():
            folder = self.run_dir(run_id)
            for path in folder.rglob(".*.tmp"):
                parts = path.relative_to(folder).parts
                job = (parts[0], parts[1]) if len(parts) > 2 and parts[0] in ("evaluations", "groupings") \
                    and _RUN_ID.match(parts[1]) else (None, None)
                if self.writer_pid(run_id, *job) is None:  # nobody is writing the job it belongs to
                    stale.append(path)
        if uploads and (self.root / "uploads").is_dir():
            used = set()
            for run_id in self.run_ids():
                try:
                    root = self.load_spec(run_id).data_root
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # a damaged spec: its upload, if any, is kept
                if root:
                    used.add(Path(root).resolve())
            now = time.time()
            stale += [p for p in (self.root / "uploads").iterdir()
                      if p.is_file() and p.resolve() not in used and now - p.stat().st_mtime > min_age_seconds]
        for path in stale:
            try:
                size = path.lstat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            removed, freed = removed + 1, freed + size
        return removed, freed

    # ---- index -------------------------------------------------------------------------
    def _index(self) -> diskcache.Cache:
        folder = self.root / "index"
        private_dir(folder)
        cache = diskcache.Cache(str(folder), disk=JSONOnlyDisk)
        # sqlite creates cache.db (and its -wal / -shm files) with the umask's mode: make them private.
        for path in folder.iterdir():
            if path.is_file() and path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
        return cache

    def _index_set(self, run_id: str, status: dict[str, Any]) -> None:
        with self._index() as index:
            index.set(run_id, status)

    def list_runs(self, *, disk_usage: bool = False) -> list[dict[str, Any]]:
        """One summary per run: id, dataset, tasks, model and its feature units (``feature_dim``,
        None for the model's default), epochs done / planned, state (``running`` only while its
        writer lives), and with ``disk_usage`` its bytes on disk (``disk_bytes``: a walk of every
        run folder, left out of the sidebar's list).

        The status files are the truth; an index row that disagrees (a process killed between
        the two writes) is rebuilt from them, and an unreadable row is skipped with a warning."""
        out = []
        with self._index() as index:
            for run_id in self.run_ids():
                try:
                    indexed = index.get(run_id)
                except (ValueError, TypeError, zlib.error, UnicodeDecodeError) as exc:
                    warnings.warn(f"skipping an unreadable index row of run {run_id} ({exc}); "
                                  "it is rebuilt from status.json", stacklevel=2)
                    index.delete(run_id)
                    indexed = None
                try:
                    status = self.read_status(run_id)
                except (OSError, ValueError):
                    status = indexed if isinstance(indexed, dict) else {"state": "damaged"}
                else:
                    if indexed != status:
                        index.set(run_id, status)
                spec = self.load_spec(run_id)
                out.append({
                    "id": run_id, "dataset": spec.dataset, "preset": spec.preset, "n_tasks": len(spec.tasks),
                    "model": spec.train.model, "feature_dim": spec.train.feature_dim,
                    "epochs_done": status.get("epochs_done", 0), "epochs": spec.train.epochs,
                    "state": self.live_state(run_id, status),
                    **({"disk_bytes": self.disk_usage(run_id)} if disk_usage else {}),
                })
        return out


def _tree_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 if it does not exist)."""
    total = 0
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass  # removed meanwhile (a temporary file replaced into place)
    return total


def format_bytes(n: int) -> str:
    """``1234567`` → ``"1.2 MB"`` (decimal units)."""
    size = float(n)
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
