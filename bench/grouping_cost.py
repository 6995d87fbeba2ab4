"""What each grouping method costs as the number of tasks grows (the paper's Table 1, measured).

    python bench/grouping_cost.py            # n = 10, 30, 100 tasks; about 10 min on 2 CPU cores
    python bench/grouping_cost.py --quick    # n = 10, 30 and fewer epochs; about 2 min
      --tasks 10,30,100  --epochs 10  --k 3  --methods stg,tag,grad-tae,dmtg,random

For each n: one MTL run on scikit-learn's digits (1,347 training images, 8x8, small CNN,
batch 256, Adam) with n distinct seeded class-set tasks (random subsets of the ten digits),
then every method groups its tasks into k groups. Printed per method: wall time of its own
work, models trained, extra forward / backward minibatch passes beyond one plain MTL training,
the cost of one of its training steps relative to MTL, and the MTL training it reuses. Every
method runs in this process, one after the other, on the same data and model.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stg_core.config import ExperimentSpec, TrainConfig  # noqa: E402
from stg_core.grouping import GROUPING_METHODS, GroupingSpec, run_grouping  # noqa: E402
from stg_core.store import ArtifactStore  # noqa: E402
from stg_core.tasks import Task  # noqa: E402
from stg_core.training import train_run  # noqa: E402
from common import load_average  # noqa: E402


def class_set_tasks(n: int, seed: int = 0) -> tuple[Task, ...]:
    """n distinct tasks, each a seeded random set of 1 to 5 of the ten digits."""
    rng = np.random.default_rng(seed)
    seen: set[tuple[str, ...]] = set()
    tasks = []
    while len(tasks) < n:
        size = int(rng.integers(1, 6))
        positives = tuple(sorted(str(d) for d in rng.choice(10, size, replace=False)))
        if positives not in seen:
            seen.add(positives)
            tasks.append(Task("{" + ",".join(positives) + "}", "classes", positives))
    return tuple(tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="n = 10, 30 and 5 epochs")
    parser.add_argument("--tasks", default=None, help="comma-separated task counts (default 10,30,100)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 10; 5 with --quick)")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--methods", default=",".join(GROUPING_METHODS))
    args = parser.parse_args()
    sizes = [int(v) for v in (args.tasks or ("10,30" if args.quick else "10,30,100")).split(",")]
    epochs = args.epochs or (5 if args.quick else 10)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]

    print(f"# grouping cost: digits (1,347 training images, 8x8), small CNN, batch 256, Adam lr 1e-3, "
          f"{epochs} epochs, k = {args.k}")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), numpy {np.__version__}, load average "
          f"{load_average()}")
    print("# extra passes: minibatch forward / backward passes beyond one plain MTL training of the same length")
    header = (f"{'tasks':>5s}  {'method':8s} {'wall s':>8s} {'models':>6s} {'extra fwd':>9s} {'extra bwd':>9s} "
              f"{'step x':>6s} {'reused s':>8s}  notes")
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        store = ArtifactStore(tmp)
        for n in sizes:
            spec = ExperimentSpec("digits", class_set_tasks(n), TrainConfig(epochs=epochs))
            t0 = time.perf_counter()
            run_id = train_run(spec, store)
            print(f"{n:5d}  {'(MTL run)':8s} {time.perf_counter() - t0:8.1f}   training that records the data maps",
                  flush=True)
            for method in methods:
                result = run_grouping(GroupingSpec(run_id, method, args.k), store, device="cpu")
                c = result.cost
                flags = "; ".join(result.warnings + tuple(note for note in result.notes if "beam" in note))
                print(f"{n:5d}  {method:8s} {c.wall_seconds:8.1f} {c.models_trained:6d} {c.extra_forward_passes:9d} "
                      f"{c.extra_backward_passes:9d} {c.compute_factor:6.2f} {c.reused_training_seconds:8.1f}  "
                      f"{flags[:100]}", flush=True)
    print(f"# load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
