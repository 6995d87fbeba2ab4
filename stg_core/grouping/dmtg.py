"""DMTG (Gao et al., ICML 2024): one-shot differentiable task grouping with K branches.

The run's model (``spec.train.model``, initialised from the run's seed) is cut into a shared
*backbone* and its last block, which is copied into K *group branches*, each with its own n
task heads (:func:`split_trunk`). Assignment logits α ``(n_tasks, K)`` start uniform (zeros).
Every minibatch draws one relaxed assignment ``z = softmax((α + g) / τ)`` with Gumbel noise g
(constant τ) and minimises

    Σ_i Σ_k z_ik · ℓ_i(head_{k,i}(branch_k(backbone(x))), y_i)

with ℓ_i the trainer's per-task BCE (``pos_weight = neg/pos``); the same Adam trains α and the
weights. Task i joins group ``argmax_k α_ik``. K is an upper bound: groups left empty are
reported as a *collapse* (in ``warnings`` and ``details``), their membership columns kept all
zero. As in the authors' code (``ethanygao/DMTG``, ``models/learnToGroup.py``), the K branches
and heads are exact copies of one initialisation: only the Gumbel draws and dropout masks
break the symmetry between groups.

Deviations from the original:

- only the grouping phase: pruning and fine-tuning the kept branches is the evaluation's job;
- the run's schedule instead of the authors' (100 epochs, lr 8e-4 halved every 15 epochs);
- α is an Adam parameter group of its own (``alpha_lr``, no weight decay);
- ``alpha_lr = None`` is the run's lr, raised to ``ALPHA_TRAVEL / n_steps`` when the run is too short for α to move;
- the grouping's seed draws the Gumbel noise, orders the batches and seeds the dropout masks.

Options, off by default (not in the authors' configs):

- ``hard=True``: straight-through one-hot assignments (the authors' ``is_hard``; :func:`assignment_weights`);
- ``weights_from="trained"``: start from the run's trained MTL model (the authors' ``resume_from_mtl``);
- ``branch_units=N`` (CNNs): group branches of N fresh units on the run's initial backbone;
- ``start_groups``/``start_lead``: α starts with a lead for a given grouping (:func:`start_logits`).

Known limitation: where the objective hardly depends on the grouping, the grouping settles in
the first epochs (``details["settled_epoch"]``, a warning in the first fifth of training);
``docs/dmtg-planted.md`` has the measurements on planted problems and their commands.

Cost: one training of K branches; ``compute_factor`` is the ratio of forward FLOPs per image
(:class:`torch.utils.flop_counter.FlopCounterMode`) of the K-branch network to the run's.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from stg_core.grouping.base import GroupingCost, GroupingResult, MethodParams, ProgressFn, RunContext, Timer, one_hot
from stg_core.models import MultiHeadNet
from stg_core.training import MultiTaskTrainer, load_trained_model, precision_amp, seeded_model
from stg_core.validation import check_integer, check_positive, is_bool, is_integer

#: Where the K-branch network's weights start (``weights_from``).
WEIGHTS_FROM = ("initial", "trained")

#: How far (in logits) Adam can move α over the authors' CelebA schedule: 8e-4 x ~29.8
#: full-lr epoch equivalents (halved every 15 of 100 epochs) x ~636 batches (one GPU) ≈ 15.
ALPHA_TRAVEL = 15.0


def default_alpha_lr(lr: float, n_steps: int) -> float:
    """The run's ``lr``, or more when ``n_steps`` optimiser steps at ``lr`` could not move α by
    :data:`ALPHA_TRAVEL`: ``max(lr, ALPHA_TRAVEL / n_steps)``."""
    return max(lr, ALPHA_TRAVEL / max(n_steps, 1))


@dataclasses.dataclass(frozen=True)
class DMTGParams(MethodParams):
    """DMTG's parameters (the spec's seed orders the batches and draws the Gumbel noise)."""

    method = "dmtg"
    tau: float = 2.5                  # Gumbel-softmax temperature, constant (paper: 2.5 on CelebA, 4 on Taskonomy)
    alpha_lr: float | None = None     # Adam lr of the assignment logits α; None = max(run's lr, ALPHA_TRAVEL / steps)
    epochs: int | None = None         # passes over the training set; None = the run's epochs
    start_groups: list[int] | None = None  # a group id in 0..K-1 per task to start α from; None = uniform (original)
    start_lead: float = 1.0           # logits by which each task's start group leads the others (with start_groups)
    weights_from: str = "initial"     # initial: the run's initial weights (original) | trained: its trained MTL model
    hard: bool = False                # straight-through one-hot assignments (authors' is_hard; their configs: relaxed)
    branch_units: int | None = None   # units of each group branch's fully connected layer (CNNs); None = the run's

    def validate(self, n_tasks: int, k: int) -> None:
        check_positive("tau", self.tau)
        check_positive("alpha_lr", self.alpha_lr, zero_ok=True, none_means="the run's lr, raised for short runs")
        check_integer("epochs", self.epochs, 1, none_means="the run's epochs")
        groups = self.start_groups
        if groups is not None and (not isinstance(groups, (list, tuple)) or len(groups) != n_tasks or any(
                not is_integer(g) or not 0 <= g < k for g in groups)):
            raise ValueError(f"start_groups={groups!r} must be None or {n_tasks} group ids (one per task, in task "
                             f"order) between 0 and {k - 1}")
        check_positive("start_lead", self.start_lead, zero_ok=True)
        check_weights_from(self.weights_from)
        if not is_bool(self.hard):
            raise ValueError(f"hard={self.hard!r} must be true (straight-through one-hot assignments) or false "
                             "(relaxed, the default)")
        check_branch_units(self.branch_units, self.weights_from)


PARAMS = DMTGParams


def check_branch_units(branch_units: Any, weights_from: str, model: str = "auto") -> None:
    """``branch_units`` must be None (the run's branch) or a positive int of units for a CNN
    run's model ``model``, whose branches then start from fresh initial weights."""
    if branch_units is None:
        return
    if not is_integer(branch_units) or branch_units < 1:
        raise ValueError(f"branch_units={branch_units!r} must be a positive integer number of units or None (the "
                         "run's branch)")
    if weights_from != "initial":
        raise ValueError(f"branch_units={branch_units} needs weights_from='initial': the run's trained branch has "
                         "the run's units")
    if model.startswith("resnet"):
        raise ValueError(f"branch_units={branch_units} applies to the CNNs' fully connected branch, not to "
                         f"{model}'s layer4")


def check_weights_from(weights_from: Any) -> None:
    """``weights_from`` must name a start of the K-branch network (:data:`WEIGHTS_FROM`)."""
    if weights_from not in WEIGHTS_FROM:
        raise ValueError(f"weights_from={weights_from!r} must be 'initial' (the run's initial weights) or "
                         "'trained' (the run's trained MTL model)")


def start_logits(n_tasks: int, n_clusters: int, start_groups: list[int] | None, lead: float) -> np.ndarray:
    """Initial assignment logits α ``(n_tasks, K)``: zeros (uniform, as in the original), or
    ``lead`` for each task's group in ``start_groups`` and 0 elsewhere. With τ = 2.5 a lead of
    1 starts a task at probability 0.6 for its group at K = 2 (the Gumbel draws vary it)."""
    alpha = np.zeros((n_tasks, n_clusters))
    if start_groups is not None:
        alpha[np.arange(n_tasks), np.asarray(start_groups, dtype=np.int64)] = lead
    return alpha


def assignment_weights(alpha: torch.Tensor, gumbel: torch.Tensor, tau: float, hard: bool = False) -> torch.Tensor:
    """One batch's assignment weights ``z`` ``(n_tasks, K)`` from logits α and Gumbel draws ``g``
    (both ``(n_tasks, K)``): ``softmax((α + g) / τ)`` over the groups, or with ``hard`` its row
    argmax one-hot in the forward pass and the relaxed gradient in the backward
    (straight-through, as ``F.gumbel_softmax(hard=True)``, with our seeded draws)."""
    soft = torch.softmax((alpha + gumbel) / tau, dim=1)
    if not hard:
        return soft
    one_hot_rows = torch.nn.functional.one_hot(soft.argmax(1), soft.shape[1]).to(soft.dtype)
    return one_hot_rows - soft.detach() + soft


def split_trunk(trunk: nn.Module) -> tuple[nn.Module, nn.Module]:
    """``(backbone, branch)`` with ``branch(backbone(x)) == trunk(x)``: the branch is the
    trunk's last block. Both share the trunk's modules (copy the branch to get K of them).

    ``nn.Sequential`` trunks (``paper_cnn``, ``small_cnn``): the branch is the fully connected
    part from ``Flatten`` on, the backbone the convolution stages. torchvision ResNets: the
    branch is ``layer4``, the average pool and the flatten, the backbone everything before.
    Images ``(B, C, H, W)`` → backbone features → branch features ``(B, feature_dim)``.
    """
    if isinstance(trunk, nn.Sequential):
        cuts = [i for i, module in enumerate(trunk) if isinstance(module, nn.Flatten)]
        if not cuts or cuts[0] == 0:
            raise ValueError("a Sequential trunk must have convolution stages followed by a Flatten to be split")
        return trunk[:cuts[0]], trunk[cuts[0]:]
    if isinstance(trunk, torchvision.models.ResNet):
        backbone = nn.Sequential(trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool, trunk.layer1, trunk.layer2,
                                 trunk.layer3)
        # fc is the Identity of models.resnet18 (the heads are MultiHeadNet.heads); kept for exactness.
        return backbone, nn.Sequential(trunk.layer4, trunk.avgpool, nn.Flatten(1), trunk.fc)
    raise ValueError(f"cannot split a trunk of type {type(trunk).__name__} into backbone and branch")


class GroupBranchNet(nn.Module):
    """A shared backbone, K copies of a branch and K copies of the n task heads.

    ``forward``: images ``(B, C, H, W)`` → logits ``(B, K, n_tasks)`` (entry ``[b, k, i]``:
    head i of group k on image b).
    """

    def __init__(self, model: MultiHeadNet, n_clusters: int) -> None:
        super().__init__()
        backbone, branch = split_trunk(model.trunk)
        self.backbone = backbone
        # Exact copies, as in the original: the groups differ only by what they are trained on.
        self.branches = nn.ModuleList(copy.deepcopy(branch) for _ in range(n_clusters))
        self.heads = nn.ModuleList(copy.deepcopy(model.heads) for _ in range(n_clusters))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        # A loop over the K groups (small), never over tasks: each head layer covers all tasks.
        return torch.stack([head(branch(features)) for branch, head in zip(self.branches, self.heads)], 1)


def forward_flops(model: nn.Module, image_shape: tuple[int, int, int]) -> int:
    """Forward FLOPs of ``model`` (eval mode, no gradient) on one image ``(H, W, C)``."""
    h, w, c = image_shape
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, c, h, w))
    model.train(was_training)
    return int(counter.get_total_flops())


def grouping_from_logits(alpha: np.ndarray) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Hard grouping from assignment logits ``(n_tasks, K)``: one-hot memberships ``(n_tasks, K)``
    (task i in group ``argmax_k α_ik``; columns of empty groups are all zero), collapse
    warnings, and figures for ``details``."""
    n_clusters = alpha.shape[1]
    labels = alpha.argmax(1)
    sizes = np.bincount(labels, minlength=n_clusters)
    used = int((sizes > 0).sum())
    warnings = []
    if used < n_clusters:
        warnings.append(f"collapsed: {used} of {n_clusters} groups used (DMTG's K is an upper bound; the empty "
                        "groups are kept as all-zero membership columns)")
    shifted = alpha - alpha.max(1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
    details = {"alpha": alpha.round(6).tolist(), "probabilities": probabilities.round(6).tolist(),
               "group_sizes": sizes.tolist(), "groups_used": used, "collapsed": used < n_clusters}
    return one_hot(labels, n_clusters), warnings, details


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether group ids ``a`` and ``b`` ``(n_tasks,)`` make the same groups, whatever their numbers."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def settled_epoch(grouping_by_epoch: list[np.ndarray]) -> int:
    """The first epoch (1-based) after which the hard grouping never changed again, from the
    argmax groups ``(n_tasks,)`` at the end of each epoch."""
    final = grouping_by_epoch[-1]
    epoch = len(grouping_by_epoch)
    while epoch > 1 and np.array_equal(grouping_by_epoch[epoch - 2], final):
        epoch -= 1
    return epoch


def _gumbel_noise(generator: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard Gumbel draws ``shape`` (as ``F.gumbel_softmax`` makes them, from ``generator``)."""
    return -torch.empty(shape).exponential_(generator=generator).log()


def _train_branches(trainer: MultiTaskTrainer, n_epochs: int,
                    weights: Callable[[int, int], Iterator[torch.Tensor]],
                    progress: ProgressFn | None = None) -> list[float]:
    """Train ``trainer.model`` (a :class:`GroupBranchNet`) for ``n_epochs`` on
    ``Σ_i Σ_k z_ik · ℓ_i(head_{k,i}(...))``; ``weights(epoch, n_batches)`` yields one ``z``
    ``(n_tasks, K)`` per batch. The steps are :meth:`MultiTaskTrainer.step_epoch`'s (batches,
    dropout seeds). Returns the mean training loss of each epoch."""
    data, net = trainer.data, trainer.model
    losses = []
    for epoch in range(1, n_epochs + 1):
        zs = weights(epoch, len(trainer.batches(epoch)))

        def batch_loss(i: int, index: torch.Tensor, zs: Iterator[torch.Tensor] = zs) -> torch.Tensor:
            z = next(zs)  # (n_tasks, K)
            targets = data.y_train[index]
            with trainer.autocast():
                logits = net(trainer.inputs(data.x_train[index]))  # (B, K, n_tasks)
            loss_per_head = trainer.loss_per_task(logits, targets[:, None, :].expand_as(logits))  # (K, n)
            return (loss_per_head * z.T).sum()

        losses.append(trainer.step_epoch(epoch, batch_loss))
        if progress is not None:
            progress(f"DMTG epoch {epoch}/{n_epochs}", epoch, n_epochs)
    return losses


def _branch_trainer(ctx: RunContext, n_clusters: int, seed: int, weights_from: str = "initial",
                    branch_units: int | None = None) -> tuple[MultiTaskTrainer, float]:
    """A trainer of the K-branch network built from the run's initial model, or from its trained
    MTL model with ``weights_from="trained"`` (run's lr, batch size, precision; ``seed`` orders
    the batches; a fresh optimiser either way), and the network's compute factor (against the
    run's model). ``branch_units``: the initial model built with that many feature units
    instead (the same backbone weights: they are drawn first from the run's seed)."""
    train, data = ctx.spec.train, ctx.data
    check_branch_units(branch_units, weights_from, train.model)
    image_shape = tuple(int(s) for s in data.x_train.shape[1:])
    if weights_from == "trained":
        mtl_model = load_trained_model(ctx.store, ctx.run_id, image_shape)
    else:
        mtl_model = seeded_model(ctx.spec, image_shape)
    source = mtl_model
    if branch_units is not None:
        narrow = dataclasses.replace(ctx.spec, train=dataclasses.replace(train, feature_dim=int(branch_units)))
        source = seeded_model(narrow, image_shape)
    net = GroupBranchNet(source, n_clusters)
    compute_factor = forward_flops(net, image_shape) / forward_flops(mtl_model, image_shape)
    trainer = MultiTaskTrainer(net, data, lr=train.lr, weight_decay=train.weight_decay,  # type: ignore[arg-type]
                               batch_size=train.batch_size, seed=seed, record=False,
                               amp=precision_amp(train.precision))
    return trainer, compute_factor


def group(ctx: RunContext, n_clusters: int, params: DMTGParams = DMTGParams(), *, seed: int = 0,
          progress: ProgressFn | None = None) -> GroupingResult:
    """Hard memberships ``(n_tasks, n_clusters)`` from one DMTG training on the run's data."""
    params.validate(ctx.n_tasks, n_clusters)
    tau, alpha_lr, epochs, start_groups = params.tau, params.alpha_lr, params.epochs, params.start_groups
    start_lead, weights_from, branch_units = params.start_lead, params.weights_from, params.branch_units
    hard = bool(params.hard)  # a NumPy bool too: details are written as JSON
    train = ctx.spec.train
    n_epochs = train.epochs if epochs is None else int(epochs)
    _ = ctx.data  # loaded before the timer: wall_seconds is DMTG's own training
    with Timer() as timer:
        trainer, compute_factor = _branch_trainer(ctx, n_clusters, seed, weights_from, branch_units)
        n_steps = n_epochs * len(trainer.batches(1))
        lr_alpha = default_alpha_lr(train.lr, n_steps) if alpha_lr is None else float(alpha_lr)
        alpha0 = start_logits(ctx.n_tasks, n_clusters, start_groups, start_lead)
        alpha = nn.Parameter(torch.tensor(alpha0, dtype=torch.float32, device=ctx.device))
        trainer.optimizer.add_param_group({"params": [alpha], "lr": lr_alpha, "weight_decay": 0.0})
        digest = hashlib.sha256(f"dmtg-gumbel:{seed}".encode()).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))

        grouping_by_epoch: list[np.ndarray] = []  # argmax of α at the end of epochs 1, 2, ...

        def assignments(epoch: int, n_batches: int) -> Iterator[torch.Tensor]:
            if epoch > 1:
                grouping_by_epoch.append(alpha.detach().argmax(1).cpu().numpy())
            # One Gumbel draw per batch, all of the epoch's made at once: one host-to-device copy.
            noise = _gumbel_noise(generator, (n_batches, ctx.n_tasks, n_clusters)).to(ctx.device)
            for gumbel in noise:
                yield assignment_weights(alpha, gumbel, tau, hard)  # (n_tasks, K), rows sum to 1

        losses = _train_branches(trainer, n_epochs, assignments, progress)
        final_alpha = alpha.detach().cpu().double().numpy()
    grouping_by_epoch.append(final_alpha.argmax(1))
    memberships, warnings, details = grouping_from_logits(final_alpha)
    settled = settled_epoch(grouping_by_epoch)
    from_trained = weights_from == "trained"
    # Early is a warning from the initial weights only (α frozen: nothing was decided, a collapse is reported).
    if lr_alpha > 0 and not from_trained and settled <= n_epochs // 5:
        warnings.append(f"settled early: the grouping did not change after epoch {settled} of {n_epochs} (training "
                        f"loss {losses[settled - 1]:.3g} then, {losses[-1]:.3g} at the end), so it was decided "
                        "before the branches had learned the tasks; another grouping seed may give another grouping")
    notes = ["grouping phase only: the pruned K-branch model is not fine-tuned (the evaluation trains the "
             "groups); the run's epochs and lr schedule instead of the authors' 100 epochs"]
    if start_groups is not None:
        kept = same_partition(final_alpha.argmax(1), np.asarray(start_groups))
        notes.append(f"assignment logits started with a {start_lead:g}-logit lead for the given start grouping "
                     f"(the original starts uniform); the final grouping {'is' if kept else 'is not'} that grouping")
        details["start_kept"] = kept
    if from_trained:
        notes.append("branches and heads started from the run's trained MTL model (the authors' resume_from_mtl "
                     "option; by default the original starts from untrained weights)")
    if hard:
        notes.append("straight-through one-hot assignments: each batch trains a task on one branch (the authors' "
                     "is_hard option; their configs use relaxed assignments)")
    if branch_units is not None:
        notes.append(f"each group branch has {int(branch_units)} units in its fully connected layer, freshly "
                     "initialised (the original copies the network's last block as it is)")
    if lr_alpha != train.lr:
        why = (f"raised from the run's lr for a run of {n_steps} steps, so that α can move ~{ALPHA_TRAVEL:g} "
               "logits as over the authors' schedule" if alpha_lr is None else "as set")
        notes.append(f"assignment logits trained at lr {lr_alpha:.3g} ({why}), the weights at the run's "
                     f"{train.lr:g}; the original uses one lr for both")
    details.update({"tau": float(tau), "alpha_lr": lr_alpha, "epochs": n_epochs, "steps": n_steps,
                    "weights_from": weights_from, "hard": hard, "settled_epoch": settled,
                    "branch_units": None if branch_units is None else int(branch_units),
                    "train_loss": losses,
                    "compute_factor_source": "forward FLOPs per image, K-branch network / MTL network"})
    return GroupingResult(
        "dmtg", ctx.task_names, memberships,
        GroupingCost(wall_seconds=timer.seconds, models_trained=2 if from_trained else 1,
                     compute_factor=float(compute_factor),
                     reused_training_seconds=ctx.training_seconds() if from_trained else 0.0),
        notes=tuple(notes), details=details, warnings=tuple(warnings))


def fixed_assignment_losses(ctx: RunContext, labels: np.ndarray, *, seed: int = 0, epochs: int | None = None,
                            weights_from: str = "initial", branch_units: int | None = None) -> dict[str, Any]:
    """DMTG's objective for one grouping held fixed: the K-branch network trained with task i
    in group ``labels[i]`` (``z`` one-hot, ``K = labels.max() + 1``), as :func:`group` trains it
    otherwise (from the weights that ``weights_from`` names, with ``branch_units`` units).
    Returns the mean training loss of each epoch (``train_loss``) and the test loss of the
    trained network (``test_loss``).
    Comparing a planted grouping with random ones says whether the grouping matters to DMTG's
    objective on a problem (``bench/planted.py``)."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (ctx.n_tasks,) or labels.min() < 0:
        raise ValueError(f"labels must be {ctx.n_tasks} non-negative group ids")
    check_weights_from(weights_from)
    n_epochs = ctx.spec.train.epochs if epochs is None else int(epochs)
    trainer, _ = _branch_trainer(ctx, int(labels.max()) + 1, seed, weights_from, branch_units)
    z = torch.as_tensor(one_hot(labels, int(labels.max()) + 1), dtype=torch.float32, device=ctx.device)
    losses = _train_branches(trainer, n_epochs, lambda epoch, n_batches: (z for _ in range(n_batches)))
    logits = trainer.predict_logits(ctx.data.x_test)  # (M, K, n_tasks), in batches, eval mode
    test = trainer.loss_per_task(logits, ctx.data.y_test[:, None, :].expand_as(logits))  # (K, n)
    return {"train_loss": losses, "test_loss": float((test * z.T).sum())}
