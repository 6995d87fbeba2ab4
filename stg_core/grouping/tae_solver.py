"""Grad-TAE's batched solver: one L2 logistic regression per random task subset, all solved
at once by Newton-CG in torch, and the validation losses of their estimated models."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Newton-CG settings of the batched logistic regressions: stop when ‖∇‖ ≤ tol·max(1, ‖∇₀‖).
_NEWTON_TOL = 1e-8
_NEWTON_MAX_ITER = 100


@dataclass(frozen=True)
class _Slots:
    """Where each task sits in the subsets: ``subset[t, a]`` is the a-th subset holding task
    ``t`` (padded with subset 0 where ``valid`` is False). ``(n_tasks, M)``, ``M`` the most
    subsets any task is in: per-task logits for the subsets holding that task are one batched
    matmul, ``O(m·s·N·d)``, never ``O(m·n·N·d)``."""

    subset: torch.Tensor
    valid: torch.Tensor
    n_subsets: int

    @classmethod
    def of(cls, subsets: np.ndarray, n_tasks: int, device: torch.device) -> "_Slots":
        incidence = np.zeros((len(subsets), n_tasks), dtype=bool)
        np.put_along_axis(incidence, subsets, True, axis=1)
        holding = [np.flatnonzero(incidence[:, t]) for t in range(n_tasks)]
        width = max(1, max(len(h) for h in holding))
        subset = np.zeros((n_tasks, width), dtype=np.int64)
        valid = np.zeros((n_tasks, width), dtype=bool)
        for t, h in enumerate(holding):
            subset[t, :len(h)], valid[t, :len(h)] = h, True
        return cls(torch.as_tensor(subset, device=device), torch.as_tensor(valid, device=device), len(subsets))

    def logits(self, g: torch.Tensor, f: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``f_t(x) + g̃_t(x)ᵀ w_S`` for each task and each subset holding it: ``(n_tasks, N, M)``."""
        return f[:, :, None] + torch.bmm(g, weights[self.subset].transpose(1, 2))

    def to_subsets(self, per_slot: torch.Tensor) -> torch.Tensor:
        """Sum ``(n_tasks, M, ...)`` over the tasks of each subset: ``(m, ...)``."""
        values = per_slot[self.valid]
        out = torch.zeros((self.n_subsets, *values.shape[1:]), dtype=values.dtype, device=values.device)
        return out.index_add_(0, self.subset[self.valid], values)


def _batched_cg(hvp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, rtol: torch.Tensor,
                max_iter: int) -> torch.Tensor:
    """Solve ``H_j x_j = b_j`` for every row j by conjugate gradients (``H_j ⪰ I``), each row
    until ``‖r_j‖ ≤ rtol_j·‖b_j‖``. ``b`` ``(m, d)``, ``rtol`` ``(m,)``."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rs = (r * r).sum(1)
    target = (rtol ** 2) * rs
    for _ in range(max_iter):
        active = rs > target
        if not bool(active.any()):
            break
        hp = hvp(p)
        alpha = torch.where(active, rs / (p * hp).sum(1), torch.zeros_like(rs))
        x += alpha[:, None] * p
        r -= alpha[:, None] * hp
        rs_new = (r * r).sum(1)
        beta = torch.where(active, rs_new / rs.clamp_min(1e-300), torch.zeros_like(rs))
        p = r + beta[:, None] * p
        rs = rs_new
    return x


def fit_subset_regressions(g: torch.Tensor, f: torch.Tensor, y: torch.Tensor, subsets: np.ndarray,
                           C: float) -> tuple[torch.Tensor, int]:
    """One L2 logistic regression per task subset, all solved at once.

    ``g`` ``(n_tasks, N, d)`` features, ``f`` ``(n_tasks, N)`` offsets, ``y`` ``(n_tasks, N)``
    0/1 labels, ``subsets`` ``(m, s)`` task indices. Returns ``ŵ`` ``(m, d)`` with
    ``ŵ_S = argmin_w C Σ_{t∈S} Σ_x ℓ(f_t(x) + g_t(x)ᵀw, y_t(x)) + ½‖w‖²`` (scikit-learn's
    ``LogisticRegression(C=C, fit_intercept=False)`` when ``f = 0``), and the number of Newton
    steps taken. Computed in float64 by Newton-CG with Armijo backtracking, per subset.
    """
    g, f, y = g.double(), f.double(), y.double()
    n_tasks, _, d = g.shape
    slots = _Slots.of(subsets, n_tasks, g.device)
    mask = slots.valid[:, None, :].double()  # (n_tasks, 1, M)
    weights = torch.zeros(len(subsets), d, dtype=torch.float64, device=g.device)

    def objective(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = slots.logits(g, f, w)
        loss = F.binary_cross_entropy_with_logits(z, y[:, :, None].expand_as(z), reduction="none")
        return C * slots.to_subsets((loss * mask).sum(1)) + 0.5 * (w * w).sum(1), z

    value, z = objective(weights)
    first_norm = None
    steps = 0
    for steps in range(1, _NEWTON_MAX_ITER + 1):
        p = torch.sigmoid(z)
        residual = C * (p - y[:, :, None]) * mask
        grad = slots.to_subsets(torch.bmm(g.transpose(1, 2), residual).transpose(1, 2)) + weights
        norm = grad.norm(dim=1)
        first_norm = norm.clamp_min(1.0) if first_norm is None else first_norm
        active = norm > _NEWTON_TOL * first_norm
        if not bool(active.any()):
            break
        curvature = C * p * (1 - p) * mask

        def hvp(v: torch.Tensor) -> torch.Tensor:
            u = slots.logits(g, torch.zeros_like(f), v) * curvature
            return slots.to_subsets(torch.bmm(g.transpose(1, 2), u).transpose(1, 2)) + v

        # Inexact Newton (forcing term min(0.5, √‖∇‖), as scikit-learn's newton-cg): cheap far
        # from the optimum, quadratic convergence near it.
        direction = _batched_cg(hvp, -grad, norm.sqrt().clamp(max=0.5), max_iter=2 * d)
        direction[~active] = 0
        slope = (grad * direction).sum(1)
        step = torch.ones_like(value)
        for _ in range(40):
            new_value, new_z = objective(weights + step[:, None] * direction)
            accepted = new_value <= value + 1e-4 * step * slope + 1e-12 * value.abs()
            if bool(accepted.all()):
                break
            step = torch.where(accepted, step, step / 2)
        weights = weights + step[:, None] * direction
        value, z = new_value, new_z
    return weights, steps


def validation_losses(g: torch.Tensor, f: torch.Tensor, y: torch.Tensor, subsets: np.ndarray,
                      weights: torch.Tensor) -> np.ndarray:
    """Validation BCE of each task under each subset's estimated model ``f + g̃ᵀŵ_S``:
    ``(m, n_tasks)``, NaN where the subset does not hold the task. ``g`` ``(n_tasks, N, d)``,
    ``f``, ``y`` ``(n_tasks, N)``, ``weights`` ``(m, d)``."""
    slots = _Slots.of(subsets, g.shape[0], g.device)
    z = slots.logits(g.double(), f.double(), weights.double())
    loss = F.binary_cross_entropy_with_logits(z, y.double()[:, :, None].expand_as(z), reduction="none").mean(1)
    out = torch.full((len(subsets), g.shape[0]), float("nan"), dtype=torch.float64, device=g.device)
    task = torch.arange(g.shape[0], device=g.device)[:, None].expand_as(slots.subset)
    out[slots.subset[slots.valid], task[slots.valid]] = loss[slots.valid]
    return out.cpu().numpy()
