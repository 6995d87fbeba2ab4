#!/usr/bin/env python
"""The same evaluation on the local executor and on a local Ray cluster of 1 and 2 workers.

    python bench/scale_out.py                  # digits G2, 600 images, 2 training epochs, ~15 models
    python bench/scale_out.py --subset 1797 --epochs 5 --methods mtl,stl,stg,stg-hard,random

Trains one digits G2 run, then evaluates it (same spec, a fresh copy of the run each time, so
nothing is reused) with: the local executor (units one after the other, torch's default
threads), the same at one thread, and Ray clusters started here with ``num_cpus`` 1 and 2 (one thread per task). Prints
the wall time of each evaluation, its ratio to the local one, and Ray's start-up (``ray.init``
to a ready cluster) apart; also the local executor at one thread per unit, whose scores the Ray
runs must equal (CPU results depend on the thread count).
Needs Ray: ``pip install -r requirements-ray.txt``. Nothing here asserts; the figures depend on
the machine and its load (printed at the start and the end).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stg_core.config import TrainConfig, spec_from_preset  # noqa: E402
from stg_core.evaluation import EvaluationSpec, run_evaluation  # noqa: E402
from stg_core.executors import LocalExecutor, RayExecutor  # noqa: E402
from stg_core.store import ArtifactStore  # noqa: E402
from stg_core.training import train_run  # noqa: E402


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _scores(results: dict) -> dict:
    return {m: r["epochs"] for m, r in results["methods"].items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subset", type=int, default=600, help="training images of the run")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of the run and of every model")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--methods", default="mtl,stl,stg-hard,random")
    args = parser.parse_args()
    import torch

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), python {platform.python_version()}")
    print(f"# load average at start: {_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        base = ArtifactStore(Path(tmp) / "base")
        spec = spec_from_preset("digits-g2", subset=args.subset, test_subset=300, train=TrainConfig(epochs=args.epochs))
        run_id = train_run(spec, base)
        evaluation = EvaluationSpec(run_id, args.k, epochs=args.epochs, methods=tuple(args.methods.split(",")))

        def fresh(name: str) -> ArtifactStore:
            shutil.copytree(base.run_dir(run_id), Path(tmp) / name / "runs" / run_id)
            return ArtifactStore(Path(tmp) / name)

        t0 = time.perf_counter()
        local = run_evaluation(evaluation, fresh("local"), executor=LocalExecutor())
        local_s = time.perf_counter() - t0
        models = sum(m["models_trained"] for m in local["methods"].values())
        print(f"# evaluation: digits G2, {args.subset} images, {models} models x {args.epochs} epochs, "
              f"methods {args.methods}, k={args.k}")
        print(f"{'executor':24s} {'start-up s':>10s} {'wall s':>8s} {'vs local':>9s}")
        print(f"{'local':24s} {'':>10s} {local_s:8.1f} {1.0:9.2f}")
        t0 = time.perf_counter()
        single = run_evaluation(evaluation, fresh("local1"), executor=LocalExecutor(threads=1))
        wall = time.perf_counter() - t0
        print(f"{'local, 1 thread':24s} {'':>10s} {wall:8.1f} {local_s / wall:9.2f}")
        ray_results = []
        for workers in (1, 2):
            t0 = time.perf_counter()
            executor = RayExecutor("local", num_cpus=workers, object_store_memory=200 * 2**20)
            startup = time.perf_counter() - t0
            try:
                t0 = time.perf_counter()
                results = run_evaluation(evaluation, fresh(f"ray{workers}"), executor=executor)
                wall = time.perf_counter() - t0
            finally:
                executor.close()
            ray_results.append(_scores(results))
            print(f"{f'ray, {workers} worker(s)':24s} {startup:10.1f} {wall:8.1f} {local_s / wall:9.2f}")
        print(f"# the two Ray runs give the scores of the local executor at 1 thread: "
              f"{ray_results[0] == ray_results[1] == _scores(single)}")
    print(f"# load average at end: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
