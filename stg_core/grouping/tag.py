"""TAG (Fifty et al., NeurIPS 2021): lookahead inter-task affinity, then group selection.

During one MTL training run (the run's spec: same model, seed, data, batches and Adam), every
``affinity_every`` steps the minibatch is used to measure, for every pair of tasks,

    Z[i, j] = 1 − L_j(θ_s − η ∇_{θ_s} L_i, θ_j) / L_j(θ_s, θ_j)

— how much a step on task i alone lowers task j's loss on the same batch (``θ_s`` the shared
trunk, ``θ_j`` task j's head, left as it is by the lookahead). Z is averaged over training.
A grouping into k groups then scores, for each task j in group G, the mean of Z[i, j] over
the other tasks i of G (0 for a task alone), averaged over tasks; the best-scoring grouping
wins.

Faithful to the original: the lookahead on the shared parameters only, averaged over the run,
the official PyTorch period r = 10, and the same objective. Deviations (stated in the result's
``notes``):

- the lookahead step is plain SGD with η = the run's Adam learning rate (the original's
  PyTorch code steps with the learning rate too; its CelebA code also divides by it);
- the affinity forward passes run with dropout off and BatchNorm on batch statistics without
  updating its running statistics, so measuring changes nothing in the training run itself
  (training follows exactly the run's batches and seeds);
- tasks with identical training labels (exact duplicates) are searched as one task and share
  its group: a task's lookahead affinity onto its own copy is its self-affinity, which TAG's
  objective leaves out for a reason — kept in, it is so large that at small k the best grouping
  isolates the duplicate pair with the largest self-affinity and lumps every other task together;
- TAG selects any B groups (possibly overlapping) among the 2ⁿ − 1 candidates; here, to compare
  with the other methods, the selection is a partition into exactly k non-empty groups:
  exhaustive over all partitions for n ≤ ``exhaustive_max_tasks`` (12 by default), and beyond
  that a beam search over the same objective followed by single-task moves until no move
  improves it (a local optimum, not a certified one).

Cost: per measurement, one forward pass with the per-task gradients (n backward passes,
batched), then n lookahead forward passes: Θ(n) extra passes per measured step, Θ(n²) work
in all, against none for STG-MTL.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from stg_core.grouping.base import GroupingCost, GroupingResult, MethodParams, ProgressFn, RunContext, Timer, one_hot
from stg_core.training import MultiTaskTrainer, precision_amp, seeded_model
from stg_core.validation import check_integer, check_positive

@dataclass(frozen=True)
class TAGParams(MethodParams):
    """TAG's parameters (the spec's seed is unused: training follows the run's seed)."""

    method = "tag"
    affinity_every: int = 10          # r: optimiser steps between two affinity measurements (official: 10)
    lookahead_lr: float | None = None  # η of the lookahead step; None = the run's learning rate
    epochs: int | None = None         # training epochs; None = the run's
    exhaustive_max_tasks: int = 12    # tasks up to which every partition is searched; beam search beyond
    beam_width: int = 64              # partial groupings kept per step of the beam search
    task_chunk: int = 16              # lookahead parameter sets evaluated at once (memory vs speed)

    def validate(self, n_tasks: int, k: int) -> None:
        for name in ("affinity_every", "exhaustive_max_tasks", "beam_width", "task_chunk"):
            check_integer(name, getattr(self, name), 1)
        if self.exhaustive_max_tasks > 14:
            raise ValueError(f"exhaustive_max_tasks={self.exhaustive_max_tasks} is too large: partitions of more "
                             "than 14 tasks cannot be enumerated in reasonable time (use the beam search)")
        check_positive("lookahead_lr", self.lookahead_lr, none_means="the run's lr")
        check_integer("epochs", self.epochs, 1, none_means="the run's epochs")


PARAMS = TAGParams


# --------------------------------------------------------------------------- affinity

@contextmanager
def _side_effect_free(model: nn.Module) -> Iterator[None]:
    """Dropout off, BatchNorm on batch statistics without touching its running statistics."""
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout) and m.training]
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in dropouts:
        m.eval()
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in dropouts:
            m.train()
        for m in norms:
            m.track_running_stats = True


class LookaheadAffinity:
    """Accumulates TAG's lookahead affinity ``Z`` ``(n_tasks, n_tasks)`` of a trainer's model."""

    def __init__(self, trainer: MultiTaskTrainer, lookahead_lr: float, task_chunk: int = 16) -> None:
        self.trainer, self.lr, self.task_chunk = trainer, float(lookahead_lr), task_chunk
        n = trainer.model.n_tasks
        self.total = torch.zeros(n, n, dtype=torch.float64, device=trainer.device)
        self.measurements = 0

    def _losses(self, params: dict[str, torch.Tensor], x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = functional_call(self.trainer.model, params, (x,))
        return self.trainer.loss_per_task(logits, targets)

    def measure(self, index: torch.Tensor) -> None:
        """One measurement on the minibatch of sample ids ``index`` ``(B,)``."""
        trainer = self.trainer
        model = trainer.model
        x = trainer.inputs(trainer.data.x_train[index])
        targets = trainer.data.y_train[index]
        shared = {k: v for k, v in model.named_parameters() if k.startswith("trunk.")}
        fixed = {k: v.detach() for k, v in model.named_parameters() if not k.startswith("trunk.")}
        fixed.update(dict(model.named_buffers()))
        n = model.n_tasks
        with _side_effect_free(model):
            losses = self._losses({**shared, **fixed}, x, targets)  # (n,)
            # Per-task gradients of the shared parameters, all tasks in one batched backward.
            grads = torch.autograd.grad(losses, list(shared.values()), torch.eye(n, device=losses.device),
                                        is_grads_batched=True)
            base = losses.detach()
            names = list(shared)
            rows = []
            with torch.no_grad():
                for start in range(0, n, self.task_chunk):
                    stacked = {name: shared[name].detach() - self.lr * g[start:start + self.task_chunk]
                               for name, g in zip(names, grads)}
                    after = vmap(lambda p: self._losses({**p, **fixed}, x, targets))(stacked)  # (chunk, n)
                    rows.append(1.0 - after / base.clamp_min(1e-12))
        self.total += torch.cat(rows).double()
        self.measurements += 1

    @property
    def affinity(self) -> np.ndarray:
        """Mean ``Z`` ``(n_tasks, n_tasks)``: entry ``[i, j]`` = how much a step on task i lowers task j's loss."""
        return (self.total / max(self.measurements, 1)).cpu().numpy()


# --------------------------------------------------------------------------- group selection

def partition_scores(affinity: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """TAG's score of each grouping in ``labels`` ``(P, n)`` (group ids per task): per task j,
    the mean of ``affinity[i, j]`` over the other tasks i of its group (0 when alone), then the
    mean over tasks. Returns ``(P,)``."""
    z = np.asarray(affinity, dtype=np.float64)
    labels = np.atleast_2d(labels)
    n = z.shape[0]
    out = np.empty(len(labels))
    off_diagonal = ~np.eye(n, dtype=bool)
    step = max(1, 2**22 // (n * n))
    for start in range(0, len(labels), step):
        lab = labels[start:start + step]
        same = (lab[:, :, None] == lab[:, None, :]) & off_diagonal  # (p, i, j)
        others = same.sum(axis=1)                                   # (p, j)
        gain = np.einsum("pij,ij->pj", same, z)
        out[start:start + step] = np.divide(gain, others, out=np.zeros_like(gain), where=others > 0).mean(axis=1)
    return out


def set_partitions(n: int, k: int) -> np.ndarray:
    """Every partition of n items into exactly k non-empty groups, as restricted growth strings
    ``(S(n, k), n)`` int8 (item 0 in group 0; each item in an existing group or the next new one)."""
    if not 1 <= k <= n:
        raise ValueError(f"cannot split {n} tasks into {k} non-empty groups")
    rows = np.zeros((1, 1), dtype=np.int8)
    used = np.ones(1, dtype=np.int64)  # groups used so far
    for pos in range(1, n):
        left = n - pos - 1
        parts, counts = [], []
        for label in range(k):
            new_used = np.maximum(used, label + 1)
            ok = (label <= used) & (new_used + left >= k)
            if ok.any():
                parts.append(np.hstack([rows[ok], np.full((int(ok.sum()), 1), label, dtype=np.int8)]))
                counts.append(new_used[ok])
        rows, used = np.vstack(parts), np.concatenate(counts)
    return rows


def _beam_search(z: np.ndarray, k: int, width: int) -> np.ndarray:
    """Assign tasks one by one (most connected first) to an existing or a new group, keeping the
    ``width`` best partial groupings by their score over the tasks assigned so far."""
    n = len(z)
    order = np.argsort(-(np.abs(z).sum(0) + np.abs(z).sum(1)), kind="stable")
    zo = z[np.ix_(order, order)]
    beam = np.zeros((1, 1), dtype=np.int64)
    for pos in range(1, n):
        used = beam.max(axis=1) + 1
        left = n - pos - 1
        cands = []
        for label in range(k):
            ok = (label <= used) & (np.maximum(used, label + 1) + left >= k)
            if ok.any():
                cands.append(np.hstack([beam[ok], np.full((int(ok.sum()), 1), label)]))
        cands = np.unique(np.vstack(cands), axis=0)
        scores = partition_scores(zo[: pos + 1, : pos + 1], cands)
        beam = cands[np.argsort(-scores, kind="stable")[:width]]
    labels = np.empty(n, dtype=np.int64)
    labels[order] = beam[0]
    return labels


def _improve(z: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Best single-task moves between groups (no group left empty) until none improves the score."""
    labels = labels.copy()
    best = partition_scores(z, labels)[0]
    while True:
        sizes = np.bincount(labels, minlength=k)
        cands = []
        for t in range(len(labels)):
            if sizes[labels[t]] == 1:
                continue
            for g in range(k):
                if g != labels[t]:
                    c = labels.copy()
                    c[t] = g
                    cands.append(c)
        if not cands:
            return labels
        cands = np.array(cands)
        scores = partition_scores(z, cands)
        i = int(np.argmax(scores))
        if scores[i] <= best + 1e-12:
            return labels
        labels, best = cands[i], scores[i]


def select_groups(affinity: np.ndarray, n_clusters: int, *, exhaustive_max_tasks: int = 12,
                  beam_width: int = 64) -> tuple[np.ndarray, str]:
    """The partition of the tasks into exactly ``n_clusters`` groups with the best TAG score.

    ``affinity`` ``(n_tasks, n_tasks)``. Returns the group of each task ``(n_tasks,)`` and the
    search used: ``"exhaustive"`` (every partition, n ≤ ``exhaustive_max_tasks``) or
    ``"beam"`` (beam search then single-task moves: a local optimum of the same objective)."""
    z = np.asarray(affinity, dtype=np.float64)
    n = len(z)
    if not 1 <= n_clusters <= n:
        raise ValueError(f"k={n_clusters} must be between 1 and the number of tasks ({n})")
    if n <= exhaustive_max_tasks:
        parts = set_partitions(n, n_clusters)
        return parts[int(np.argmax(partition_scores(z, parts)))].astype(np.int64), "exhaustive"
    return _improve(z, _beam_search(z, n_clusters, beam_width), n_clusters), "beam"


def _select_distinct(affinity: np.ndarray, y_train: np.ndarray, n_clusters: int, exhaustive_max_tasks: int,
                     beam_width: int) -> tuple[np.ndarray, str, int]:
    """:func:`select_groups` over the distinct tasks (identical label columns of ``y_train``
    ``(N, n_tasks)`` counted once); duplicates get their original's group. Returns the group of
    every task ``(n_tasks,)``, the search used and the number of distinct tasks."""
    _, first, inverse = np.unique(np.asarray(y_train).T, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if len(first) < n_clusters:  # fewer distinct tasks than groups: duplicates must be split up
        labels, search = select_groups(affinity, n_clusters, exhaustive_max_tasks=exhaustive_max_tasks,
                                       beam_width=beam_width)
        return labels, search, len(affinity)
    labels, search = select_groups(affinity[np.ix_(first, first)], n_clusters,
                                   exhaustive_max_tasks=exhaustive_max_tasks, beam_width=beam_width)
    return labels[inverse], search, len(first)


# --------------------------------------------------------------------------- the method

def group(ctx: RunContext, n_clusters: int, params: TAGParams = TAGParams(), *, seed: int = 0,
          progress: ProgressFn | None = None) -> GroupingResult:
    """TAG on the run's tasks: one MTL training (the run's settings) measuring the lookahead
    affinity every ``affinity_every`` steps, then the best partition into ``n_clusters`` groups."""
    params.validate(ctx.n_tasks, n_clusters)
    affinity_every = params.affinity_every
    t = ctx.spec.train
    n_epochs = params.epochs or t.epochs
    lr = float(params.lookahead_lr) if params.lookahead_lr is not None else t.lr
    with Timer() as timer:
        model = seeded_model(ctx.spec, ctx.dataset.image_shape)
        trainer = MultiTaskTrainer(model, ctx.data, lr=t.lr, weight_decay=t.weight_decay, batch_size=t.batch_size,
                                   seed=t.seed, record=False, amp=precision_amp(t.precision))
        meter = LookaheadAffinity(trainer, lr, params.task_chunk)
        n_batches = len(trainer.batches(1))
        step = 0

        def before_step(i: int, index: torch.Tensor) -> None:
            nonlocal step
            if step % affinity_every == 0:
                meter.measure(index)
            step += 1

        for epoch in range(1, n_epochs + 1):
            trainer.train_epoch(epoch, before_step=before_step)
            if progress is not None:
                progress(f"tag: epoch {epoch}/{n_epochs}", epoch, n_epochs + 1)
        affinity = meter.affinity
        labels, search, n_distinct = _select_distinct(affinity, ctx.data.y_train.cpu().numpy(), n_clusters,
                                                      params.exhaustive_max_tasks, params.beam_width)
    if progress is not None:
        progress("tag: groups selected", n_epochs + 1, n_epochs + 1)
    n = ctx.n_tasks
    notes = ["lookahead: one SGD step of the shared trunk with η = "
             f"{lr:g}; dropout off and BatchNorm running statistics untouched while measuring",
             "groups: a partition into exactly k groups (the original picks any B, possibly overlapping, groups)"]
    if n_distinct < n:
        notes.append(f"{n - n_distinct} exact duplicate task(s) searched as one with their original "
                     "(their mutual affinity is a self-affinity)")
    if search == "beam":
        notes.append(f"{n_distinct} distinct tasks > {params.exhaustive_max_tasks}: beam search (width "
                     f"{params.beam_width}) and single-task moves over TAG's objective instead of the exhaustive "
                     "search — a local optimum")
    cost = GroupingCost(wall_seconds=timer.seconds, models_trained=1,
                        extra_forward_passes=meter.measurements * (1 + n),
                        extra_backward_passes=meter.measurements * n)
    details = {"search": search, "measurements": meter.measurements, "affinity_every": affinity_every,
               "lookahead_lr": lr, "epochs": n_epochs, "steps": n_epochs * n_batches,
               "n_distinct_tasks": n_distinct, "score": float(partition_scores(affinity, labels)[0])}
    return GroupingResult("tag", ctx.task_names, one_hot(labels, n_clusters), cost, affinity, tuple(notes), details)


def _n_partitions(n: int, k: int) -> int:
    """Stirling number of the second kind S(n, k) (for messages and tests)."""
    return sum((-1) ** i * math.comb(k, i) * (k - i) ** n for i in range(k + 1)) // math.factorial(k)
