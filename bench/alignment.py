"""How well do task groupings match known groups? Each task representation, several k.

    python bench/alignment.py [--subset 10000] [--epochs 15] [--store DIR]

Trains (or reuses, from the store) the Fashion-MNIST G1 run — 10 one-vs-rest tasks, paper CNN
— and prints ARI / NMI / purity of the clusters against the natural groups (tops, footwear,
Trouser, Dress, Bag) with their chance levels, for the raw / standardized / pattern task
representations at k = 3, 4, 5. Then the digits G2 run at k = 3 and 4: which tasks share the random task's cluster.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
import torch  # noqa: E402

from stg_core.clustering import REPRESENTATIONS, TaskClusterer, alignment_scores, task_groups  # noqa: E402
from stg_core.run_vectors import load_task_vectors  # noqa: E402
from stg_core.config import TrainConfig, spec_from_preset  # noqa: E402
from stg_core.data import dataset_status  # noqa: E402
from stg_core.store import ArtifactStore  # noqa: E402
from stg_core.training import train_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subset", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--store", default="cache")
    args = parser.parse_args()
    store = ArtifactStore(args.store)
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"scikit-learn {sklearn.__version__}; runs reused from {store.root}/ when present")

    if dataset_status("fashion_mnist").available:
        spec = spec_from_preset("fashion_mnist-g1", subset=args.subset, train=TrainConfig(epochs=args.epochs))
        t0 = time.perf_counter()
        run_id = train_run(spec, store)
        print(f"\nFashion-MNIST G1: {args.subset} training images, {args.epochs} epochs, paper CNN, seed 0 "
              f"(run {run_id}, {time.perf_counter() - t0:.0f} s incl. reuse)")
        groups = task_groups(spec.task_names, spec.tasks, store.read_dataset_info(run_id)["super_groups"])
        names = list(groups)
        print(f"{'representation':15s} {'k':>2s} {'ARI':>6s} {'(chance)':>9s} {'NMI':>6s} {'(chance)':>9s} "
              f"{'purity':>7s} {'(chance)':>9s}  clusters")
        for representation in REPRESENTATIONS:
            vectors = load_task_vectors(store, run_id, None, representation)
            for k in (3, 4, 5):
                labels = TaskClusterer(k, random_state=0).fit(vectors).labels_
                s = alignment_scores(labels, [groups[n] for n in names])
                clusters = " | ".join(",".join(n for n, c in zip(names, labels) if c == j) for j in range(k))
                print(f"{representation:15s} {k:2d} {s['ari']:6.2f} {s['chance']['ari']['mean']:9.2f} {s['nmi']:6.2f} "
                      f"{s['chance']['nmi']['mean']:9.2f} {s['purity']:7.2f} {s['chance']['purity']['mean']:9.2f}  "
                      f"{clusters}")
    else:
        print("\nFashion-MNIST not installed: apt-get install dataset-fashion-mnist (skipping)")

    spec = spec_from_preset("digits-g2", train=TrainConfig(epochs=40))
    run_id = train_run(spec, store)
    names = list(spec.task_names)
    print(f"\nDigits G2: all 1,347 training images, 40 epochs, small CNN (run {run_id})")
    for representation in REPRESENTATIONS:
        vectors = load_task_vectors(store, run_id, None, representation)
        for k in (3, 4):
            labels = TaskClusterer(k, random_state=0).fit(vectors).labels_
            mates = [n for n, c in zip(names, labels) if c == labels[names.index("Random")] and n != "Random"]
            print(f"{representation:15s} k = {k}: Random shares its cluster with: {', '.join(mates) or 'no other task'}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
