"""Seed sweeps: one run per seed, finished runs reused, a sweep whose driver is killed resumes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stg_core.config import TrainConfig, spec_from_preset
from stg_core.store import ArtifactStore
from stg_core.sweep import list_sweeps, parse_seeds, read_sweep, run_sweep, sweep_id, sweep_path
from stg_core.training import train_run

ROOT = Path(__file__).resolve().parents[1]
SWEEP_ARGS = ["--preset", "digits-g2", "--seeds", "0-2", "--epochs", "3", "--subset", "300", "--test-subset", "100"]


def test_parse_seeds():
    assert parse_seeds("0-4") == (0, 1, 2, 3, 4)
    assert parse_seeds("7, 0,3-4,3") == (0, 3, 4, 7)
    for bad, message in [("0", "at least two seeds"), ("a-b", "write a range"), ("5-2", "non-negative seed up"),
                         ("-1-3", "write a range")]:
        with pytest.raises(ValueError, match=message):
            parse_seeds(bad)


def test_the_sweep_id_ignores_the_base_seed_and_the_seed_order():
    base = spec_from_preset("digits-g2", subset=300)
    assert sweep_id(base, [2, 0, 1]) == sweep_id(base.with_train(seed=5), [0, 1, 2])
    assert sweep_id(base, [0, 1]) != sweep_id(base, [0, 1, 2])
    assert sweep_id(base, [0, 1]) != sweep_id(base.with_train(epochs=3), [0, 1])


def test_a_sweep_trains_one_run_per_seed_and_reuses_finished_runs(tmp_path):
    store = ArtifactStore(tmp_path)
    base = spec_from_preset("digits-g2", subset=200, test_subset=60, train=TrainConfig(epochs=1))
    first = train_run(base.with_train(seed=1), store)  # trained before: the sweep reuses it
    kept = (store.run_dir(first) / "checkpoint.npz").stat().st_mtime_ns
    messages = []
    record = run_sweep(base, [0, 1, 2], store, progress=lambda m, step, n: messages.append((m, step, n)))
    assert record["runs"]["1"] == first and len(set(record["runs"].values())) == 3
    assert (store.run_dir(first) / "checkpoint.npz").stat().st_mtime_ns == kept
    assert [store.load_spec(record["runs"][str(s)]).train.seed for s in (0, 1, 2)] == [0, 1, 2]
    assert messages[0] == ("reusing 1 finished run(s)", 1, 3) and messages[-1][1:] == (3, 3)
    assert read_sweep(store, record["id"][:5]) == record and record["state"] == "completed"
    assert [s["id"] for s in list_sweeps(store)] == [record["id"]]
    with pytest.raises(ValueError, match="no sweep '../etc'"):
        read_sweep(store, "../etc")
    with pytest.raises(ValueError, match="invalid sweep id"):
        sweep_path(store, "../etc")


def _sweep(store: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stg_core", "sweep", *SWEEP_ARGS, "--store", str(store), "-q"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.mark.slow
def test_a_sweep_resumes_after_its_driver_is_killed(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    base = spec_from_preset("digits-g2", subset=300, test_subset=100, train=TrainConfig(epochs=3))
    runs = [base.with_train(seed=s).run_id() for s in range(3)]
    proc = _sweep(store.root)
    deadline = time.monotonic() + 300
    # killed once the first run has finished and the second has trained an epoch
    while not (store.read_status(runs[0]).get("state") == "completed"
               and store.exists(runs[1]) and store.read_status(runs[1]).get("epochs_done", 0) >= 1):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert store.read_status(runs[2])["state"] == "missing"
    kept = (store.run_dir(runs[0]) / "checkpoint.npz").stat().st_mtime_ns

    proc = _sweep(store.root)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    sid = out.strip().splitlines()[-1].removeprefix("sweep: ")
    record = read_sweep(store, sid)
    assert record["state"] == "completed" and [record["runs"][str(s)] for s in range(3)] == runs
    assert (store.run_dir(runs[0]) / "checkpoint.npz").stat().st_mtime_ns == kept  # not trained again
    # the run cut short resumed from its checkpoint and ends as if it had never stopped
    fresh = ArtifactStore(tmp_path / "fresh")
    train_run(base.with_train(seed=1), fresh)
    for epoch in (1, 3):
        np.testing.assert_array_equal(store.load_p_true(runs[1], epoch), fresh.load_p_true(runs[1], epoch))
