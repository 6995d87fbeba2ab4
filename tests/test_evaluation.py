import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stg_core.config import TrainConfig, spec_from_preset
from stg_core.evaluation import (EvaluationSpec, combine_outputs, evaluation_dir, random_grouping, read_results,
                                 run_evaluation, save_evaluation_spec)
from stg_core.store import ArtifactStore
from stg_core.training import train_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    store = ArtifactStore(tmp_path_factory.mktemp("store"))
    spec = spec_from_preset("digits-g2", subset=300, test_subset=100, train=TrainConfig(epochs=2))
    return store, train_run(spec, store)


def test_combine_outputs_hand_computed():
    logits = np.array([[[0.0, 2.0]], [[4.0, -2.0]]])  # 2 models, 1 sample, 2 tasks
    memberships = np.array([[0.25, 0.75], [1.0, 0.0]])  # task 0 mostly model 1, task 1 only model 0
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    prob = combine_outputs(logits, memberships, "probabilities").numpy()
    np.testing.assert_allclose(prob, [[0.25 * 0.5 + 0.75 * sig(4.0), sig(2.0)]], rtol=1e-6)
    via_logits = combine_outputs(logits, memberships, "logits").numpy()
    np.testing.assert_allclose(via_logits, [[sig(0.75 * 4.0), sig(2.0)]], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown combination"):
        combine_outputs(logits, memberships, "votes")


def test_random_grouping_is_seeded_and_leaves_no_cluster_empty():
    g = random_grouping(7, 3, seed=4)
    assert g.shape == (7, 3) and np.all(g.sum(1) == 1) and np.all(g.sum(0) >= 2)
    np.testing.assert_array_equal(g, random_grouping(7, 3, seed=4))
    assert not np.array_equal(g, random_grouping(7, 3, seed=5))


def test_bad_evaluation_specs(run):
    store, run_id = run
    for spec, message in [(EvaluationSpec(run_id, 1), "k=1"), (EvaluationSpec(run_id, 16), "k=16"),
                          (EvaluationSpec(run_id, 3, fuzziness=1.0), "F=1.0"),
                          (EvaluationSpec(run_id, 3, methods=("mtl", "tag")), "unknown method tag"),
                          (EvaluationSpec(run_id, 3, combination="max"), "unknown combination")]:
        with pytest.raises(ValueError, match=message):
            save_evaluation_spec(spec, store)
    assert not (store.run_dir(run_id) / "evaluations").exists()  # nothing stored for bad input


def test_every_method_is_scored_and_an_evaluation_resumes(run):
    store, run_id = run
    spec = EvaluationSpec(run_id, 3, epochs=2)
    results = run_evaluation(spec, store)
    methods = results["methods"]
    assert list(methods) == ["mtl", "stl", "stg", "stg-hard", "random"]
    assert methods["mtl"]["models_trained"] == 1 and methods["stl"]["models_trained"] == 15
    assert methods["stg"]["models_trained"] == 3
    for m in methods.values():
        assert len(m["epochs"]) == 2
        for split in ("train", "test"):
            for metric in ("f1", "accuracy", "balanced_accuracy"):
                values = np.array(m["epochs"][-1][split][metric])
                assert values.shape == (15,) and np.all((values >= 0) & (values <= 1))
            assert m["mean_f1"][split][-1] == pytest.approx(np.mean(m["epochs"][-1][split]["f1"]))
    memberships = np.array(results["memberships"])
    np.testing.assert_allclose(memberships.sum(1), 1.0)

    # a killed evaluation: results gone, some units done -> finished units are reused
    folder = evaluation_dir(store, run_id, results["evaluation_id"])
    (folder / "results.json").unlink()
    (folder / "units" / "stg.json").unlink()
    kept = (folder / "units" / "mtl.json").stat().st_mtime_ns
    again = run_evaluation(spec, store)
    assert (folder / "units" / "mtl.json").stat().st_mtime_ns == kept
    assert again["methods"]["stg"]["epochs"] == methods["stg"]["epochs"]  # retrained identically
    assert read_results(store, run_id, results["evaluation_id"])["methods"]["mtl"] == again["methods"]["mtl"]


def test_soft_stg_with_one_hot_memberships_equals_the_hard_variant(run):
    store, run_id = run
    hard = np.eye(3)[np.arange(15) % 3]
    spec = EvaluationSpec(run_id, 3, epochs=2, methods=("stg", "stg-hard"),
                          memberships=tuple(tuple(r) for r in hard.tolist()))
    methods = run_evaluation(spec, store)["methods"]
    assert methods["stg"]["epochs"] == methods["stg-hard"]["epochs"]


def test_the_combination_changes_only_the_ensemble(run):
    store, run_id = run
    soft = {c: run_evaluation(EvaluationSpec(run_id, 2, epochs=1, methods=("stg", "mtl"), combination=c), store)
            for c in ("probabilities", "logits")}
    assert soft["probabilities"]["evaluation_id"] != soft["logits"]["evaluation_id"]
    assert soft["probabilities"]["methods"]["mtl"]["epochs"] == soft["logits"]["methods"]["mtl"]["epochs"]
    assert soft["probabilities"]["memberships"] == soft["logits"]["memberships"]


def _worker(store: ArtifactStore, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stg_core.worker", *args, "--store", str(store.root)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.slow  # a worker process trains and evaluates
def test_worker_runs_training_and_evaluation_jobs(tmp_path):
    store = ArtifactStore(tmp_path)
    spec = spec_from_preset("digits-g1", subset=200, test_subset=60, train=TrainConfig(epochs=2))
    run_id = store.save_spec(spec)
    proc = _worker(store, run_id)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert out.strip().endswith(f"run: {run_id}")
    status = store.read_status(run_id)
    assert status["state"] == "completed" and status["progress"] == 1.0

    eval_id = save_evaluation_spec(EvaluationSpec(run_id, 2, epochs=1, methods=("mtl", "stg")), store)
    proc = _worker(store, run_id, "--evaluation", eval_id)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert read_results(store, run_id, eval_id)["methods"]["stg"]["models_trained"] == 2
    status = json.loads((evaluation_dir(store, run_id, eval_id) / "status.json").read_text())
    assert status["state"] == "completed"


@pytest.mark.slow  # a worker process, stopped and resumed
def test_worker_stops_on_sigterm_and_the_run_resumes(tmp_path):
    store = ArtifactStore(tmp_path)
    spec = spec_from_preset("digits-g1", subset=300, test_subset=60, train=TrainConfig(epochs=30))
    run_id = store.save_spec(spec)
    proc = _worker(store, run_id)
    deadline = time.monotonic() + 120
    while store.read_status(run_id).get("epochs_done", 0) < 1:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    status = store.read_status(run_id)
    assert status["state"] == "interrupted" and 1 <= status["epochs_done"] < 30
    done = status["epochs_done"]
    train_run(spec, store)
    assert store.read_status(run_id)["state"] == "completed"
    assert store.recorded_epochs(run_id) == list(range(1, 31)) and done < 30


def test_worker_reports_a_failing_job(tmp_path):
    store = ArtifactStore(tmp_path)
    proc = _worker(store, "0123456789ab")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "error:" in err and "Traceback" not in err
    assert torch.__version__  # the worker failed cleanly without touching the store
    assert store.run_ids() == []
