"""How close is the Experiment page's time estimate to the real training time?

    python bench/estimate_accuracy.py     # digits G1 / G2 (and Fashion-MNIST when here): about 1 min on 2 CPU cores

For each configuration, ``estimate_run_seconds`` (what the app shows before **Launch**: a few
timed optimiser steps on random data, scaled to the run) is compared with the run trained for
real in a fresh store by ``train_run``: its training time (the epochs' own seconds, as recorded
in the run's metrics) and its wall time (data loading, checkpoints and status writes included).
A ratio of 1 is a perfect estimate; the app rounds it for display, so within about 1.5x either
way is useful. Nothing here asserts: the machine may be shared.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from stg_core.config import TrainConfig, spec_from_preset  # noqa: E402
from stg_core.data import dataset_status, load_dataset  # noqa: E402
from stg_core.store import ArtifactStore  # noqa: E402
from stg_core.training import estimate_run_seconds, train_run  # noqa: E402
from common import load_average  # noqa: E402

#: (preset, epochs, training subset or None = all)
CONFIGS = [("digits-g1", 10, None), ("digits-g2", 30, None), ("fashion_mnist-g1", 2, 3000)]


def main() -> None:
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} "
          f"threads), load average {load_average()}")
    print(f"{'preset':18s} {'epochs':>6s} {'train N':>8s} {'estimate s':>10s} {'training s':>10s} {'wall s':>8s} "
          f"{'training / estimate':>20s} {'wall / estimate':>16s}")
    for preset, epochs, subset in CONFIGS:
        spec = spec_from_preset(preset, subset=subset, train=TrainConfig(epochs=epochs))
        status = dataset_status(spec.dataset, spec.data_root)
        if not status.available:
            print(f"{preset:18s} skipped: {status.message}")
            continue
        dataset = load_dataset(spec.dataset, root=spec.data_root, subset=spec.subset, test_subset=spec.test_subset)
        n_train, n_test = len(dataset.x_train), len(dataset.x_test)
        estimate = estimate_run_seconds(spec, dataset.x_train.shape[1:], n_train, n_test)
        with tempfile.TemporaryDirectory() as tmp:
            store = ArtifactStore(tmp)
            t0 = time.perf_counter()
            run_id = train_run(spec, store)
            wall = time.perf_counter() - t0
            training = sum(m["seconds"] for m in store.read_metrics(run_id))
        print(f"{preset:18s} {epochs:6d} {n_train:8,d} {estimate:10.1f} {training:10.1f} {wall:8.1f} "
              f"{training / estimate:19.2f}x {wall / estimate:15.2f}x", flush=True)


if __name__ == "__main__":
    main()
