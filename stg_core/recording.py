"""Recording a run's data maps during training: p_true per sample and task, and the Gram
statistics that make every clustering of the tasks a sum of small matrices.

The p_true recorder keeps one preallocated device tensor ``(N, n_tasks)`` indexed by sample
id, filled from the *training* forward pass (as dataset cartography and the original STG-MTL
do), and copies it to the host once per epoch. :class:`RunRecorder` writes each epoch's p_true
and its statistics (:mod:`stg_core.reduction`); :func:`record_statistics` computes them once
for runs recorded before they existed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from stg_core.reduction import EpochStatistics

if TYPE_CHECKING:
    from stg_core.store import ArtifactStore


class PTrueRecorder:
    """Preallocated ``(n_samples, n_tasks)`` float32 device buffer of this epoch's p_true."""

    def __init__(self, n_samples: int, n_tasks: int, device: torch.device | str) -> None:
        self.buffer = torch.full((n_samples, n_tasks), float("nan"), device=device)

    @torch.no_grad()
    def record(self, index: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Store p_true of a batch: ``index`` ``(B,)`` sample ids, ``logits``/``targets`` ``(B, n_tasks)``."""
        p = torch.sigmoid(logits.float())
        self.buffer[index] = torch.where(targets > 0.5, p, 1.0 - p)

    def epoch_values(self) -> np.ndarray:
        """This epoch's p_true as ``(n_tasks, n_samples)`` float16 on the host (one copy)."""
        return self.buffer.t().to(torch.float16).cpu().numpy()


class GramAccumulator:
    """Running sums of p_true and p_true² ``(n_tasks, N)`` float64 on ``device``, turned into
    :class:`EpochStatistics` after each epoch (one ``(n_tasks, N) × (N, n_tasks)`` product per
    representation, on the device that trains)."""

    def __init__(self, n_tasks: int, n_samples: int, device: torch.device | str = "cpu") -> None:
        self.total = torch.zeros((n_tasks, n_samples), dtype=torch.float64, device=device)
        self.total_sq = torch.zeros_like(self.total)
        self.n_epochs = 0

    @torch.no_grad()
    def add_epoch(self, p_true: torch.Tensor | np.ndarray) -> EpochStatistics:
        """Add one epoch's p_true ``(n_tasks, N)`` (rounded to float16 first, as it is stored)
        and return the statistics of the data maps over every epoch added so far."""
        p = torch.as_tensor(p_true).to(self.total.device)
        if p.shape != self.total.shape:
            raise ValueError(f"p_true of shape {tuple(p.shape)} does not match {tuple(self.total.shape)}")
        p = p.to(torch.float16).to(torch.float64)
        self.total += p
        self.total_sq += p * p
        self.n_epochs += 1
        return epoch_statistics(self.total, self.total_sq, self.n_epochs)


@torch.no_grad()
def epoch_statistics(total: torch.Tensor, total_sq: torch.Tensor, n_epochs: int) -> EpochStatistics:
    """:class:`EpochStatistics` from the float64 sums of p_true and p_true² ``(n_tasks, N)``
    over ``n_epochs`` epochs (confidence and variability as in :mod:`stg_core.datamaps`).

    Few passes over the ``(n_tasks, N)`` arrays (their memory traffic, not the products, is the
    cost): centring is ``J G J`` on the small Gram matrices, standardising scales the columns by
    their inverse variance inside one product, and the pattern Gram of ``1 − C`` is expanded as
    ``N·11ᵀ − s1ᵀ − 1sᵀ + CCᵀ`` with ``s`` the row sums of ``C``."""
    n = total.shape[1]
    confidence = total / n_epochs
    variability = total_sq / n_epochs
    variability.addcmul_(confidence, confidence, value=-1.0).clamp_min_(0.0).sqrt_()
    gram_c, gram_v = confidence @ confidence.T, variability @ variability.T
    raw = _centre(gram_c + gram_v)
    standardized = _centre(_scaled_gram(confidence) + _scaled_gram(variability))
    sums = confidence.sum(1, keepdim=True)
    pattern = n - sums - sums.T + gram_c + gram_v
    gram = torch.stack([raw, standardized, pattern]).cpu().numpy()
    return EpochStatistics((gram + gram.transpose(0, 2, 1)) / 2.0, (sums[:, 0] / n).cpu().numpy(),
                           variability.mean(1).cpu().numpy(), int(n))


def _centre(gram: torch.Tensor) -> torch.Tensor:
    """``J G J`` (``J = I − 11ᵀ/n``): the Gram matrix of the rows after subtracting their mean row."""
    row = gram.mean(1, keepdim=True)
    return gram - row - row.T + gram.mean()


def _scaled_gram(c: torch.Tensor) -> torch.Tensor:
    """``C D⁻² Cᵀ`` for ``c`` ``(n_tasks, N)``, ``D`` the columns' population std across tasks:
    once centred, the Gram matrix of the columns standardised across tasks. A column constant
    up to rounding (scikit-learn's test) gets weight 0: standardised, it is 0."""
    n = c.shape[0]
    var, mean = torch.var_mean(c, dim=0, correction=0)
    eps = float(np.finfo(np.float64).eps)
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    weight = torch.where(constant, torch.zeros_like(var), 1.0 / torch.where(constant, torch.ones_like(var), var))
    return (c * weight) @ c.T


class RunRecorder:
    """Writes what a run records every epoch, in this order: p_true ``(n_tasks, N)`` float16
    and its Gram statistics (:mod:`stg_core.reduction`), accumulated on ``device``. Training
    and anything that produces a run's data maps by other means (a benchmark's synthetic run)
    write through it, so the artifacts are the same."""

    def __init__(self, store: "ArtifactStore", run_id: str, n_tasks: int, n_samples: int,
                 device: torch.device | str = "cpu") -> None:
        self.store, self.run_id = store, run_id
        self.accumulator = GramAccumulator(n_tasks, n_samples, device)

    def resume(self, epochs_done: int, progress: Callable[[int, int], None] | None = None) -> list[int]:
        """Re-add the p_true of epochs ``1..epochs_done`` already stored (as stored: the sums are
        those of an uninterrupted run), writing the statistics of any epoch that lacks them
        (returned). ``progress(done, total)`` after each epoch."""
        have = set(self.store.statistics_epochs(self.run_id))
        written = []
        for epoch in range(1, epochs_done + 1):
            stats = self.accumulator.add_epoch(self.store.load_p_true(self.run_id, epoch))
            if epoch not in have:
                self.store.write_epoch_statistics(self.run_id, epoch, stats)
                written.append(epoch)
            if progress is not None:
                progress(epoch, epochs_done)
        return written

    def record(self, epoch: int, p_true: np.ndarray) -> EpochStatistics:
        """Store epoch ``epoch``'s (1-based, the next one) p_true ``(n_tasks, N)`` and its statistics."""
        if epoch != self.accumulator.n_epochs + 1:
            raise ValueError(f"epoch {epoch} recorded after epoch {self.accumulator.n_epochs}: epochs go in order")
        stats = self.accumulator.add_epoch(p_true)
        self.store.write_p_true(self.run_id, epoch, p_true)
        self.store.write_epoch_statistics(self.run_id, epoch, stats)
        return stats


def record_statistics(store: "ArtifactStore", run_id: str, *, device: torch.device | str = "cpu",
                      progress: Callable[[int, int], None] | None = None) -> list[int]:
    """Compute and store the Gram statistics of every recorded epoch that lacks them in the
    current version (runs recorded before they existed), streaming once over p_true; returns
    the epochs written. ``progress(done, total)`` after each epoch."""
    recorded = store.recorded_epochs(run_id)
    if not recorded or set(recorded) <= set(store.statistics_epochs(run_id)):
        return []
    if recorded != list(range(1, len(recorded) + 1)):
        hole = next(e for e in range(1, len(recorded) + 1) if e not in recorded)
        raise ValueError(f"epoch {hole} of run {run_id} is not recorded: its data maps cannot be summed")
    n_tasks, n_samples = np.load(store.run_dir(run_id) / "datamaps" / "epoch_1.npy", mmap_mode="r").shape
    return RunRecorder(store, run_id, n_tasks, n_samples, device).resume(len(recorded), progress)
