"""How long the one-click demos take: from a cold start to their grouping.

    python bench/demo_time.py        # each demo whose data is here: about 1 min on 2 CPU cores

For each demo of ``stg_core.demo`` (digits always; Fashion-MNIST when its files are here):
training its run in a fresh store the way the app's worker does, then clustering it at the
demo's k and checking the paper's claims — the time a presenter waits after pressing
**Run the demo**. The target is about a minute on a laptop's two CPU cores.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

t_start = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from stg_core.claims import check_claims  # noqa: E402
from stg_core.clustering import cluster_tasks  # noqa: E402
from stg_core.run_vectors import load_reduced_task_vectors  # noqa: E402
from stg_core.demo import available_demos  # noqa: E402
from stg_core.store import ArtifactStore  # noqa: E402
from stg_core.training import train_run  # noqa: E402
from common import load_average  # noqa: E402

imports = time.perf_counter() - t_start


def main() -> None:
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} "
          f"threads), load average {load_average()}")
    print(f"# imports: {imports:.1f} s")
    for demo in available_demos():
        with tempfile.TemporaryDirectory() as tmp:
            store = ArtifactStore(tmp)
            t0 = time.perf_counter()
            run_id = train_run(demo.spec, store)
            trained = time.perf_counter() - t0
            reduced, n_features = load_reduced_task_vectors(store, run_id)
            memberships = cluster_tasks(reduced, demo.k, n_features=n_features).memberships
            spec, info = store.load_spec(run_id), store.read_dataset_info(run_id)
            claims = check_claims(memberships, reduced, list(spec.task_names), spec.tasks, info["class_names"],
                                  info.get("super_groups"), n_features=n_features)
            total = time.perf_counter() - t0
            verdicts = "; ".join(f"{c.title}: {c.verdict}" for c in claims)
            print(f"{demo.name:14s} {demo.spec.preset} {demo.spec.train.epochs} epochs: training {trained:5.1f} s, "
                  f"to the grouping and claims {total:5.1f} s (+ {imports:.1f} s of imports)  "
                  f"{'PASS' if total + imports <= 90 else 'SLOW'} (about a minute)")
            print(f"    claims: {verdicts}")
    print(f"# load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
