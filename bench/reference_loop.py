"""A faithful re-creation of the original STG-MTL training loop on CPU (its dataset, data-map
recorder, metric counters and epoch), the baseline that ``train_throughput.py`` times the
engine's ``MultiTaskTrainer`` against."""

from __future__ import annotations

import gc
import time

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torchvision import transforms

from stg_core.models import paper_cnn
from stg_core.training import pos_weights

CPU = torch.device("cpu")
IMAGE_SHAPE = (32, 32, 3)
BATCH = 256
LR = 1e-3
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def reference_model(n_tasks: int, seed: int = 0) -> nn.Module:
    """The paper CNN as the original builds it: Table 2's literal layer order (ReLU before each
    pool) and ``nn.Dropout``; the same parameters, initialised from the same seed as the engine's."""
    torch.manual_seed(seed)
    return paper_cnn(IMAGE_SHAPE[2], IMAGE_SHAPE[0], n_tasks, original_layout=True)


class ReferenceDataset(torch.utils.data.Dataset):
    """Like the original ``CIFAR10Dataset`` around ``torchvision.datasets.CIFAR10``: the uint8
    HWC array is kept as is; each item becomes a PIL image (``Image.fromarray``, as torchvision's
    CIFAR10 does), goes through the transform (ToTensor + Normalize) and is returned as
    ``(index, image, labels)``.

    Deviation in the reference's favour: the label row is precomputed (the original builds it
    per item with a Python loop over the tasks), and the per-item vertical flip of the original's
    "Downside" task is left out."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.data = images
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.float32))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, idx: int):
        image = self.transform(Image.fromarray(self.data[idx]))
        return idx, image, self.labels[idx]


class ReferenceRecorder:
    """The original ``DataMapRecorder``: Welford running count/mean/M2 per (task, sample),
    ``(n_tasks, N)`` float32 buffers on the device (plus the ``std`` buffer it also allocates),
    updated every batch for the batch's indices.

    ``per_task=False`` is the original's update (one advanced-indexing update over all tasks);
    ``per_task=True`` does the same update in a Python loop over tasks."""

    def __init__(self, n_tasks: int, n: int, device: torch.device, per_task: bool = False) -> None:
        self.count = torch.zeros(n_tasks, n, device=device)
        self.mean = torch.zeros(n_tasks, n, device=device)
        self.std = torch.zeros(n_tasks, n, device=device)
        self.m2 = torch.zeros(n_tasks, n, device=device)
        self.per_task = per_task

    @torch.no_grad()
    def update(self, confidence: torch.Tensor, idx: torch.Tensor) -> None:
        conf = confidence.t()
        if not self.per_task:
            self.count[:, idx] = self.count[:, idx] + 1
            delta = conf - self.mean[:, idx]
            self.mean[:, idx] += delta / self.count[:, idx]
            delta2 = conf - self.mean[:, idx]
            self.m2[:, idx] += delta * delta2
            return
        for t in range(conf.shape[0]):
            c = conf[t]
            self.count[t, idx] = self.count[t, idx] + 1
            delta = c - self.mean[t, idx]
            self.mean[t, idx] += delta / self.count[t, idx]
            delta2 = c - self.mean[t, idx]
            self.m2[t, idx] += delta * delta2


class ReferenceMetrics:
    """The original's per-batch train metric counters (tp/tn/fp/fn and correct per task)."""

    def __init__(self, n_tasks: int, device: torch.device) -> None:
        z = lambda: torch.zeros(n_tasks, device=device)  # noqa: E731
        self.correct, self.tp, self.tn, self.fn, self.fp = z(), z(), z(), z(), z()
        self.t = torch.tensor([0.5], device=device)

    @torch.no_grad()
    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        results = (torch.sigmoid(outputs) > self.t).float()
        self.correct += (results == targets).sum(axis=0)
        self.tp += ((targets == 1) * (results == 1)).sum(axis=0)
        self.tn += ((targets == 0) * (results == 0)).sum(axis=0)
        self.fn += ((targets == 1) * (results == 0)).sum(axis=0)
        self.fp += ((targets == 0) * (results == 1)).sum(axis=0)


class ReferenceLoop:
    """The original STG-MTL ``Trainer.__train_epoch`` on CPU: DataLoader(batch 256, shuffle),
    one ``BCEWithLogitsLoss(pos_weight=...)`` per task summed in a Python loop, Adam, the
    Welford recorder and the metric counters updated every batch, ``loss.item()`` every batch."""

    def __init__(self, x: np.ndarray, y: np.ndarray, num_workers: int, seed: int = 0,
                 per_task_recorder: bool = False) -> None:
        n, n_tasks = y.shape
        tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD)])
        self.dataset = ReferenceDataset(x, y, tf)
        self.loader = torch.utils.data.DataLoader(self.dataset, batch_size=BATCH, shuffle=True,
                                                  num_workers=num_workers)
        self.model = reference_model(n_tasks, seed).to(CPU)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.losses = [nn.BCEWithLogitsLoss(pos_weight=torch.tensor([w], dtype=torch.float32, device=CPU))
                       for w in pos_weights(y)]
        self.task_weights = torch.ones(n_tasks, device=CPU)
        self.recorder = ReferenceRecorder(n_tasks, n, CPU, per_task=per_task_recorder)
        self.metrics = ReferenceMetrics(n_tasks, CPU)
        self.train_loss = 0.0
        self._it = None

    def new_epoch(self) -> None:
        self.model.train()
        self._it = iter(self.loader)

    def end_epoch(self) -> None:
        """Drop the iterator (with num_workers > 0 this shuts the worker processes down, so
        their prefetching cannot run on into, and slow down, whatever is timed next)."""
        self._it = None
        gc.collect()

    def _next(self):
        try:
            return next(self._it)
        except StopIteration:   # the dataset is smaller than the batches asked for: next epoch
            self.new_epoch()
            return next(self._it)

    def run(self, n_batches: int) -> float:
        """Train ``n_batches`` batches; return the seconds they took."""
        t0 = time.perf_counter()
        for _ in range(n_batches):
            idx, inputs, targets = self._next()
            inputs, targets = inputs.to(CPU), targets.to(CPU)
            self.optimizer.zero_grad()
            outputs = self.model(inputs)
            loss = 0
            for task_id, (t_weight, loss_fn) in enumerate(zip(self.task_weights, self.losses)):
                loss += t_weight * loss_fn(outputs[:, task_id], targets[:, task_id])
            loss.backward()
            self.optimizer.step()
            with torch.no_grad():
                confidence = 1 - (targets - torch.sigmoid(outputs)).abs()
                self.recorder.update(confidence, idx)
                self.metrics.update(outputs, targets)
            self.train_loss += loss.item()
        return time.perf_counter() - t0
