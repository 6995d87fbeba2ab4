"""CIFAR-10 files in the real on-disk format (``cifar-10-batches-py``), written by the tests
themselves: CIFAR cannot be downloaded where the tests run."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _dump(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 120, n_test: int = 100, seed: int = 0) -> Path:
    """Five training batches of ``per_batch`` images, a test batch and the meta file under
    ``root/cifar-10-batches-py``; each image's brightness grows with its class, so the tasks
    are learnable. Returns ``root`` (pass it as the data root)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def batch(n: int) -> dict:
        labels = rng.integers(0, 10, n)
        data = (rng.integers(0, 128, (n, 3072)) + labels[:, None] * 12).astype(np.uint8)
        return {b"labels": labels.tolist(), b"data": data}

    for i in range(1, 6):
        _dump(folder / f"data_batch_{i}", batch(per_batch))
    _dump(folder / "test_batch", batch(n_test))
    _dump(folder / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES]})
    return root
