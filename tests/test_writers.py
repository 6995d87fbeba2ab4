"""One writer per run (issue 27 rows 1, 2, 10), deletion and disk usage (row 12), store
permissions (row 13), a bad index row (row 14), and a command-line trainer racing the app's
job system on the same run."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
import zlib
from pathlib import Path

import diskcache
import numpy as np
import pytest

from stg_core import jobs, locks
from stg_core.__main__ import main as cli_main
from stg_core.config import TrainConfig, spec_from_preset
from stg_core.evaluation import EvaluationSpec, save_evaluation_spec
from stg_core.grouping import GroupingSpec, run_grouping
from stg_core.store import ArtifactStore, update_status_file
from stg_core.training import train_run

ROOT = Path(__file__).resolve().parents[1]
SUBSET = ("--subset", "200", "--test-subset", "60")


def _spec(epochs: int, seed: int = 0):
    return spec_from_preset("digits-g1", subset=200, test_subset=60, train=TrainConfig(epochs=epochs, seed=seed))


def _train_cli(store: Path, epochs: int, seed: int = 0, quiet: bool = True) -> subprocess.Popen:
    """``python -m stg_core train`` of ``_spec(epochs, seed)`` as a background process."""
    args = [sys.executable, "-m", "stg_core", "train", "--preset", "digits-g1", *SUBSET, "--epochs", str(epochs),
            "--seed", str(seed), "--store", str(store)] + (["-q"] if quiet else [])
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _workers(store_root: Path) -> list[int]:
    """Pids of the live ``stg_core.worker`` processes of the store at ``store_root``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"stg_core.worker" in cmdline and str(store_root.resolve()).encode() in cmdline \
                and locks.pid_alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def _epochs_done(store: ArtifactStore, run_id: str) -> int:
    try:
        return store.read_status(run_id).get("epochs_done", 0) if store.exists(run_id) else 0
    except ValueError:
        return 0  # read between a write and its replace: never, but harmless


def _artifacts(store: ArtifactStore, run_id: str) -> dict:
    """Everything a run computed: p_true of every epoch, sample arrays, checkpoint, metrics
    (without wall times)."""
    folder = store.run_dir(run_id)
    out = {p.relative_to(folder).as_posix(): np.load(p, allow_pickle=False).tobytes()
           for p in sorted(folder.rglob("*.npy"))}
    arrays, meta = store.load_checkpoint(run_id)
    out.update({f"checkpoint/{k}": v.tobytes() for k, v in arrays.items()})
    out["checkpoint/meta"] = json.dumps(meta, sort_keys=True)
    out["metrics"] = json.dumps([{k: v for k, v in r.items() if k != "seconds"} for r in store.read_metrics(run_id)],
                                sort_keys=True)
    return out


# ---- row 1: the app meets a live command-line run ------------------------------------------------
def test_the_app_neither_interrupts_nor_doubles_a_live_command_line_run(tmp_path):
    store = ArtifactStore(tmp_path)
    run_id = _spec(20).run_id()
    proc = _train_cli(tmp_path, 20)
    try:
        _wait_for(lambda: _epochs_done(store, run_id) >= 1, "the first epoch")
        jobs.refresh(store)  # any page does this when it polls
        status = store.read_status(run_id)
        assert status["state"] == "running" and status["pid"] == proc.pid
        assert jobs.writer_pid(store, jobs.Job(run_id)) == proc.pid
        assert store.list_runs()[0]["state"] == "running"
        assert jobs.submit(store, jobs.Job(run_id)) == "running"  # Resume: nothing started beside it
        assert store.read_status(run_id)["pid"] == proc.pid  # the status is still the command line's
        assert not jobs.Job(run_id).log_path(store).exists()  # no worker was started
    finally:
        out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and store.read_status(run_id)["state"] == "completed"
    assert _epochs_done(store, run_id) == 20


# ---- row 2: the command line meets a worker ----------------------------------------------------
def test_the_command_line_refuses_a_run_a_worker_is_training(tmp_path):
    store = ArtifactStore(tmp_path)
    # Epochs enough that the worker is still training when the command line has been refused
    # (it is cancelled at the end): the command line loads its data before it asks for the lock.
    job = jobs.Job(store.save_spec(_spec(2000)))
    assert jobs.submit(store, job) == "running"
    try:
        _wait_for(lambda: _epochs_done(store, job.run_id) >= 1, "the worker's first epoch")
        worker = jobs.read_status(store, job)["pid"]
        proc = _train_cli(tmp_path, 2000)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, err
        assert f"error: run {job.run_id} is being trained by process {worker}" in err
        assert "resuming" not in err and "Traceback" not in err and "run:" not in out
        assert jobs.read_status(store, job)["pid"] == worker  # the status is still the worker's
    finally:
        jobs.cancel(store, job)
    assert jobs.read_status(store, job)["state"] in jobs.ACTIVE + ("interrupted",)


def test_a_second_library_trainer_is_refused_while_the_lock_is_held(tmp_path):
    store = ArtifactStore(tmp_path)
    spec = _spec(1)
    run_id = spec.run_id()
    with store.writer_lock(run_id):  # as a trainer in another process holds it
        with pytest.raises(locks.JobBusyError, match=f"run {run_id} is being trained by process {os.getpid()}"):
            train_run(spec, store)
    assert not store.exists(run_id)  # nothing written by the refused trainer


# ---- row 10: kill -9 of a command-line trainer, and a kill between status and index ------------
@pytest.mark.slow  # a command-line subprocess, killed
def test_a_sigkilled_command_line_run_is_interrupted_everywhere(tmp_path):
    store = ArtifactStore(tmp_path)
    run_id = _spec(40).run_id()
    proc = _train_cli(tmp_path, 40)
    try:
        _wait_for(lambda: _epochs_done(store, run_id) >= 1, "the first epoch")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert store.read_status(run_id)["state"] == "running"  # as the dead process left it
    runs = subprocess.run([sys.executable, "-m", "stg_core", "runs", "--store", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert runs.returncode == 0 and "interrupted" in runs.stdout and "running" not in runs.stdout
    assert store.list_runs()[0]["state"] == "interrupted"
    jobs.refresh(store)
    assert store.read_status(run_id)["state"] == "interrupted"
    assert jobs.writer_pid(store, jobs.Job(run_id)) is None  # resumable: nobody holds it


def test_the_run_list_follows_the_status_file_when_a_kill_split_status_and_index(tmp_path):
    store = ArtifactStore(tmp_path)
    run_id = store.save_spec(_spec(8))
    store.write_status(run_id, state="interrupted", epochs_done=4)
    # killed after the status file was replaced and before the index was written:
    update_status_file(store.run_dir(run_id) / "status.json", epochs_done=5)
    assert store.list_runs()[0]["epochs_done"] == 5
    with store._index() as index:
        assert index.get(run_id)["epochs_done"] == 5  # rebuilt from the status file


# ---- row 12: deletion, disk usage, log rotation ----------------------------------------------------
def test_delete_a_run_or_only_its_derived_results_and_show_disk_usage(tmp_path, capsys):
    store = ArtifactStore(tmp_path)
    run_id = train_run(_spec(1), store)
    other = store.save_spec(_spec(1, seed=3))
    eval_id = save_evaluation_spec(EvaluationSpec(run_id, 2, epochs=1, methods=("mtl",)), store)
    run_grouping(GroupingSpec(run_id, "random", 2), store)
    size = store.disk_usage(run_id)
    assert size > 10_000 and store.list_runs(disk_usage=True)[[r["id"] for r in store.list_runs()].index(run_id)]["disk_bytes"] == size

    assert cli_main(["runs", "--store", str(tmp_path)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(run_id))
    assert line.split()[-2:] == [f"{size / 1e3:.1f}", "kB"] or line.split()[-2:] == [f"{size / 1e6:.1f}", "MB"]

    with store.writer_lock(run_id, "evaluations", eval_id):  # an evaluation job is running
        assert cli_main(["delete", run_id, "--derived-only", "--store", str(tmp_path)]) == 2
        assert f"evaluation {eval_id} of run {run_id} is being computed by process {os.getpid()}" in \
            capsys.readouterr().err
        assert cli_main(["delete", run_id[:5], "--store", str(tmp_path)]) == 2
    assert (store.run_dir(run_id) / "evaluations" / eval_id / "spec.json").exists()

    assert cli_main(["delete", run_id, "--derived-only", "--store", str(tmp_path)]) == 0
    assert "deleted evaluations and groupings of run" in capsys.readouterr().out
    assert not (store.run_dir(run_id) / "evaluations").exists() and not (store.run_dir(run_id) / "groupings").exists()
    assert store.load_p_true(run_id, 1).shape == (10, 200)  # the run itself is kept
    assert store.disk_usage(run_id) < size

    with store.writer_lock(run_id):  # training (or resuming) it
        assert cli_main(["delete", run_id, "--store", str(tmp_path)]) == 2
    assert cli_main(["delete", run_id, "--store", str(tmp_path)]) == 0
    assert store.run_ids() == [other] and [r["id"] for r in store.list_runs()] == [other]
    assert not store.run_dir(run_id).exists()
    assert not list((tmp_path / "locks").glob(f"{run_id}*"))
    with store._index() as index:
        assert index.get(run_id) is None
    assert cli_main(["delete", run_id, "--store", str(tmp_path)]) == 2  # gone: "no run"


def test_worker_log_rotates_when_a_job_starts(tmp_path):
    store = ArtifactStore(tmp_path)
    job = jobs.Job(store.save_spec(_spec(1)))
    old = "old line\n" * (jobs.LOG_MAX_BYTES // 9 + 1)
    job.log_path(store).write_text(old)
    assert jobs.submit(store, job) == "running"
    _wait_for(lambda: jobs.read_status(store, job).get("state") not in jobs.ACTIVE, "the job")
    assert jobs.read_status(store, job)["state"] == "completed"
    assert job.log_path(store).with_name("worker.log.1").read_text() == old
    assert "old line" not in job.log_path(store).read_text() and "epoch 1/1 done" in job.log_path(store).read_text()


# ---- row 13: permissions -----------------------------------------------------------------------------
def test_everything_in_the_store_is_private_whatever_the_umask(tmp_path):
    root = tmp_path / "store"
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)  # an existing root open to everyone
    previous = os.umask(0)
    try:
        store = ArtifactStore(root)
        run_id = train_run(_spec(1), store)
        run_grouping(GroupingSpec(run_id, "random", 2), store)
        store.list_runs()
        store.save_upload(b"some bytes")
        jobs.refresh(store)
    finally:
        os.umask(previous)
    modes = {p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for name in ("index", "index/cache.db", "runs", f"runs/{run_id}/datamaps", f"runs/{run_id}/samples", "uploads",
                 "locks", "jobs.lock", f"runs/{run_id}/groupings"):
        assert name in modes
    loose = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o700 if (root / name).is_dir() else 0o600)}
    assert not loose


# ---- row 14: one bad index row -----------------------------------------------------------------------
@pytest.mark.parametrize("planted", ["pickle", "garbage"])
def test_one_unreadable_index_row_is_skipped_with_a_warning(tmp_path, planted, capsys):
    store = ArtifactStore(tmp_path)
    bad = store.save_spec(_spec(1))
    good = store.save_spec(_spec(1, seed=1))
    key = zlib.compress(json.dumps(bad).encode(), 1)
    with diskcache.Cache(str(tmp_path / "index")) as raw:
        if planted == "pickle":
            raw.set(key, {"state": "completed"})  # the default disk pickles it
        else:
            raw.set(key, b"\x00not json at all", read=False)  # raw bytes that are no zlib'd JSON
    with pytest.warns(UserWarning, match=f"skipping an unreadable index row of run {bad}"):
        runs = store.list_runs()
    assert sorted(r["id"] for r in runs) == sorted([bad, good]) and {r["state"] for r in runs} == {"created"}
    with store._index() as index:
        assert index.get(bad)["state"] == "created"  # rebuilt from the status file
    assert cli_main(["runs", "--store", str(tmp_path)]) == 0
    assert bad in capsys.readouterr().out


# ---- acceptance: a command-line trainer and the app's job system on the same run at once ------------
def test_command_line_and_job_system_on_the_same_run_give_one_writer_and_the_same_artifacts(tmp_path):
    epochs = 3
    reference = ArtifactStore(tmp_path / "reference")
    run_id = train_run(_spec(epochs), reference)

    store = ArtifactStore(tmp_path / "race")
    job = jobs.Job(store.save_spec(_spec(epochs)))
    proc = _train_cli(tmp_path / "race", epochs, quiet=False)  # its progress bar: one line per epoch
    state = jobs.submit(store, job)
    out, err = proc.communicate(timeout=600)
    assert state == "running"
    _wait_for(lambda: not _workers(tmp_path / "race"), "the job system's worker")
    log = job.log_path(store).read_text() if job.log_path(store).exists() else ""
    cli_trained = proc.returncode == 0 and f"epoch {epochs}/{epochs} [" in err
    worker_trained = f"epoch {epochs}/{epochs} done" in log
    assert cli_trained != worker_trained, (err, log)  # exactly one writer trained it
    if worker_trained:  # the command line was refused cleanly, or (still loading its data while the
        # worker trained) took the lock after it and found the run finished
        refused = proc.returncode == 2 and f"run {run_id} is being trained by process" in err
        assert refused or proc.returncode == 0, err
        assert "Traceback" not in err and "epoch 1/" not in err
    else:  # the worker was refused, or never started, or found the run finished
        assert "Traceback" not in log and "epoch 1/" not in log
    assert store.read_status(run_id)["state"] == "completed"
    jobs.refresh(store)
    assert store.read_status(run_id)["state"] == "completed" and store.list_runs()[0]["state"] == "completed"
    assert _artifacts(store, run_id) == _artifacts(reference, run_id)


def test_gc_removes_killed_writers_temporary_files_and_unused_old_uploads(tmp_path, capsys):
    import dataclasses

    store = ArtifactStore(tmp_path)
    used, unused, fresh = (store.save_upload(bytes([i]) * 1000) for i in range(3))
    idle = store.save_spec(dataclasses.replace(_spec(1), data_root=str(used)))
    busy = store.save_spec(_spec(1, seed=1))
    for run_id in (idle, busy):
        (store.run_dir(run_id) / ".metrics.json.x.tmp").write_bytes(b"half")
    evaluating = store.run_dir(idle) / "evaluations" / "0123456789ab"
    evaluating.mkdir(parents=True)
    (evaluating / ".results.json.y.tmp").write_bytes(b"half")
    two_hours_ago = time.time() - 7200
    for path in (used, unused):
        os.utime(path, (two_hours_ago, two_hours_ago))
    with store.writer_lock(busy), store.writer_lock(idle, "evaluations", "0123456789ab"):  # writes in progress
        assert cli_main(["gc", "--store", str(tmp_path)]) == 0
        assert "removed 1 file(s)" in capsys.readouterr().out
        assert cli_main(["gc", "--uploads", "--store", str(tmp_path)]) == 0
        assert "removed 1 file(s), 1.0 kB freed" in capsys.readouterr().out
    assert not (store.run_dir(idle) / ".metrics.json.x.tmp").exists()
    assert (store.run_dir(busy) / ".metrics.json.x.tmp").exists() and (evaluating / ".results.json.y.tmp").exists()
    assert cli_main(["gc", "--store", str(tmp_path)]) == 0  # now nobody writes them
    assert "removed 2 file(s)" in capsys.readouterr().out and not (evaluating / ".results.json.y.tmp").exists()
    assert used.exists() and fresh.exists() and not unused.exists()


def test_delete_is_refused_while_a_worker_is_still_starting(tmp_path, monkeypatch):
    store = ArtifactStore(tmp_path)
    run_id = store.save_spec(_spec(1))
    store.write_status(run_id, state="running", pid=12345)  # started, its lock not taken yet
    monkeypatch.setattr(locks, "is_worker", lambda pid: pid == 12345)
    with pytest.raises(locks.JobBusyError, match=f"run {run_id} is being trained by process 12345"):
        jobs.delete(store, run_id)
    assert jobs.delete(store, run_id, derived_only=True) == 0  # its evaluations and groupings: none
    monkeypatch.setattr(locks, "is_worker", lambda pid: False)  # it died before taking the lock
    jobs.delete(store, run_id)
    assert store.run_ids() == []
