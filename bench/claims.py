#!/usr/bin/env python
"""How the paper's claims fare on the demos' runs, over training seeds: the figures of docs/claims.md.

    python bench/claims.py                       # digits G2 (the digits demo), seeds 0-2 (~1 min on 2 idle cores)
    python bench/claims.py --demo fashion_mnist  # Fashion-MNIST G2 (the second demo), seeds 0-2 (~5 min)
    python bench/claims.py --seeds 0-9 --k 2-6

Trains each demo's run (its own settings, only the training seed changed) into a temporary
store, clusters it (raw data maps, every epoch, F = 2, k-means seed 0) at each k and prints,
per seed and k: the complements' membership L1 distance (and, per seed, their largest p_true
difference at the last epoch), whom the random task shares its
cluster with, and each task's mean confidence (the "barely learned" test of the random-task
claim). Nothing here asserts.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from stg_core.claims import THRESHOLDS, complement_pairs  # noqa: E402
from stg_core.clustering import cluster_tasks  # noqa: E402
from stg_core.run_vectors import load_reduced_task_vectors  # noqa: E402
from stg_core.demo import DEMOS  # noqa: E402
from stg_core.store import ArtifactStore  # noqa: E402
from stg_core.training import train_run  # noqa: E402
from common import cpu_model, load_average, usable_cores  # noqa: E402


def span(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def claim_figures(store: ArtifactStore, run_id: str, ks: list[int]) -> dict:
    """Per k: complement L1 distances and the random task's company; plus mean confidences."""
    spec = store.load_spec(run_id)
    names = list(spec.task_names)
    pairs = complement_pairs(spec.tasks, store.read_dataset_info(run_id)["class_names"])
    reduced, n_features = load_reduced_task_vectors(store, run_id)
    last = store.recorded_epochs(run_id)[-1]
    p_true = store.load_p_true(run_id, last).astype(np.float64)
    out = {"confidence": dict(zip(names, store.load_summary(run_id, last)[0])), "k": {},
           "p_true_gap": {f"{a} / {b}": float(np.abs(p_true[names.index(a)] - p_true[names.index(b)]).max())
                          for a, b in pairs}}
    for k in ks:
        result = cluster_tasks(reduced, k, 2.0, random_state=0, n_features=n_features)
        w, labels = result.memberships, result.labels
        l1 = {f"{a} / {b}": float(np.abs(w[names.index(a)] - w[names.index(b)]).sum()) for a, b in pairs}
        company = {r: [n for n, c in zip(names, labels) if c == labels[names.index(r)] and n != r]
                   for r in names if spec.tasks[names.index(r)].kind == "random"}
        out["k"][k] = {"l1": l1, "company": company}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="digits", choices=sorted(DEMOS))
    parser.add_argument("--seeds", default="0-2", help="training seeds, e.g. 0-2")
    parser.add_argument("--k", default="2-6", help="cluster counts, e.g. 2-6")
    args = parser.parse_args()
    demo = DEMOS[args.demo]
    print(f"cpu: {cpu_model()}; usable cores={usable_cores()}; load average {load_average()}")
    print(f"demo {demo.name}: {demo.spec.preset}, {demo.spec.train.epochs} epochs, subset {demo.spec.subset}; "
          f"raw data maps of every epoch, F = 2, k-means seed 0; complements hold at L1 <= "
          f"{THRESHOLDS['complement_l1']}")
    ks = span(args.k)
    with tempfile.TemporaryDirectory() as tmp:
        store = ArtifactStore(tmp)
        for seed in span(args.seeds):
            run_id = train_run(demo.spec.with_train(seed=seed), store)
            figures = claim_figures(store, run_id, ks)
            conf = figures["confidence"]
            print(f"seed {seed}: mean confidence " + ", ".join(f"{n} {c:.3f}" for n, c in conf.items()))
            print("  largest p_true difference at the last epoch: "
                  + "; ".join(f"{pair} {d:.3f}" for pair, d in figures["p_true_gap"].items()))
            for k, f in figures["k"].items():
                l1 = "; ".join(f"{pair} {d:.3f}" for pair, d in f["l1"].items())
                company = "; ".join(f"{r} with {', '.join(o) or 'no other task'}" for r, o in f["company"].items())
                print(f"  k={k}: L1 {l1} | {company}")
        print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
