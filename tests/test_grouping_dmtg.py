import dataclasses

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from torch import nn

from stg_core.grouping import GroupingSpec, default_params, run_grouping
from stg_core.grouping.base import RunContext
from stg_core.grouping.dmtg import (
    ALPHA_TRAVEL,
    DMTGParams,
    GroupBranchNet,
    _branch_trainer,
    assignment_weights,
    default_alpha_lr,
    fixed_assignment_losses,
    group,
    grouping_from_logits,
    same_partition,
    settled_epoch,
    split_trunk,
    start_logits,
)
from stg_core.models import MODEL_NAMES, build_model
from stg_core.tasks import PLANTED_GROUPS
from stg_core.training import load_trained_model, seeded_model


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: these networks are small, and on a busy 2-core machine two threads
    fight over the cores (the planted run took 30 s with two, against 5 s with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def planted(planted_run):
    """The shared digits-planted run (conftest: 12 tasks, 1,347 training images, 6 batches an
    epoch); DMTG only reads its spec and data."""
    return planted_run


def _image_shape(name):
    return (8, 8, 1) if name in ("auto", "small_cnn") else (32, 32, 3)


# ---- the architecture ------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODEL_NAMES)
def test_split_trunk_is_exact_and_cuts_before_the_last_block(name):
    h, w, c = _image_shape(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(name, c, (h, w), 3).eval()
    backbone, branch = split_trunk(model.trunk)
    x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(branch(backbone(x)), model.trunk(x))
    # The two parts share the trunk's parameters and partition them.
    ids = lambda m: {id(p) for p in m.parameters()}  # noqa: E731
    assert ids(backbone) | ids(branch) == ids(model.trunk)
    assert not ids(backbone) & ids(branch)
    if isinstance(model.trunk, nn.Sequential):
        assert isinstance(branch[0], nn.Flatten)
        assert not any(isinstance(m, nn.Conv2d) for m in branch.modules())
        assert not any(isinstance(m, nn.Linear) for m in backbone.modules())
    else:
        assert any(m is model.trunk.layer4 for m in branch.modules())
        assert not any(m is model.trunk.layer4 for m in backbone.modules())


@pytest.mark.parametrize("name", ["small_cnn", "resnet18_cifar"])
def test_group_branches_start_as_exact_copies_of_the_model(name):
    h, w, c = _image_shape(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(name, c, (h, w), 4).eval()
    net = GroupBranchNet(model, 3).eval()
    x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, expected = net(x), model(x)
    assert logits.shape == (2, 3, 4)
    for k in range(3):
        torch.testing.assert_close(logits[:, k], expected)
    # Copies, not shared modules: training one branch leaves the others alone.
    assert net.branches[0] is not net.branches[1] and net.heads[0].weight is not net.heads[1].weight


def test_split_trunk_rejects_unknown_trunks():
    with pytest.raises(ValueError, match="Linear"):
        split_trunk(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="Flatten"):
        split_trunk(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()))


# ---- parameters ------------------------------------------------------------------------------

def test_defaults_are_registered_and_valid():
    assert default_params("dmtg") == DMTGParams().to_dict() == {"tau": 2.5, "alpha_lr": None, "epochs": None,
                                                                "start_groups": None, "start_lead": 1.0,
                                                                "weights_from": "initial", "hard": False,
                                                                "branch_units": None}
    DMTGParams().validate(10, 2)
    DMTGParams(tau=4, alpha_lr=0.0, epochs=3, start_groups=[0, 1, 2] * 3 + [0], start_lead=0,
               weights_from="trained", hard=np.bool_(True), branch_units=None).validate(10, 3)  # NumPy bool: a bool
    DMTGParams(branch_units=np.int64(8)).validate(10, 2)
    with pytest.raises(ValueError, match="unknown parameter 'alpha' for method 'dmtg'"):
        DMTGParams.from_dict({"alpha": 1})


@pytest.mark.parametrize("bad, name", [
    ({"tau": 0}, "tau"), ({"tau": -1.0}, "tau"), ({"tau": float("nan")}, "tau"), ({"tau": "2.5"}, "tau"),
    ({"tau": True}, "tau"), ({"alpha_lr": -0.1}, "alpha_lr"), ({"alpha_lr": float("inf")}, "alpha_lr"),
    ({"alpha_lr": "fast"}, "alpha_lr"), ({"epochs": 0}, "epochs"), ({"epochs": 1.5}, "epochs"),
    ({"epochs": True}, "epochs"), ({"start_groups": [0, 1] * 4}, "start_groups"),
    ({"start_groups": [0, 1] * 4 + [0, 2]}, "between 0 and 1"), ({"start_groups": [0] * 9 + [-1]}, "start_groups"),
    ({"start_groups": [0] * 9 + [True]}, "start_groups"), ({"start_groups": "0101010101"}, "start_groups"),
    ({"start_lead": -1}, "start_lead"), ({"start_lead": float("nan")}, "start_lead"),
    ({"start_lead": True}, "start_lead"), ({"weights_from": "scratch"}, "weights_from"),
    ({"weights_from": None}, "weights_from"), ({"hard": 1}, "hard"), ({"hard": "true"}, "hard"),
    ({"hard": None}, "hard"), ({"branch_units": 0}, "branch_units"), ({"branch_units": 8.5}, "branch_units"),
    ({"branch_units": True}, "branch_units"),
    ({"branch_units": 8, "weights_from": "trained"}, "weights_from='initial'"),
])
def test_validate_names_the_bad_value(bad, name):
    with pytest.raises(ValueError, match=name):
        DMTGParams.from_dict(bad).validate(10, 2)


def test_grouping_spec_validates_dmtg_params(planted):
    store, run_id = planted
    with pytest.raises(ValueError, match="tau"):
        run_grouping(GroupingSpec(run_id, "dmtg", 2, params={"tau": 0}), store, device="cpu")
    with pytest.raises(ValueError, match="unknown parameter"):
        run_grouping(GroupingSpec(run_id, "dmtg", 2, params={"temperature": 1}), store, device="cpu")
    with pytest.raises(ValueError, match="12 group ids .* between 0 and 1"):  # checked against k
        run_grouping(GroupingSpec(run_id, "dmtg", 2, params={"start_groups": [0, 1, 2] * 4}), store, device="cpu")


def test_default_alpha_lr_is_the_runs_lr_unless_the_run_is_short():
    assert default_alpha_lr(1e-3, 90) == pytest.approx(ALPHA_TRAVEL / 90)
    assert default_alpha_lr(1e-3, 100_000) == 1e-3
    assert default_alpha_lr(1e-3, int(ALPHA_TRAVEL / 1e-3)) == pytest.approx(1e-3)


# ---- assignment weights, hard grouping and collapse, by hand ---------------------------------

def test_assignment_weights_relaxed_and_straight_through_by_hand():
    alpha = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, 0.0]], requires_grad=True)
    gumbel = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    relaxed = assignment_weights(alpha, gumbel, tau=1.0)
    e = np.e
    expected = [[e / (e + 1), 1 / (e + 1)], [1 / (1 + e ** 2), e ** 2 / (1 + e ** 2)],
                [e ** 0.5 / (e ** 0.5 + e), e / (e ** 0.5 + e)]]
    np.testing.assert_allclose(relaxed.detach().numpy(), expected, rtol=1e-6)
    hard = assignment_weights(alpha, gumbel, tau=1.0, hard=True)
    torch.testing.assert_close(hard.detach(), torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))  # the draw's argmax
    # The backward pass is the relaxed one: the same gradient for α.
    weights = torch.tensor([[3.0, -1.0], [0.5, 2.0], [1.0, 1.5]])
    (grad_relaxed,) = torch.autograd.grad((relaxed * weights).sum(), alpha)
    (grad_hard,) = torch.autograd.grad((hard * weights).sum(), alpha)
    torch.testing.assert_close(grad_hard, grad_relaxed)
    assert grad_relaxed.abs().sum() > 0


def test_grouping_from_logits_by_hand():
    memberships, notes, details = grouping_from_logits(np.array([[1.0, 0.0], [0.0, 2.0], [3.0, -1.0]]))
    np.testing.assert_array_equal(memberships, [[1, 0], [0, 1], [1, 0]])
    assert notes == [] and details["groups_used"] == 2 and not details["collapsed"]
    assert details["group_sizes"] == [2, 1]
    np.testing.assert_allclose(details["probabilities"][0], [np.e / (np.e + 1), 1 / (np.e + 1)], atol=1e-6)


def test_grouping_from_logits_reports_collapse_and_keeps_empty_columns():
    memberships, notes, details = grouping_from_logits(np.array([[0.5, 0.0, 0.1], [0.0, -1.0, 2.0],
                                                                 [0.3, 0.2, 0.1], [0.0, 0.0, 0.0]]))
    np.testing.assert_array_equal(memberships, [[1, 0, 0], [0, 0, 1], [1, 0, 0], [1, 0, 0]])
    assert memberships.shape == (4, 3) and np.all(memberships[:, 1] == 0)  # empty group: a zero column
    assert details["collapsed"] and details["groups_used"] == 2 and details["group_sizes"] == [3, 0, 1]
    assert any(n.startswith("collapsed: 2 of 3 groups used") for n in notes)


# ---- on a real run ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def planted_groupings(planted):
    """DMTG with its default parameters at k = 2, two grouping seeds (a few seconds each)."""
    store, run_id = planted
    return {seed: run_grouping(GroupingSpec(run_id, "dmtg", 2, seed=seed), store, device="cpu") for seed in (0, 1)}


def test_default_dmtg_does_not_recover_the_planted_sets(planted_groupings):
    """A negative finding, pinned: at its defaults (branches as wide as the run's 128 units) DMTG's
    objective hardly depends on the grouping, and it does not recover the planted sets (measured
    with independently started heads: ARI <= 0.18 in 6 of 6 groupings, duplicates split in all;
    docs/dmtg-planted.md). If this starts failing, DMTG got better here: update the page."""
    for result in planted_groupings.values():
        assert result.is_hard and set(np.unique(result.labels)) <= {0, 1}
        names = list(result.task_names)
        ari = adjusted_rand_score([PLANTED_GROUPS[n] for n in names], result.labels)
        assert ari < 0.8, (ari, result.labels)


def test_result_cost_details_and_notes(planted, planted_groupings):
    result = planted_groupings[0]
    assert result.method == "dmtg" and result.is_hard and result.memberships.shape == (12, 2)
    cost = result.cost
    assert cost.models_trained == 1 and cost.extra_forward_passes == 0 and cost.extra_backward_passes == 0
    assert cost.wall_seconds > 0 and cost.reused_training_seconds == 0
    # small_cnn on 8x8 digits: multiply-adds of the convolutions (shared), and of the branch
    # (Flatten -> Linear(64*2*2, 128)) and the heads (Linear(128, 12)), once per group.
    n_tasks = 12
    convs = 8 * 8 * 9 * (1 * 32 + 32 * 64) + 4 * 4 * 9 * 64 * 64
    branch = 64 * 2 * 2 * 128 + 128 * n_tasks
    assert cost.compute_factor == pytest.approx((convs + 2 * branch) / (convs + branch), rel=1e-9)
    details = result.details
    epochs = planted[0].load_spec(planted[1]).train.epochs
    steps = epochs * 6
    assert details["epochs"] == epochs and details["steps"] == steps
    assert details["alpha_lr"] == pytest.approx(ALPHA_TRAVEL / steps)  # raised: the run is short
    assert any("assignment logits trained at lr" in note for note in result.notes)
    assert np.array(details["alpha"]).shape == (12, 2) and np.array(details["probabilities"]).shape == (12, 2)
    np.testing.assert_array_equal(np.argmax(details["alpha"], 1), result.labels)
    assert len(details["train_loss"]) == epochs and details["train_loss"][-1] < details["train_loss"][0]


def test_collapse_is_reported(planted):
    """With α frozen at its uniform start, every task takes the first group: a collapse."""
    store, run_id = planted
    result = run_grouping(GroupingSpec(run_id, "dmtg", 2, params={"alpha_lr": 0.0, "epochs": 1}), store,
                          device="cpu")
    assert result.details["collapsed"] and result.details["groups_used"] == 1
    assert result.details["group_sizes"] == [12, 0]
    # The collapse alone: α never moved, so no "settled early" warning.
    assert len(result.warnings) == 1 and result.warnings[0].startswith("collapsed: 1 of 2 groups used")
    assert not any("collapsed" in note for note in result.notes)
    np.testing.assert_array_equal(result.memberships[:, 1], 0)
    np.testing.assert_allclose(result.memberships.sum(1), 1)
    np.testing.assert_array_equal(result.details["alpha"], np.zeros((12, 2)))


def test_start_logits_and_same_partition_by_hand():
    np.testing.assert_array_equal(start_logits(3, 2, None, 1.0), np.zeros((3, 2)))
    np.testing.assert_array_equal(start_logits(3, 3, [2, 0, 2], 1.5), [[0, 0, 1.5], [1.5, 0, 0], [0, 0, 1.5]])
    assert same_partition(np.array([0, 0, 1]), np.array([1, 1, 0]))  # the group numbers do not matter
    assert not same_partition(np.array([0, 0, 1]), np.array([0, 1, 1]))
    assert not same_partition(np.array([0, 1, 1]), np.array([0, 1, 2]))  # one group split in two


def test_a_start_grouping_sets_the_initial_logits(planted):
    """With α frozen, the grouping is the start grouping (uniform α would put every task in group 0)."""
    store, run_id = planted
    start = [0, 1] * 6
    params = {"alpha_lr": 0.0, "epochs": 1, "start_groups": start, "start_lead": 2.0}
    result = run_grouping(GroupingSpec(run_id, "dmtg", 2, params=params), store, device="cpu")
    np.testing.assert_array_equal(result.labels, start)
    np.testing.assert_array_equal(result.details["alpha"], start_logits(12, 2, start, 2.0))
    assert result.details["start_kept"] is True and result.warnings == ()
    assert any("2-logit lead for the given start grouping" in n and "is that grouping" in n for n in result.notes)
    moved = run_grouping(GroupingSpec(run_id, "dmtg", 2, params={**params, "alpha_lr": None, "start_lead": 0.0,
                                                                  "epochs": 3}), store, device="cpu")
    assert moved.details["start_kept"] == same_partition(moved.labels, np.array(start))  # reported, either way


def test_branches_start_from_the_initial_or_the_trained_model(planted):
    """``weights_from`` picks the K-branch network's start: every branch and head set a copy of
    the run's initial model (the original's default), or of its trained MTL model (the authors'
    ``resume_from_mtl``)."""
    store, run_id = planted
    ctx = RunContext(store, run_id, "cpu")
    image_shape = tuple(int(s) for s in ctx.data.x_train.shape[1:])
    x = torch.as_tensor(ctx.data.x_test[:16]).permute(0, 3, 1, 2).float() / 255
    starts = {"initial": seeded_model(ctx.spec, image_shape).eval(),
              "trained": load_trained_model(store, run_id, image_shape)}
    with torch.no_grad():
        assert not torch.allclose(starts["initial"](x), starts["trained"](x))
        for weights_from, model in starts.items():
            trainer, _ = _branch_trainer(ctx, 2, 0, weights_from)
            logits = trainer.model.eval()(x)  # (B, K, n_tasks)
            for k in range(2):
                torch.testing.assert_close(logits[:, k], model(x))


def test_branch_units_narrow_the_branches_and_keep_the_backbone(planted):
    """``branch_units`` builds the K-branch network from the run's initial model with that many
    feature units: the same backbone weights (drawn first from the run's seed), branches and
    heads of the new width, all K copies alike; the compute factor is against the run's model."""
    store, run_id = planted
    ctx = RunContext(store, run_id, "cpu")
    image_shape = tuple(int(s) for s in ctx.data.x_train.shape[1:])
    run_model = seeded_model(ctx.spec, image_shape)
    _, wide_factor = _branch_trainer(ctx, 2, 0)
    narrow, narrow_factor = _branch_trainer(ctx, 2, 0, branch_units=4)
    backbone, _ = split_trunk(run_model.trunk)
    for a, b in zip(backbone.state_dict().values(), narrow.model.backbone.state_dict().values()):
        torch.testing.assert_close(a, b)
    net = narrow.model
    linears = [[m for m in branch.modules() if isinstance(m, nn.Linear)] for branch in net.branches]
    assert [layer.out_features for layers in linears for layer in layers] == [4, 4]
    assert all(head.in_features == 4 and head.out_features == 12 for head in net.heads)
    torch.testing.assert_close(linears[0][0].weight, linears[1][0].weight)  # K exact copies
    assert narrow_factor < wide_factor  # fewer units per branch: fewer FLOPs against the same run model
    result = run_grouping(GroupingSpec(run_id, "dmtg", 2, params={"epochs": 1, "branch_units": 4}), store,
                          device="cpu")
    assert result.details["branch_units"] == 4 and any("4 units" in n for n in result.notes)
    assert result.cost.compute_factor == pytest.approx(narrow_factor)
    resnet = RunContext(store, run_id, "cpu")
    resnet.spec = dataclasses.replace(ctx.spec, train=dataclasses.replace(ctx.spec.train, model="resnet18"))
    with pytest.raises(ValueError, match="layer4"):
        _branch_trainer(resnet, 2, 0, branch_units=4)


def test_a_grouping_from_the_trained_model_counts_the_run_and_is_never_early(planted):
    """Held 50 logits from where it starts, the grouping never changes: settled after epoch 1 of
    5, a warning from the initial weights (decided before the branches learned the tasks) but not
    from the trained model, whose branches have learned them. The reused run is in the cost."""
    store, run_id = planted
    params = {"alpha_lr": 1e-3, "epochs": 5, "start_groups": [0, 1] * 6, "start_lead": 50.0}
    initial = run_grouping(GroupingSpec(run_id, "dmtg", 2, params=params), store, device="cpu")
    trained = run_grouping(GroupingSpec(run_id, "dmtg", 2, params={**params, "weights_from": "trained"}), store,
                           device="cpu")
    for result in (initial, trained):
        assert result.details["settled_epoch"] == 1 and result.details["start_kept"] is True
    assert any(w.startswith("settled early") for w in initial.warnings)
    assert trained.warnings == ()
    assert initial.details["weights_from"] == "initial" and trained.details["weights_from"] == "trained"
    assert initial.details["train_loss"][0] > trained.details["train_loss"][0]  # trained weights start ahead
    assert initial.cost.models_trained == 1 and initial.cost.reused_training_seconds == 0
    assert trained.cost.models_trained == 2  # the run's MTL training, reused, and the K-branch network
    assert trained.cost.reused_training_seconds == pytest.approx(RunContext(store, run_id).training_seconds())
    assert trained.cost.reused_training_seconds > 0
    assert any("resume_from_mtl" in n for n in trained.notes) and not any("resume_from_mtl" in n for n in initial.notes)


def test_hard_assignments_train_each_task_on_its_drawn_branch_only(planted):
    """Straight-through draws put the one-hot of each draw's argmax in the forward pass. With α
    frozen 100 logits towards a start grouping at τ = 100, every draw picks the start group, so
    the hard DMTG trains exactly the network of that grouping held fixed; relaxed draws (z about
    0.73 / 0.27) train every task on both branches: another network, though from identical
    branches its loss is close."""
    store, run_id = planted
    start = [0, 1] * 6
    params = {"alpha_lr": 0.0, "epochs": 2, "start_groups": start, "start_lead": 100.0, "tau": 100.0}
    fixed = fixed_assignment_losses(RunContext(store, run_id, "cpu"), np.array(start), epochs=2)
    hard = run_grouping(GroupingSpec(run_id, "dmtg", 2, params={**params, "hard": True}), store, device="cpu")
    relaxed = run_grouping(GroupingSpec(run_id, "dmtg", 2, params=params), store, device="cpu")
    # Hard: the same network, step for step (equal to the last bit here); relaxed: 3e-5 to 3e-4 apart.
    np.testing.assert_allclose(hard.details["train_loss"], fixed["train_loss"], rtol=1e-9)
    assert not np.allclose(relaxed.details["train_loss"], fixed["train_loss"], rtol=1e-6, atol=0)
    np.testing.assert_array_equal(hard.labels, start)
    assert hard.details["hard"] is True and relaxed.details["hard"] is False
    assert any("is_hard" in n for n in hard.notes) and not any("is_hard" in n for n in relaxed.notes)


def test_same_seed_same_result_and_progress(planted):
    store, run_id = planted
    calls = []
    two = DMTGParams(epochs=2)
    first = group(RunContext(store, run_id, "cpu"), 2, two, seed=3, progress=lambda *a: calls.append(a))
    again = group(RunContext(store, run_id, "cpu"), 2, two, seed=3)
    other = group(RunContext(store, run_id, "cpu"), 2, two, seed=4)
    np.testing.assert_array_equal(first.details["alpha"], again.details["alpha"])
    np.testing.assert_array_equal(first.memberships, again.memberships)
    assert first.details["train_loss"] == again.details["train_loss"]
    assert not np.array_equal(first.details["alpha"], other.details["alpha"])
    assert [(step, n) for _, step, n in calls] == [(1, 2), (2, 2)]
    assert all(isinstance(message, str) and message for message, _, _ in calls)


# ---- DMTG's objective for a fixed grouping (the planted bench's diagnostic) --------------------

def test_fixed_assignment_losses_train_the_given_grouping(planted):
    store, run_id = planted
    ctx = RunContext(store, run_id, "cpu")
    labels = np.arange(ctx.n_tasks) // 2 % 2  # duplicates together, pairs alternating
    a = fixed_assignment_losses(ctx, labels, epochs=3)
    assert len(a["train_loss"]) == 3 and a["train_loss"][-1] < a["train_loss"][0]
    assert np.isfinite(a["test_loss"]) and a["test_loss"] > 0
    assert fixed_assignment_losses(ctx, labels, epochs=3) == a                    # seeded: reproducible
    halves = (np.arange(ctx.n_tasks) >= ctx.n_tasks // 2).astype(int)
    assert fixed_assignment_losses(ctx, halves, epochs=3) != a                   # another grouping, other losses
    trained = fixed_assignment_losses(ctx, labels, epochs=3, weights_from="trained")
    assert trained["train_loss"][0] < a["train_loss"][0]                         # from the run's trained model
    with pytest.raises(ValueError, match="weights_from"):
        fixed_assignment_losses(ctx, labels, epochs=1, weights_from="scratch")
    one_group = fixed_assignment_losses(ctx, np.zeros(ctx.n_tasks, dtype=int), epochs=1)
    assert len(one_group["train_loss"]) == 1
    with pytest.raises(ValueError, match="12 non-negative group ids"):
        fixed_assignment_losses(ctx, labels[:-1])
    with pytest.raises(ValueError, match="non-negative group ids"):
        fixed_assignment_losses(ctx, labels - 1)


def test_settled_epoch_is_the_last_change_of_the_grouping():
    a, b = np.array([0, 1, 1]), np.array([1, 1, 0])
    assert settled_epoch([a]) == 1
    assert settled_epoch([a, a, a]) == 1
    assert settled_epoch([b, a, a]) == 2
    assert settled_epoch([a, b, a]) == 3  # back to an earlier grouping still counts as a change
    assert settled_epoch([a, a, b]) == 3


def test_an_early_settled_grouping_is_reported(planted_groupings):
    """The note appears exactly when the grouping stopped changing in the first fifth of training."""
    for result in planted_groupings.values():
        settled, epochs = result.details["settled_epoch"], result.details["epochs"]
        assert 1 <= settled <= epochs
        early = [w for w in result.warnings if w.startswith("settled early")]
        assert len(early) == (settled <= epochs // 5)
        if early:
            assert f"after epoch {settled} of {epochs}" in early[0]
