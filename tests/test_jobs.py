import os
import signal
import threading
import time

import pytest

from stg_core import jobs
from stg_core.config import ExperimentSpec, TrainConfig, spec_from_preset
from stg_core.evaluation import EvaluationSpec, read_results, save_evaluation_spec
from stg_core.store import ArtifactStore
from stg_core.tasks import get_preset


def _wait(store, job, states, timeout=240):
    deadline = time.monotonic() + timeout
    while True:
        status = jobs.read_status(store, job)
        if status.get("state") in states:
            return status
        assert time.monotonic() < deadline, f"{job} still {status}"
        time.sleep(0.1)


def _spec(epochs=2, seed=0):
    return spec_from_preset("digits-g1", subset=200, test_subset=60, train=TrainConfig(epochs=epochs, seed=seed))


def test_same_job_submitted_twice_at_once_starts_one_worker(tmp_path):
    store = ArtifactStore(tmp_path)
    job = jobs.Job(store.save_spec(_spec()))
    states = []
    threads = [threading.Thread(target=lambda: states.append(jobs.submit(store, job))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(states) == ["running"] * 4
    pid = jobs.read_status(store, job)["pid"]
    status = _wait(store, job, ("completed", "failed"))
    assert status["state"] == "completed", status
    assert job.log_path(store).read_text().count("epoch 2/2 done") == 1  # one worker trained it
    assert pid > 0 and jobs.submit(store, job) == "completed"  # a finished job is reused


@pytest.mark.slow  # two worker processes, one after the other
def test_queue_runs_jobs_one_after_the_other_and_evaluations_too(tmp_path):
    store = ArtifactStore(tmp_path)
    a, b = jobs.Job(store.save_spec(_spec(seed=1))), jobs.Job(store.save_spec(_spec(seed=2)))
    assert jobs.submit(store, a, max_concurrent=1) == "running"
    assert jobs.submit(store, b, max_concurrent=1) == "queued"
    assert jobs.read_status(store, b)["state"] == "queued"
    _wait(store, a, ("completed",))
    _wait(store, b, ("completed",))  # started by a's worker when it finished

    evaluation = jobs.Job(a.run_id, save_evaluation_spec(EvaluationSpec(a.run_id, 2, epochs=1, methods=("mtl", "stg")),
                                                         store))
    assert jobs.submit(store, evaluation) == "running"
    _wait(store, evaluation, ("completed",))
    assert read_results(store, a.run_id, evaluation.evaluation_id)["methods"]["stg"]["models_trained"] == 2
    assert evaluation in jobs.all_jobs(store)


@pytest.mark.slow
def test_cancel_leaves_a_resumable_run_and_a_killed_worker_is_detected(tmp_path):
    store = ArtifactStore(tmp_path)
    job = jobs.Job(store.save_spec(_spec(epochs=40)))
    queued = jobs.Job(store.save_spec(_spec(epochs=2, seed=5)))
    jobs.submit(store, job)
    assert jobs.submit(store, queued) == "queued"
    assert jobs.cancel(store, queued) == "interrupted"  # dequeued, never started
    _wait(store, job, ("running",))
    deadline = time.monotonic() + 120
    while store.read_status(job.run_id).get("epochs_done", 0) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert jobs.cancel(store, job) == "cancelling"
    status = _wait(store, job, ("interrupted",))
    assert 1 <= status["epochs_done"] < 40
    assert jobs.read_status(store, queued)["state"] == "interrupted"  # cancelled stays cancelled

    assert jobs.submit(store, job) == "running"  # resumes
    deadline = time.monotonic() + 120
    while store.read_status(job.run_id).get("epochs_done", 0) <= status["epochs_done"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(jobs.read_status(store, job)["pid"], signal.SIGKILL)  # a crash: no chance to clean up
    time.sleep(0.5)
    jobs.refresh(store)
    dead = jobs.read_status(store, job)
    assert dead["state"] == "interrupted" and "unexpectedly" in dead["error"]
    assert jobs.submit(store, job) == "running"
    assert _wait(store, job, ("completed",))["epochs_done"] == 40


def test_a_failing_worker_reports_its_error(tmp_path):
    store = ArtifactStore(tmp_path)
    # a spec saved by hand whose dataset is missing: the worker fails, the status says why
    spec = ExperimentSpec("cifar10", get_preset("cifar10-g1").tasks, TrainConfig(epochs=1),
                          data_root=str(tmp_path / "nothing-here"))
    job = jobs.Job(store.save_spec(spec))
    jobs.submit(store, job)
    status = _wait(store, job, ("failed",))
    assert "not found" in status["error"] and str(tmp_path / "nothing-here") in status["error"]
    assert "not found" in job.log_path(store).read_text()


def test_submit_needs_a_saved_spec(tmp_path):
    with pytest.raises(ValueError, match="no saved spec"):
        jobs.submit(ArtifactStore(tmp_path), jobs.Job("0123456789ab"))


def test_a_job_recorded_by_an_older_code_version_is_refused_not_resumed_elsewhere(tmp_path, monkeypatch):
    """After a TRAINING_VERSION bump a stored run's settings hash to another id: resuming it
    must fail with a message, not train into another folder while its own status never ends.
    Evaluations and groupings carry the training version in their ids too."""
    from stg_core import config, worker
    from stg_core.grouping import GroupingSpec, save_grouping_spec
    from stg_core.training import train_run

    store = ArtifactStore(tmp_path)
    done = train_run(_spec(epochs=1), store)
    monkeypatch.setattr(config, "TRAINING_VERSION", config.TRAINING_VERSION - 1)
    old_run = store.save_spec(_spec(epochs=1, seed=1))
    old_eval = save_evaluation_spec(EvaluationSpec(done, 2, epochs=1, methods=("mtl",)), store)
    old_grouping = save_grouping_spec(GroupingSpec(done, "random", 2), store)
    monkeypatch.undo()
    assert _spec(epochs=1, seed=1).run_id() != old_run
    for job, kind in ((jobs.Job(old_run), "run"), (jobs.Job(done, old_eval), "evaluation"),
                      (jobs.Job(done, grouping_id=old_grouping), "grouping")):
        argv = [job.run_id, "--store", str(tmp_path)]
        argv += ["--evaluation", job.evaluation_id] if job.evaluation_id else []
        argv += ["--grouping", job.grouping_id] if job.grouping_id else []
        assert worker.main(argv) == 1
        status = jobs.read_status(store, job)
        assert status["state"] == "failed"
        assert f"{kind} {job.evaluation_id or job.grouping_id or job.run_id} was recorded by an older version" \
            in status["error"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir() if p.is_dir()) == sorted([done, old_run])
