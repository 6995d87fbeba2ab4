"""Grad-TAE (Li, Sharma, Zhang, KDD 2024): task affinity estimated from per-sample gradients
at the run's MTL model, then SDP clustering.

1. θ* is the run's final MTL model, reused as it is: nothing is trained here.
2. Per-sample gradients of every task's logit with respect to the trunk parameters at θ* (the
   heads and the BatchNorm parameters are skipped, as in the official image code), computed
   with ``torch.func`` and projected at once by a seeded Rademacher matrix ``P`` ``(D, d)``
   with entries ±1/√d: ``g̃_t(x) = Pᵀ ∇_θ f_t(x; θ*)``, so ``g̃`` is ``(n_tasks, n_samples, d)``.
   Since ``f_t = w_t·φ(x) + b_t``, ``∇_θ f_t(x) = J_φ(x)ᵀ w_t``: one forward pass of the trunk
   and one vector-Jacobian product per task and sample.
3. ``m`` random task subsets ``S`` of ``s`` tasks. For each, one L2 logistic regression on the
   stacked projected gradients of its tasks (features ``g̃_t(x)``, labels ``y_t(x)``):
   ``ŵ_S = argmin_w C Σ_{t∈S} Σ_x ℓ(o_t(x) + g̃_t(x)ᵀw, y_t(x)) + ½‖w‖²``
   (scikit-learn's ``C``, with ``g̃`` scaled to unit root-mean-square norm). The offset
   ``o_t(x)`` is 0 by default, as in the official scripts, which fit the gradients alone;
   with ``offset=True`` it is ``f_t(x; θ*)``, the linearisation of the network around θ*.
   All subsets are solved at once by a batched Newton-CG in torch (:mod:`~stg_core.grouping.tae_solver`).
4. Each task ``i`` of ``S`` is scored by minus its validation BCE under the same linear model
   ``o_i(x) + g̃_i(x)ᵀŵ_S``. Scores are standardised per task over the subsets that contain
   it; affinity ``T_ij`` is the mean standardised score of task ``i`` over the subsets that
   contain ``i`` and ``j``; ``T_ii = 0``; ``T ← (T + Tᵀ)/2``.
5. Clustering: the SDP ``min ⟨max(T) − T, X⟩`` s.t. ``X ⪰ 0, X ≥ 0, tr X = k, X·1 = 1``
   (cvxpy, solver named explicitly), rounded by thresholding ``X_ij > 1/n`` (:mod:`~stg_core.grouping.sdp`).

Deviations from the original (also listed in every result's ``notes``):

- Scoring uses the fitted linear model itself (the paper's fast estimate), not the network at
  ``θ* + Pŵ_S``; by default on the gradient features alone, without θ*'s logits (``offset``).
- ``C`` applies to the projected gradients divided by their root-mean-square norm over the
  fitting samples (the official code uses the raw gradients, whose scale depends on the network).
  ``docs/grad-tae.md`` has the measurements behind both choices.
- Samples: a seeded subset of at most ``max_samples`` training images, split (seeded) into a
  fitting part and a validation part. The run's test split is not used, because the
  evaluation reports F1 on it and the grouping must not have seen it.
- Subsets are drawn uniformly at random. Each pair of tasks that no subset contains together
  then gets one extra subset, so every affinity entry is defined.
- Rounding always gives exactly ``k`` groups (the official greedy pass over the thresholded
  rows gives any number of them); see :func:`stg_core.grouping.sdp.round_sdp_solution`.
- Fallback when cvxpy is missing or the solver fails: scikit-learn's spectral clustering on
  ``exp(T)`` (the official code's transform of ``T``), labelled as such in the result's
  ``warnings``, and with a Python ``RuntimeWarning``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vjp, vmap

from stg_core.grouping.base import GroupingCost, GroupingResult, MethodParams, ProgressFn, RunContext, Timer, one_hot
from stg_core.grouping.sdp import CLUSTERINGS, SDP_SOLVERS, cluster_affinity
from stg_core.grouping.tae_solver import fit_subset_regressions, validation_losses
from stg_core.models import MultiHeadNet
from stg_core.training import MultiTaskTrainer, load_trained_model
from stg_core.validation import check_choice, check_integer, check_n_clusters, check_positive, is_bool, is_number

@dataclass(frozen=True)
class GradTAEParams(MethodParams):
    """Grad-TAE's parameters (the spec's seed draws the samples, the projection and the subsets)."""

    method = "grad-tae"
    max_samples: int = 1000           # training images whose gradients are computed (a seeded subset)
    validation_fraction: float = 0.3  # share of those images that scores the estimated models, in (0, 1)
    projection_dim: int = 200         # d, the Rademacher projection's dimension (paper: 200)
    n_subsets: int | None = None      # m random task subsets; None = ceil(8 n(n-1) / (s(s-1))) in [100, 2000]
    subset_size: int | None = None    # s tasks per subset; None = min(5, n - 1), at least 2
    C: float = 1e-2                   # inverse L2 strength (scikit-learn's C), on gradients of unit RMS norm
    offset: bool = False              # fit and score f(x; θ*) + g̃ᵀw (true) or the gradients alone (official)
    clustering: str = "sdp"           # sdp (paper) | spectral
    solver: str = "CLARABEL"          # cvxpy solver of the SDP: CLARABEL | SCS

    def validate(self, n_tasks: int, k: int) -> None:
        check_integer("max_samples", self.max_samples, 10)
        fraction = self.validation_fraction
        if not is_number(fraction) or not 0 < fraction < 1:
            raise ValueError(f"validation_fraction={fraction!r} must be a number strictly between 0 and 1")
        check_integer("projection_dim", self.projection_dim, 1)
        check_integer("n_subsets", self.n_subsets, 1, none_means="the default plan")
        check_integer("subset_size", self.subset_size, 2, n_tasks, none_means="the default plan")
        check_positive("C", self.C)
        if not is_bool(self.offset):
            raise ValueError(f"offset={self.offset!r} must be true or false")
        check_choice("clustering", self.clustering, CLUSTERINGS)
        check_choice("SDP solver", self.solver, SDP_SOLVERS)


PARAMS = GradTAEParams


# Memory bounds, not hyperparameters (results do not depend on them, up to rounding): full
# per-sample gradients are kept for at most this many bytes at a time, and the projection
# matrix is kept in memory only when it fits in the second bound (it is regenerated from its
# seeds per chunk of samples otherwise).
_GRADIENT_CHUNK_BYTES = 1 << 28
_PROJECTION_CACHE_BYTES = 1 << 29


def subset_plan(n_tasks: int, n_subsets: int | None = None, subset_size: int | None = None) -> tuple[int, int]:
    """``(m, s)``: the number of random subsets and their size, ``None`` meaning the default.

    ``s = min(5, n − 1)``, at least 2 (the sister repository's 5; below ``n`` so subsets differ).
    ``m = ceil(8 n(n−1) / (s(s−1)))`` clamped to [100, 2000]: a pair of tasks is then in 8
    subsets on average (up to the clamp; the official runs use up to 2,000-2,500 subsets).
    """
    s = max(2, min(5, n_tasks - 1)) if subset_size is None else int(subset_size)
    if n_subsets is not None:
        return int(n_subsets), s
    return int(min(2000, max(100, math.ceil(8 * n_tasks * (n_tasks - 1) / (s * (s - 1)))))), s


def sample_task_subsets(n_tasks: int, n_subsets: int, subset_size: int, rng: np.random.Generator) -> np.ndarray:
    """``n_subsets`` uniform random subsets of ``subset_size`` distinct tasks, then one more
    subset for each pair of tasks that none contains together, holding that pair and
    ``subset_size − 2`` random other tasks. Returns task indices ``(m, subset_size)``, with
    ``m ≥ n_subsets``: every pair of tasks appears in at least one subset."""
    subsets = [rng.choice(n_tasks, subset_size, replace=False) for _ in range(n_subsets)]
    together = np.zeros((n_tasks, n_tasks), dtype=bool)
    for subset in subsets:
        together[np.ix_(subset, subset)] = True
    missing = np.argwhere(np.triu(~together, 1))
    for i, j in missing[rng.permutation(len(missing))]:
        if together[i, j]:  # covered meanwhile by an extra subset
            continue
        others = np.setdiff1d(np.arange(n_tasks), [i, j])
        subset = np.concatenate([[i, j], rng.choice(others, subset_size - 2, replace=False)])
        together[np.ix_(subset, subset)] = True
        subsets.append(subset)
    return np.sort(np.stack(subsets), axis=1).astype(np.int64)


# ------------------------------------------------------------------- projected gradients

def gradient_parameters(trunk: nn.Module) -> dict[str, torch.Tensor]:
    """The trunk parameters Grad-TAE differentiates: all but the BatchNorm ones (as the
    official image code skips them), detached, by name."""
    skipped = {f"{name}.{p}" for name, module in trunk.named_modules()
               if isinstance(module, nn.modules.batchnorm._BatchNorm) for p, _ in module.named_parameters()}
    return {name: p.detach() for name, p in trunk.named_parameters() if name not in skipped}


class RademacherProjection:
    """A seeded random matrix ``P`` ``(D, d)`` with entries ±1/√d, in row blocks of the given
    sizes (one per parameter tensor). Block ``b`` is drawn from its own generator seeded by
    ``(seed, b)``, so a block can be regenerated alone, identically, when ``P`` is too large to
    keep in memory."""

    def __init__(self, block_sizes: list[int], dim: int, seed: int, device: torch.device) -> None:
        self.block_sizes, self.dim, self.seed, self.device = list(block_sizes), int(dim), int(seed), device
        keep = sum(self.block_sizes) * self.dim * 4 <= _PROJECTION_CACHE_BYTES
        self._cache = [self._draw(b) for b in range(len(self.block_sizes))] if keep else None

    def _draw(self, b: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + b)
        signs = torch.randint(0, 2, (self.block_sizes[b], self.dim), generator=generator, dtype=torch.int8)
        return ((signs.float() * 2 - 1) / math.sqrt(self.dim)).to(self.device)

    def block(self, b: int) -> torch.Tensor:
        """Rows ``(block_sizes[b], d)`` of ``P`` for parameter tensor ``b``."""
        return self._cache[b] if self._cache is not None else self._draw(b)

    def matrix(self) -> torch.Tensor:
        """The whole of ``P`` ``(D, d)`` (for tests: it may be large)."""
        return torch.cat([self.block(b) for b in range(len(self.block_sizes))])


def gradient_chunk_size(n_tasks: int, gradient_dim: int) -> int:
    """Samples whose full gradients ``(n_tasks, gradient_dim)`` float32 fit in ``_GRADIENT_CHUNK_BYTES``."""
    return max(1, _GRADIENT_CHUNK_BYTES // (4 * n_tasks * gradient_dim))


def projected_logit_gradients(model: MultiHeadNet, inputs: torch.Tensor, projection_dim: int, seed: int, *,
                              progress: ProgressFn | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected per-sample gradients of each task's logit at the model's parameters, and the
    logits themselves.

    ``inputs``: normalised images ``(N, C, H, W)`` on the model's device; the model must be in
    eval mode (BatchNorm running statistics, no dropout). Returns ``g̃`` ``(n_tasks, N, d)``
    with ``g̃[t, x] = Pᵀ ∇_θ f_t(x)`` over :func:`gradient_parameters` (``P`` from
    :class:`RademacherProjection` with ``seed``), and ``f`` ``(n_tasks, N)``. Full gradients
    exist only for one chunk of samples at a time (:func:`gradient_chunk_size`); ``progress``
    hears after each chunk.
    """
    params = gradient_parameters(model.trunk)
    # Everything else the trunk reads (BatchNorm affine parameters, running statistics) is
    # passed detached too, so no result is tied to the module's autograd graph.
    frozen = {name: t.detach() for name, t in [*model.trunk.named_parameters(), *model.trunk.named_buffers()]
              if name not in params}
    heads = model.heads.weight.detach()  # (n_tasks, feature_dim): row t is the cotangent of task t
    bias = model.heads.bias.detach()
    n_tasks, n = heads.shape[0], len(inputs)
    sizes = [p.numel() for p in params.values()]
    projection = RademacherProjection(sizes, projection_dim, seed, inputs.device)

    def trunk_features(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Features ``(feature_dim,)`` of one image ``(C, H, W)``."""
        return functional_call(model.trunk, {**p, **frozen}, (x.unsqueeze(0),)).squeeze(0)

    def sample_gradients(p: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        features, pullback = vjp(lambda q: trunk_features(q, x), p)
        (grads,) = vmap(pullback)(heads)  # one VJP per task, batched: name -> (n_tasks, *shape)
        return features, grads

    per_sample = vmap(sample_gradients, in_dims=(None, 0))
    chunk = gradient_chunk_size(n_tasks, sum(sizes))
    n_chunks = math.ceil(n / chunk)
    g = torch.empty(n_tasks, n, projection_dim, device=inputs.device)
    f = torch.empty(n_tasks, n, device=inputs.device)
    for c, start in enumerate(range(0, n, chunk)):
        x = inputs[start:start + chunk]
        features, grads = per_sample(params, x)
        projected = torch.zeros(len(x) * n_tasks, projection_dim, device=inputs.device)
        for b, grad in enumerate(grads.values()):
            projected += grad.reshape(len(x) * n_tasks, -1) @ projection.block(b)
        g[:, start:start + len(x)] = projected.view(len(x), n_tasks, projection_dim).transpose(0, 1)
        f[:, start:start + len(x)] = (features @ heads.T + bias).T
        if progress is not None:
            progress(f"per-sample gradients: {start + len(x)}/{n} samples", c + 1, n_chunks)
    return g, f


def affinity_from_scores(scores: np.ndarray) -> np.ndarray:
    """Task affinity ``(n_tasks, n_tasks)`` from per-subset scores ``(m, n_tasks)`` (higher =
    better, NaN where the subset does not hold the task).

    Each task's scores are standardised over the subsets holding it (0 where they do not vary);
    ``T_ij`` = mean over the subsets holding ``i`` and ``j`` of task i's standardised score (0
    for a pair no subset holds); ``T_ii = 0``; the result is ``(T + Tᵀ)/2``.
    """
    held = ~np.isnan(scores)
    mean = np.nanmean(np.where(held, scores, np.nan), axis=0)
    std = np.nanstd(np.where(held, scores, np.nan), axis=0)
    z = np.divide(scores - mean, std, out=np.zeros_like(scores), where=held & (std > 0))
    incidence = held.astype(np.float64)
    counts = incidence.T @ incidence                # (n, n): subsets holding i and j
    sums = z.T @ incidence                          # sums[i, j] = Σ_{S ∋ i, j} z[S, i]
    affinity = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    np.fill_diagonal(affinity, 0.0)
    return (affinity + affinity.T) / 2


# ------------------------------------------------------------------------------ the method

_OFFSET_NOTES = {
    False: "tasks scored by the fitted linear model on the projected gradients alone (no θ* logits, no "
           "intercept), not by the network at θ* + Pŵ_S",
    True: "regressions fitted and scored around θ* (linearised model f(x; θ*) + g̃(x)ᵀw, no intercept), "
          "not by the network at θ* + Pŵ_S",
}


def group(ctx: RunContext, n_clusters: int, params: GradTAEParams = GradTAEParams(), *, seed: int = 0,
          progress: ProgressFn | None = None) -> GroupingResult:
    """Hard memberships ``(n_tasks, k)`` and the Grad-TAE affinity ``(n_tasks, n_tasks)`` of the
    run's tasks, from per-sample gradients at the run's final MTL model.

    ``seed`` draws the samples and their split, the projection and the task subsets.
    """
    n_tasks = ctx.n_tasks
    check_n_clusters(n_clusters, n_tasks)
    params.validate(n_tasks, n_clusters)
    max_samples, projection_dim, C, offset = params.max_samples, params.projection_dim, params.C, params.offset
    m, s = subset_plan(n_tasks, params.n_subsets, params.subset_size)
    with Timer() as timer:
        model = load_trained_model(ctx.store, ctx.run_id, ctx.dataset.image_shape)
        # The trainer normalises images exactly as in training (its channel statistics).
        trainer = MultiTaskTrainer(model.to(ctx.device), ctx.data, record=False, channels_last=False, amp=False)
        model = trainer.model.eval()
        rng = np.random.default_rng(seed)
        n_train = len(ctx.data.y_train)
        if n_train < 2:
            raise ValueError(f"the run has {n_train} training images: Grad-TAE needs at least 2")
        n_samples = min(max_samples, n_train)
        n_val = min(n_samples - 1, max(1, round(params.validation_fraction * n_samples)))
        chosen = torch.as_tensor(rng.permutation(n_train)[:n_samples], device=ctx.device)
        gradient_dim = sum(p.numel() for p in gradient_parameters(model.trunk).values())
        n_steps = math.ceil(n_samples / gradient_chunk_size(n_tasks, gradient_dim)) + 2
        report = None if progress is None else (lambda message, step, _: progress(message, step, n_steps))
        g, f = projected_logit_gradients(model, trainer.inputs(ctx.data.x_train[chosen]), projection_dim, seed,
                                         progress=report)
        y = ctx.data.y_train[chosen].T  # (n_tasks, n_samples)
        val, fit = slice(0, n_val), slice(n_val, None)
        subsets = sample_task_subsets(n_tasks, m, s, rng)
        # C is relative to the gradients' scale, which depends on the network (module docstring).
        scale = float(g[:, fit].square().sum(2).mean().sqrt().clamp_min(1e-12))
        g = g / scale
        o = f if offset else torch.zeros_like(f)  # (n_tasks, n_samples)
        weights, newton_steps = fit_subset_regressions(g[:, fit], o[:, fit], y[:, fit], subsets, C)
        scores = -validation_losses(g[:, val], o[:, val], y[:, val], subsets, weights)
        affinity = affinity_from_scores(scores)
        if progress is not None:
            progress(f"fitted {len(subsets)} subset regressions", n_steps - 1, n_steps)
        labels, cluster_notes, cluster_warnings, cluster_details = cluster_affinity(
            affinity, n_clusters, clustering=params.clustering, solver=params.solver, seed=seed)
    if progress is not None:
        progress("clustered the affinity", n_steps, n_steps)
    # Minibatch-equivalent passes: the samples cost one forward pass per training batch of
    # them, and each task needs its own vector-Jacobian product per sample, so n_tasks
    # backward passes per batch (the projection and the regressions touch no network).
    batches = math.ceil(n_samples / ctx.spec.train.batch_size)
    cost = GroupingCost(wall_seconds=timer.seconds, models_trained=1, extra_forward_passes=batches,
                        extra_backward_passes=n_tasks * batches, reused_training_seconds=ctx.training_seconds())
    notes = (_OFFSET_NOTES[bool(offset)], "C applies to projected gradients scaled to unit root-mean-square norm",
             f"gradients of {n_samples} of the {n_train} training images: {n_samples - n_val} fit the "
             f"regressions, {n_val} score them") + cluster_notes
    details = {"n_samples": int(n_samples), "n_fit": int(n_samples - n_val), "n_validation": int(n_val),
               "projection_dim": int(projection_dim), "gradient_dim": int(gradient_dim),
               "n_subsets": int(len(subsets)), "n_subsets_requested": int(m), "subset_size": int(s), "C": float(C),
               "offset": bool(offset), "gradient_rms_norm": scale, "newton_steps": int(newton_steps), **cluster_details}
    return GroupingResult("grad-tae", ctx.task_names, one_hot(labels, n_clusters), cost, affinity=affinity,
                          notes=notes, details=details, warnings=cluster_warnings)
