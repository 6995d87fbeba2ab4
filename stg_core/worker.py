"""Background worker: ``python -m stg_core.worker RUN [--evaluation EVAL_ID | --grouping ID] [--store DIR]``.

Runs one job — the training of run RUN (spec already saved in the store), one of its
evaluations, or one grouping of its tasks — in its own process, writing progress into the store's status files (at most
about once a second) so the app can show it. SIGTERM or SIGINT stop the job between two steps
of work and leave it resumable (state ``interrupted``); SIGKILL does too, since every artifact
is written atomically and training resumes from its last checkpoint.

The job itself holds the job's writer lock (:mod:`stg_core.locks`); a worker that finds it
held — the same run started on the command line meanwhile — exits with status 2 and leaves
the status to that writer.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from types import FrameType

from stg_core import jobs, locks
from stg_core.store import ArtifactStore


class _Throttle:
    """Calls ``write`` at most every ``interval`` seconds (and always for the last step)."""

    def __init__(self, write, interval: float = 1.0) -> None:
        self.write, self.interval, self.last = write, interval, 0.0

    def __call__(self, done: float, final: bool, **fields) -> None:
        now = time.monotonic()
        if final or now - self.last >= self.interval:
            self.last = now
            self.write(done, **fields)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


def _check_current(kind: str, job_id: str, current_id: str) -> None:
    """A stored job whose settings now hash to another id was recorded by an older version of
    the code (a ``TRAINING_VERSION`` or ``GROUPING_VERSION`` bump): resuming it would write into
    another folder while its own status never finishes, and would mix the two versions' results."""
    if current_id != job_id:
        raise ValueError(f"{kind} {job_id} was recorded by an older version of stg_core and cannot be resumed; "
                         f"launch the same settings again (with this version they are {kind} {current_id})")


def run_training_job(store: ArtifactStore, run_id: str, device: str = "auto") -> None:
    from stg_core.training import train_run

    spec = store.load_spec(run_id)
    _check_current("run", run_id, spec.run_id())
    started = time.time()

    def write(done: float, **fields) -> None:
        elapsed = time.time() - started
        eta = elapsed / done * (1 - done) if done > 0 else None
        store.write_status(run_id, progress=round(done, 4), eta_seconds=eta, **fields)

    throttle = _Throttle(write)

    def progress(epoch: int, n_epochs: int, batch: int, n_batches: int) -> None:
        done = ((epoch - 1) + batch / n_batches) / n_epochs
        throttle(done, batch == n_batches, epoch=epoch, batch=batch, n_batches=n_batches)
        if batch == n_batches:
            print(f"epoch {epoch}/{n_epochs} done", flush=True)

    train_run(spec, store, device=device, progress=progress)
    print(f"run: {run_id}", flush=True)


def _step_progress(store: ArtifactStore, job: jobs.Job):
    """A ``(message, step, n_steps)`` progress callback for an evaluation or grouping job: the
    fraction done and the message go to its status file (throttled) and every step to the log."""

    def write(done: float, message: str = "") -> None:
        jobs.write_job_status(store, job, state="running", progress=round(done, 4), message=message)

    throttle = _Throttle(write)

    def progress(message: str, step: int, n_steps: int) -> None:
        throttle(step / max(n_steps, 1), step == n_steps, message=message)
        print(f"{message} ({step}/{n_steps})", flush=True)

    return progress


def run_evaluation_job(store: ArtifactStore, run_id: str, evaluation_id: str, device: str = "auto") -> None:
    from stg_core.evaluation import load_evaluation_spec, run_evaluation

    spec = load_evaluation_spec(store, run_id, evaluation_id)
    _check_current("evaluation", evaluation_id, spec.evaluation_id())
    executor = evaluation_executor()
    try:
        run_evaluation(spec, store, device=device, progress=_step_progress(store, jobs.Job(run_id, evaluation_id)),
                       executor=executor)
    finally:
        executor.close()
    print(f"evaluation: {evaluation_id}", flush=True)


def evaluation_executor():
    """Where an evaluation job's models train: on the Ray cluster named by ``STG_RAY_ADDRESS``
    (``auto``, an address or ``local``) when it is set, else in this worker."""
    from stg_core.executors import make_executor

    address = os.environ.get("STG_RAY_ADDRESS")
    executor = make_executor("ray", address) if address else make_executor("local")
    if address:
        print(f"evaluating on {executor.describe()}", flush=True)
    return executor


def run_grouping_job(store: ArtifactStore, run_id: str, grouping_id: str, device: str = "auto") -> None:
    from stg_core.grouping import load_grouping_spec, run_grouping

    spec = load_grouping_spec(store, run_id, grouping_id)
    _check_current("grouping", grouping_id, spec.grouping_id())
    result = run_grouping(spec, store, device=device,
                          progress=_step_progress(store, jobs.Job(run_id, grouping_id=grouping_id)))
    print(f"grouping: {grouping_id} ({spec.method}, k={spec.n_clusters}, {result.cost.wall_seconds:.1f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stg_core.worker")
    parser.add_argument("run")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--evaluation", default=None, help="evaluation id (else: train the run)")
    kind.add_argument("--grouping", default=None, help="grouping id (else: train the run)")
    parser.add_argument("--store", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-concurrent", type=int, default=1, help="workers allowed at once (queued jobs)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    store = ArtifactStore(args.store)
    job = jobs.Job(args.run, args.evaluation, args.grouping)
    code = 0
    try:
        if args.evaluation:
            run_evaluation_job(store, args.run, args.evaluation, args.device)
        elif args.grouping:
            run_grouping_job(store, args.run, args.grouping, args.device)
        else:
            run_training_job(store, args.run, args.device)
    except locks.JobBusyError as exc:  # another process writes this job: its status is its own
        print(f"error: {exc}", file=sys.stderr, flush=True)
        code = 2
    except KeyboardInterrupt as exc:
        print(f"interrupted: {exc}", file=sys.stderr, flush=True)
        _mark_if_running(store, job, "interrupted", f"stopped: {exc}")
        code = 130
    except Exception as exc:  # shown in the app from the status file, and in the log
        message = f"{type(exc).__name__}: {exc}"
        print(f"error: {message}", file=sys.stderr, flush=True)
        _mark_if_running(store, job, "failed", message)
        code = 1
    try:
        jobs.refresh(store, max_concurrent=args.max_concurrent, device=args.device)  # start what was queued
    except (OSError, ValueError) as exc:
        print(f"warning: could not start queued jobs: {exc}", file=sys.stderr, flush=True)
    return code


def _mark_if_running(store: ArtifactStore, job: jobs.Job, state: str, error: str) -> None:
    """Errors before the job wrote its own status (bad spec, missing data) still reach the app;
    written under the job's lock, and not at all when another process now writes the job."""
    try:
        with store.writer_lock(*job.lock_args(), wait=0):
            if jobs.read_status(store, job).get("state") in ("running", "created", "queued"):
                jobs.write_job_status(store, job, state=state, error=error, pid=None)
    except (OSError, ValueError):
        pass  # no such job folder, or another writer: nothing to mark


if __name__ == "__main__":
    sys.exit(main())
