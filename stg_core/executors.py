"""Where independent units of work run: in this process (default) or as Ray tasks.

A *unit* is a pure function call ``fn(shared, **params)`` — one model of an evaluation, one
run of a seed sweep — that returns its results (metrics, p_true, memberships) instead of
writing them. The caller, the one process that writes the store, writes each result as it
arrives, so a stopped job resumes at unit granularity and the store keeps a single writer.

- :class:`LocalExecutor` runs the units one after the other, in order (today's behaviour).
- :class:`RayExecutor` runs them as Ray tasks: ``shared`` (the training data) goes into the
  object store once, each task asks for one GPU when the cluster has GPUs (else
  ``cpus_per_task`` CPUs), and a task whose worker dies is retried (``max_retries``).
  Results come back as they finish.

A unit's result depends on the number of threads its CPU operations use (a reduction split
over more threads adds in another order), so each executor states it: ``threads`` (None: torch's
default, all cores). Two executors with the same ``threads`` give identical results; a Ray task
uses ``cpus_per_task`` threads, so ``LocalExecutor(threads=1)`` matches ``RayExecutor()``.

Ray is optional (``pip install -r requirements-ray.txt``) and imported only by
:class:`RayExecutor`; nothing else in ``stg_core`` needs it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

UnitFn = Callable[..., Any]  # fn(shared, **params) -> result
Units = Sequence[tuple[str, Mapping[str, Any]]]  # (unit name, params)

EXECUTOR_NAMES = ("local", "ray")
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


class Executor(Protocol):
    """Maps a unit function over named units and yields ``(name, result)`` as each finishes."""

    name: str
    threads: int | None  # CPU threads of each unit; None: torch's default

    def map_units(self, fn: UnitFn, shared: Any, units: Units) -> Iterator[tuple[str, Any]]: ...

    def close(self) -> None: ...


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch CPU threads (None: leave them), restored after."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_unit(fn: UnitFn, threads: int | None, shared: Any, **params: Any) -> Any:
    """``fn(shared, **params)`` with ``threads`` CPU threads, torch's and NumPy's BLAS alike (a
    grouping's NumPy reductions also add in another order over more threads): what every
    executor runs per unit."""
    from threadpoolctl import threadpool_limits

    with torch_threads(threads), threadpool_limits(limits=threads):
        return fn(shared, **params)


class LocalExecutor:
    """The units run in this process, one after the other, in the order given, each with
    ``threads`` CPU threads (None: torch's default)."""

    name = "local"

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads={threads} must be at least 1")
        self.threads = threads

    def map_units(self, fn: UnitFn, shared: Any, units: Units) -> Iterator[tuple[str, Any]]:
        for name, params in units:
            yield name, run_unit(fn, self.threads, shared, **params)

    def close(self) -> None:
        pass


class RayExecutor:
    """The units run as Ray tasks on the cluster at ``address``.

    ``address``: ``"auto"`` (an existing cluster, e.g. started with ``ray start --head``), a
    cluster address (``"ray://host:10001"``, ``"host:6379"``), or ``"local"`` to start a
    cluster inside this process with ``num_cpus`` CPUs (default: all) and no dashboard.
    ``cpus_per_task``: the CPUs each task asks for and the threads it uses.
    ``max_retries``: how often a task whose worker died (killed, out of memory, node lost) is
    run again; a unit is deterministic, so a retried unit returns the same result.
    Connects on construction; :meth:`close` disconnects (and stops a ``local`` cluster).
    """

    name = "ray"

    def __init__(self, address: str = "local", *, num_cpus: int | None = None, cpus_per_task: int = 1,
                 max_retries: int = 3, object_store_memory: int | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ValueError("the ray executor needs Ray: pip install -r requirements-ray.txt") from exc
        if max_retries < 0:
            raise ValueError(f"max_retries={max_retries} must not be negative")
        if cpus_per_task < 1:
            raise ValueError(f"cpus_per_task={cpus_per_task} must be at least 1")
        self._ray, self.address, self.max_retries, self.threads = ray, address, max_retries, cpus_per_task
        self._owns_cluster = False
        # The workers of a cluster started here import stg_core from this checkout.
        runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(
            p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")) if p)}}
        if not ray.is_initialized():
            if address == "local":
                ray.init(num_cpus=num_cpus, include_dashboard=False, object_store_memory=object_store_memory,
                         runtime_env=runtime_env, log_to_driver=False, configure_logging=False)
                self._owns_cluster = True
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        self.cpus = int(resources.get("CPU", 0))

    def describe(self) -> str:
        where = "a local Ray cluster" if self.address == "local" else f"the Ray cluster at {self.address}"
        return f"{where} ({self.cpus} CPUs, {self.gpus} GPUs)"

    def map_units(self, fn: UnitFn, shared: Any, units: Units) -> Iterator[tuple[str, Any]]:
        ray = self._ray
        if not units:
            return
        shared_ref = ray.put(shared)  # once, however many units read it
        remote = ray.remote(run_unit).options(max_retries=self.max_retries, num_cpus=self.threads,
                                              num_gpus=1 if self.gpus else 0)
        pending = {remote.remote(fn, self.threads, shared_ref, **params): name for name, params in units}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    yield pending.pop(ref), ray.get(ref)
        finally:
            for ref in pending:  # the caller stopped early (an error, an interrupt): drop the rest
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._owns_cluster and self._ray.is_initialized():
            self._ray.shutdown()


def make_executor(name: str = "local", address: str | None = None, **kwargs: Any) -> LocalExecutor | RayExecutor:
    """The executor called ``name`` (``"local"`` or ``"ray"``). For Ray, ``address`` defaults to
    the environment variable ``STG_RAY_ADDRESS``, else ``"local"``."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address or os.environ.get("STG_RAY_ADDRESS") or "local", **kwargs)
    raise ValueError(f"unknown executor {name!r}; use {' or '.join(EXECUTOR_NAMES)}")
