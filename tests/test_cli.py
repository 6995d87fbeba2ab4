"""The command line as users (and other parts of the product) call it: real subprocesses."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stg_core.config import TrainConfig, data_fingerprint, spec_from_preset
from stg_core.data import dataset_status
from stg_core.store import ArtifactStore
from stg_core.training import train_run

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--preset", "digits-g2", "--subset", "300", "--test-subset", "100", "-q"]


def cli(*args: str, store: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "stg_core", *args, "--store", str(store)] if args[0] not in (
        "presets", "datasets") else [sys.executable, "-m", "stg_core", *args], cwd=ROOT, capture_output=True,
        text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow  # command-line subprocesses
def test_presets_and_datasets(tmp_path):
    out = cli("presets", "-v", store=tmp_path).stdout
    assert "cifar100-g3" in out and "digits-g2" in out and "Not round" in out
    out = cli("datasets", "--data-root", str(tmp_path), store=tmp_path).stdout
    assert "digits" in out and "available" in out
    assert "cifar10" in out and "missing" in out and str(tmp_path) in out


@pytest.mark.slow  # command-line subprocesses
def test_train_reuse_runs_and_datamap(tmp_path):
    first = cli(*TRAIN, "--epochs", "2", store=tmp_path)
    run_id = first.stdout.strip().splitlines()[-1].removeprefix("run: ")
    assert first.stdout.strip().splitlines()[-1] == f"run: {run_id}" and len(run_id) == 12
    second = cli(*TRAIN, "--epochs", "2", store=tmp_path)
    assert second.stdout.strip().splitlines()[-1] == f"run: {run_id}"
    assert "reusing finished run" in second.stderr

    runs = cli("runs", store=tmp_path).stdout
    assert run_id in runs and "2/2 epochs" in runs and "completed" in runs

    text = cli("datamap", run_id[:6], "--task", "Random", "--epoch", "1", store=tmp_path).stdout
    assert "confidence" in text and "variability" in text
    data = json.loads(cli("datamap", run_id, "--task", "Random", "--json", store=tmp_path).stdout)
    assert data["epoch"] == 2 and data["n_samples"] == 300
    assert len(data["confidence_values"]) == 300 and 0 <= min(data["variability_values"])

    bad = cli("datamap", run_id, "--task", "nope", store=tmp_path, check=False)
    assert bad.returncode == 2 and "no task 'nope'" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli("datamap", run_id, "--task", "Random", "--epoch", "9", store=tmp_path, check=False)
    assert bad.returncode == 2 and "epoch 9 is not recorded" in bad.stderr


@pytest.mark.slow  # command-line subprocesses
def test_train_with_a_task_file_and_bad_inputs(tmp_path):
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps([{"name": "small", "classes": ["0", "1", "2"]}, {"name": "seven", "classes": ["7"]}]))
    out = cli("train", "--dataset", "digits", "--tasks-file", str(tasks), "--subset", "200", "--epochs", "1", "-q",
              store=tmp_path / "s").stdout
    run_id = out.strip().splitlines()[-1].removeprefix("run: ")
    assert ArtifactStore(tmp_path / "s").load_spec(run_id).task_names == ("small", "seven")
    out = cli("train", "--dataset", "digits", "--tasks-file", str(tasks), "--subset", "200", "--epochs", "1", "-q",
              "--feature-dim", "8", store=tmp_path / "s").stdout
    narrow = out.strip().splitlines()[-1].removeprefix("run: ")
    assert narrow != run_id and ArtifactStore(tmp_path / "s").load_spec(narrow).train.feature_dim == 8
    listed = {line.split()[0]: line for line in cli("runs", store=tmp_path / "s").stdout.splitlines()}
    assert " auto/8 " in listed[narrow] and " auto " in listed[run_id]

    tasks.write_text(json.dumps([{"name": "x", "classes": ["cat"]}]))
    bad = cli("train", "--dataset", "digits", "--tasks-file", str(tasks), store=tmp_path / "s", check=False)
    assert bad.returncode == 2 and "unknown class 'cat'" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli(*TRAIN, "--epochs", "0", store=tmp_path / "s", check=False)
    assert bad.returncode == 2 and "epochs=0" in bad.stderr
    bad = cli(*TRAIN, "--model", "resnet18", "--feature-dim", "8", store=tmp_path / "s", check=False)
    assert bad.returncode == 2 and "(not resnet18, which has 512 features)" in bad.stderr
    bad = cli("train", "--preset", "cifar10-g1", "--data-root", str(tmp_path), store=tmp_path / "s", check=False)
    assert bad.returncode == 2 and "not found" in bad.stderr and str(tmp_path) in bad.stderr
    assert sorted(ArtifactStore(tmp_path / "s").run_ids()) == sorted([run_id, narrow])  # failures stored nothing


@pytest.mark.slow  # command-line subprocesses
def test_a_user_npz_run_is_identified_by_the_file_content(tmp_path):
    """The run id of ``--dataset npz`` hashes the file's bytes, not its path: the same file
    reuses its run, another file at the same path trains a new one."""
    path, tasks = tmp_path / "mine.npz", tmp_path / "tasks.json"
    tasks.write_text(json.dumps([{"name": "one", "classes": ["1"]}]))
    rng = np.random.default_rng(0)
    args = ["train", "--dataset", "npz", "--data-root", str(path), "--tasks-file", str(tasks), "--epochs", "1", "-q"]
    run_ids = []
    for _ in range(2):
        np.savez(path, x=rng.integers(0, 256, (60, 8, 8), dtype=np.uint8), y=np.arange(60) % 2)
        out = cli(*args, store=tmp_path / "s").stdout
        run_ids.append(out.strip().splitlines()[-1].removeprefix("run: "))
        spec = ArtifactStore(tmp_path / "s").load_spec(run_ids[-1])
        assert spec.data_fingerprint == data_fingerprint(path.read_bytes()) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert run_ids[0] != run_ids[1]
    again = cli(*args, store=tmp_path / "s")
    assert again.stdout.strip().splitlines()[-1] == f"run: {run_ids[1]}" and "reusing finished run" in again.stderr


def _wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.01)


KILL_TRAIN = ["train", "--preset", "digits-g2", "--subset", "1000", "--test-subset", "100", "-q"]


def _kill_and_resume(tmp_path: Path, spec, train_args: list[str], seed: int, n_tasks: int, n_samples: int) -> None:
    """Train ``spec`` uninterrupted; then again in a background worker killed with SIGKILL at a
    seeded random point (after 1 to 3 finished epochs, then 0 to 0.2 s more: mid-epoch or
    mid-write), resumed with ``train_args`` on the command line: the artifacts must be identical."""
    from stg_core import jobs
    from stg_core.training import save_run_spec

    rng = np.random.default_rng(seed)
    kill_after_epochs, extra_delay = int(rng.integers(1, 4)), float(rng.uniform(0.0, 0.2))
    epochs = spec.train.epochs
    reference = ArtifactStore(tmp_path / "ref")
    run_id = train_run(spec, reference)

    store_dir = tmp_path / "killed"
    store = ArtifactStore(store_dir)
    assert save_run_spec(store, spec) == run_id
    proc = subprocess.Popen([sys.executable, "-m", "stg_core.worker", run_id, "--store", str(store_dir)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for(lambda: store.read_status(run_id).get("epochs_done", 0) >= kill_after_epochs)
        time.sleep(extra_delay)  # lands mid-epoch or mid-write
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    status = store.read_status(run_id)
    assert status["epochs_done"] < epochs  # killed, not finished
    jobs.refresh(store)
    assert store.read_status(run_id)["state"] == "interrupted"  # the dead worker is noticed
    # whatever was on disk at the kill is readable: no half-written artifact
    for e in store.recorded_epochs(run_id):
        assert store.load_p_true(run_id, e).shape == (n_tasks, n_samples)
    assert store.load_checkpoint(run_id)[1]["epoch"] >= kill_after_epochs

    resumed = cli(*train_args, "--epochs", str(epochs), store=store_dir)
    assert resumed.stdout.strip().endswith(f"run: {run_id}") and "resuming run" in resumed.stderr
    assert not list((store_dir / "runs" / run_id).rglob("*.tmp"))
    assert store.read_status(run_id)["state"] == "completed"
    for e in range(1, epochs + 1):
        np.testing.assert_array_equal(store.load_p_true(run_id, e), reference.load_p_true(run_id, e))
        np.testing.assert_array_equal(store.load_grams(run_id, [e])[e], reference.load_grams(run_id, [e])[e])
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(store.read_metrics(run_id)) == strip(reference.read_metrics(run_id))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_any_point_leaves_a_resumable_run_with_the_same_result(tmp_path, seed):
    # 10 epochs of 4 batches: the kill (at most 0.2 s after epoch 3) always lands before the end
    spec = spec_from_preset("digits-g2", subset=1000, test_subset=100, train=TrainConfig(epochs=10))
    _kill_and_resume(tmp_path, spec, KILL_TRAIN, seed, 15, 1000)


@pytest.mark.slow
def test_sigkill_of_a_colour_run_resumes_to_the_same_result(tmp_path):
    """32 px colour images train channels_last with fused Adam (the layout that a resumed
    optimiser state must keep): killed and resumed, the run is byte-identical."""
    from tests.cifar_files import write_cifar10

    root = write_cifar10(tmp_path / "data", per_batch=100, n_test=50)
    spec = spec_from_preset("cifar10-g1", data_root=str(root), train=TrainConfig(epochs=6, batch_size=100))
    args = ["train", "--preset", "cifar10-g1", "--data-root", str(root), "--batch-size", "100", "-q"]
    _kill_and_resume(tmp_path, spec, args, 0, 10, 500)


def _trained(tmp_path: Path, *args: str) -> str:
    out = cli(*args, "-q", store=tmp_path).stdout
    return out.strip().splitlines()[-1].removeprefix("run: ")


@pytest.mark.slow
def test_cluster_and_evaluate_commands(tmp_path):
    run_id = _trained(tmp_path, "train", "--preset", "digits-g2", "--subset", "300", "--test-subset", "100",
                      "--epochs", "3")
    text = cli("cluster", run_id, "--k", "3", store=tmp_path).stdout
    assert "k=3" in text and "Random" in text and "alignment" not in text  # digits has no known groups
    data = json.loads(cli("cluster", run_id, "--k", "3", "--fuzziness", "1.5", "--epochs", "1,3",
                          "--representation", "pattern", "--json", store=tmp_path).stdout)
    assert len(data["tasks"]) == 15 and np.array(data["memberships"]).shape == (15, 3)
    np.testing.assert_allclose(np.array(data["memberships"]).sum(1), 1.0, atol=1e-5)
    assert data["labels"] == np.array(data["memberships"]).argmax(1).tolist()
    bad = cli("cluster", run_id, "--k", "16", store=tmp_path, check=False)
    assert bad.returncode == 2 and "must be between 2 and the number of tasks (15)" in bad.stderr
    bad = cli("cluster", run_id, "--k", "3", "--epochs", "2,9", store=tmp_path, check=False)
    assert bad.returncode == 2 and "9" in bad.stderr and "Traceback" not in bad.stderr

    out = json.loads(cli("evaluate", run_id, "--k", "2", "--methods", "mtl,stg", "--epochs", "1", "--json", "-q",
                         store=tmp_path).stdout)
    assert set(out["methods"]) == {"mtl", "stg"} and out["methods"]["stg"]["models_trained"] == 2
    text = cli("evaluate", run_id, "--k", "2", "--methods", "mtl,stg", "--epochs", "1", store=tmp_path).stdout
    assert "mtl" in text and "stg" in text and "test F1 per task" in text
    bad = cli("evaluate", run_id, "--k", "2", "--methods", "mtl,tag", store=tmp_path, check=False)
    assert bad.returncode == 2 and "unknown method tag" in bad.stderr


@pytest.mark.slow  # command-line subprocesses
@pytest.mark.skipif(not dataset_status("fashion_mnist").available,
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist; .ci/run does)")
def test_cluster_reports_alignment_with_known_groups(tmp_path):
    run_id = _trained(tmp_path, "train", "--preset", "fashion_mnist-g1", "--subset", "600", "--test-subset", "200",
                      "--epochs", "2")
    data = json.loads(cli("cluster", run_id, "--k", "3", "--json", store=tmp_path).stdout)
    alignment = data["alignment"]
    assert alignment["n_tasks"] == 10
    for metric in ("ari", "nmi", "purity"):
        assert metric in alignment and set(alignment["chance"][metric]) >= {"mean", "p95"}
    assert "alignment with known groups" in cli("cluster", run_id, "--k", "3", store=tmp_path).stdout
