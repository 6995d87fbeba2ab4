"""The Ray executor: a local cluster of 2 CPUs without dashboard, started once for the session.
An evaluation through Ray equals the local one exactly (same seeds, one thread per unit on both:
CPU results depend on the thread count); a worker killed mid-task is retried by Ray and the
results are still identical."""

import functools
import shutil

import numpy as np
import pytest

from stg_core.config import TrainConfig, spec_from_preset
from stg_core.evaluation import EvaluationSpec, evaluation_dir, run_evaluation
from stg_core.executors import LocalExecutor, make_executor
from stg_core.grouping import GroupingSpec, grouping_dir, read_grouping, run_groupings
from stg_core.store import ArtifactStore, read_json
from stg_core.sweep import run_sweep
from stg_core.training import train_run
from tests.ray_support import killed_once, require_ray

pytestmark = pytest.mark.slow  # starts a Ray cluster and trains through it


@pytest.fixture(scope="session")
def ray_executor():
    require_ray()
    from stg_core.executors import RayExecutor

    executor = RayExecutor("local", num_cpus=2, object_store_memory=200 * 2**20)
    yield executor
    executor.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``(store root, run id)``: digits G2, 300 training images, 2 epochs."""
    root = tmp_path_factory.mktemp("ray-run")
    spec = spec_from_preset("digits-g2", subset=300, test_subset=100, train=TrainConfig(epochs=2))
    return root, train_run(spec, ArtifactStore(root))


def _copy(trained, tmp_path, name):
    """A fresh store holding a copy of the trained run (each evaluation starts from nothing)."""
    root, run_id = trained
    shutil.copytree(root / "runs" / run_id, tmp_path / name / "runs" / run_id)
    return ArtifactStore(tmp_path / name)


def _without_times(results):
    return {m: {k: v for k, v in r.items() if k != "seconds"} for m, r in results["methods"].items()}


SPEC = dict(n_clusters=3, epochs=2, methods=("mtl", "stg", "stg-hard", "random"))


def test_an_evaluation_through_ray_equals_the_local_one(ray_executor, trained, tmp_path):
    run_id = trained[1]
    spec = EvaluationSpec(run_id, **SPEC)
    local = run_evaluation(spec, _copy(trained, tmp_path, "local"), executor=LocalExecutor(threads=1))
    steps = []
    remote = run_evaluation(spec, _copy(trained, tmp_path, "ray"), executor=ray_executor,
                            progress=lambda message, step, n: steps.append((step, n)))
    assert remote["memberships"] == local["memberships"]
    assert _without_times(remote) == _without_times(local)
    assert steps[-1][0] == steps[-1][1]  # progress per unit, up to every model-epoch
    assert len(steps) == len(list((evaluation_dir(ArtifactStore(tmp_path / "ray"), run_id, remote["evaluation_id"])
                                   / "units").glob("*.json")))


def test_a_killed_ray_worker_is_retried_with_identical_results(ray_executor, trained, tmp_path):
    run_id = trained[1]
    spec = EvaluationSpec(run_id, **SPEC)
    local = run_evaluation(spec, _copy(trained, tmp_path, "local"), executor=LocalExecutor(threads=1))
    marker = str(tmp_path / "attempt")

    class KillingOnce:
        """The Ray executor, the first unit's worker killed mid-task."""
        name, threads = "ray", ray_executor.threads

        def map_units(self, fn, shared, units):
            return ray_executor.map_units(functools.partial(killed_once, fn, marker), shared, units)

    remote = run_evaluation(spec, _copy(trained, tmp_path, "ray"), executor=KillingOnce())
    assert (tmp_path / "attempt.killed").exists()  # a worker did die mid-task
    assert _without_times(remote) == _without_times(local)


def test_a_sweep_through_ray_equals_the_local_sweep(ray_executor, tmp_path):
    base = spec_from_preset("digits-g2", subset=200, test_subset=60, train=TrainConfig(epochs=2))
    local_store, ray_store = ArtifactStore(tmp_path / "local"), ArtifactStore(tmp_path / "ray")
    local = run_sweep(base, [0, 1], local_store, executor=LocalExecutor(threads=1))
    remote = run_sweep(base, [0, 1], ray_store, executor=ray_executor)
    assert remote["runs"] == local["runs"] and remote["id"] == local["id"]
    for run_id in remote["runs"].values():
        assert ray_store.read_status(run_id)["state"] == "completed"
        np.testing.assert_array_equal(ray_store.load_p_true(run_id, 2), local_store.load_p_true(run_id, 2))
        assert [r["test"] for r in ray_store.read_metrics(run_id)] == [r["test"] for r in local_store.read_metrics(run_id)]
        assert ray_store.list_runs()  # indexed like a run trained here


def test_the_executor_names():
    assert isinstance(make_executor("local"), LocalExecutor)
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        make_executor("dask")


def test_the_local_path_works_without_ray(tmp_path):
    """With Ray made unimportable: nothing of the engine imports it, a local sweep and an
    evaluation run, and asking for the Ray executor says how to install it."""
    import subprocess
    import sys
    from pathlib import Path

    code = f"""
import sys
sys.modules["ray"] = None  # import ray now raises ImportError
from stg_core.config import TrainConfig, spec_from_preset
from stg_core.evaluation import EvaluationSpec, run_evaluation
from stg_core.executors import make_executor
from stg_core.stability import sweep_stability
from stg_core.store import ArtifactStore, read_json
from stg_core.sweep import run_sweep
store = ArtifactStore({str(tmp_path)!r})
base = spec_from_preset("digits-g2", subset=150, test_subset=50, train=TrainConfig(epochs=1))
record = run_sweep(base, [0, 1], store)
assert sweep_stability(store, record["id"], 3).co_association.shape == (15, 15)
run_evaluation(EvaluationSpec(record["runs"]["0"], 2, epochs=1, methods=("mtl",)), store)
try:
    make_executor("ray")
except ValueError as exc:
    assert "requirements-ray.txt" in str(exc)
else:
    raise AssertionError("the ray executor started without Ray")
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_grouping_methods_through_ray_equal_the_local_ones(ray_executor, trained, tmp_path):
    """Each method is one unit: Ray runs them side by side, this process writes each grouping."""
    run_id = trained[1]
    specs = [GroupingSpec(run_id, method, 2, seed=1) for method in ("stg", "tag", "random")]
    local = run_groupings(specs, _copy(trained, tmp_path, "local"), device="cpu", executor=LocalExecutor(threads=1))
    store = _copy(trained, tmp_path, "ray")
    done = []
    remote = run_groupings(specs, store, device="cpu", executor=ray_executor,
                           progress=lambda message, step, n: done.append((step, n)))
    assert [r.method for r in remote] == ["stg", "tag", "random"] and sorted(done) == [(1, 3), (2, 3), (3, 3)]
    for a, b in zip(local, remote):
        np.testing.assert_array_equal(a.memberships, b.memberships)
    for spec, result in zip(specs, remote):  # written by the driver, read back as stored (6 decimals)
        stored = read_grouping(store, run_id, spec.grouping_id())
        np.testing.assert_allclose(stored.memberships, result.memberships, atol=1e-6)
        np.testing.assert_array_equal(stored.labels, result.labels)
        assert read_json(grouping_dir(store, run_id, spec.grouping_id()) / "status.json")["state"] == "completed"
