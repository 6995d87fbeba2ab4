import sys
import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score

from stg_core.config import ExperimentSpec, TrainConfig
from stg_core.grouping import GroupingSpec, default_params, run_grouping
from stg_core.grouping import grad_tae, sdp, tae_solver
from stg_core.grouping.base import RunContext
from stg_core.models import build_model
from stg_core.planted import duplicates_together
from stg_core.store import ArtifactStore
from stg_core.tasks import PLANTED_GROUPS, get_preset
from stg_core.training import train_run


# ---------------------------------------------------------------- the planted check

@pytest.fixture(scope="module")
def planted(planted_run):
    """The default Grad-TAE grouping (k = 2) of the session's ``digits-planted`` run (conftest;
    the same recovery was checked on runs of 10, 15 and 20 epochs)."""
    store, run_id = planted_run
    return store, run_id, run_grouping(GroupingSpec(run_id, "grad-tae", 2), store)


@pytest.mark.slow
def test_planted_groups_are_recovered_with_duplicates_together(planted):
    _, _, result = planted
    names = result.task_names
    truth = np.array([PLANTED_GROUPS[n] for n in names])
    labels = result.labels
    assert result.method == "grad-tae" and result.is_hard and result.n_clusters == 2
    assert duplicates_together(list(names), labels), labels
    assert adjusted_rand_score(truth, labels) >= 0.8
    assert result.details["clustering"] == "sdp" and result.details["sdp_status"] in ("optimal", "optimal_inaccurate")


@pytest.mark.slow
def test_planted_affinity_is_symmetric_and_higher_within_the_planted_groups(planted):
    _, _, result = planted
    t = result.affinity
    truth = np.array([PLANTED_GROUPS[n] for n in result.task_names])
    np.testing.assert_allclose(t, t.T)
    assert np.all(np.diag(t) == 0)
    same = truth[:, None] == truth[None, :]
    off_diagonal = ~np.eye(len(t), dtype=bool)
    assert t[same & off_diagonal].mean() > t[~same].mean()


@pytest.mark.slow
def test_planted_cost_and_notes(planted):
    store, run_id, result = planted
    cost = result.cost
    assert cost.models_trained == 1 and cost.wall_seconds > 0
    assert cost.reused_training_seconds == pytest.approx(RunContext(store, run_id, "cpu").training_seconds())
    n_samples = result.details["n_samples"]
    batches = -(-n_samples // store.load_spec(run_id).train.batch_size)
    assert cost.extra_forward_passes == batches
    assert cost.extra_backward_passes == len(result.task_names) * batches
    assert any("θ* + Pŵ_S" in note for note in result.notes) and result.details["offset"] is False
    # Stored and reused: a second call reads the result instead of recomputing it.
    again = run_grouping(GroupingSpec(run_id, "grad-tae", 2), store)
    np.testing.assert_array_equal(again.memberships, result.memberships)
    np.testing.assert_allclose(again.affinity, result.affinity)


# ------------------------------------------------------------- per-sample gradients

def _tiny_model(n_tasks=3, seed=0):
    torch.manual_seed(seed)
    model = build_model("small_cnn", 1, 8, n_tasks)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode matters
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def test_vectorised_projected_gradients_match_a_naive_loop(monkeypatch):
    model = _tiny_model()
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    # Force several chunks of samples and a projection regenerated per chunk.
    monkeypatch.setattr(grad_tae, "_GRADIENT_CHUNK_BYTES", 4 * 3 * 90_000 * 2)
    monkeypatch.setattr(grad_tae, "_PROJECTION_CACHE_BYTES", 0)
    g, f = grad_tae.projected_logit_gradients(model, x, 16, seed=3)
    assert g.shape == (3, 5, 16) and f.shape == (3, 5)

    params = grad_tae.gradient_parameters(model.trunk)
    assert not any(name.startswith(("1.", "4.", "8.")) for name in params)  # BatchNorm layers skipped
    projection = grad_tae.RademacherProjection([p.numel() for p in params.values()], 16, 3, torch.device("cpu"))
    p_matrix = projection.matrix()
    assert set(torch.unique(p_matrix).tolist()) == {-0.25, 0.25}  # ±1/√16
    trainable = [p for name, p in model.trunk.named_parameters() if name in params]
    for i in range(5):
        logits = model(x[i:i + 1])[0]
        for t in range(3):
            grads = torch.autograd.grad(logits[t], trainable, retain_graph=True)
            naive = torch.cat([gr.reshape(-1) for gr in grads]) @ p_matrix
            torch.testing.assert_close(g[t, i], naive, rtol=1e-4, atol=1e-4)
            assert float(f[t, i]) == pytest.approx(float(logits[t].detach()), abs=1e-5)


def test_projection_is_seeded_and_block_regeneration_is_identical():
    a = grad_tae.RademacherProjection([7, 5], 4, seed=0, device=torch.device("cpu"))
    b = grad_tae.RademacherProjection([7, 5], 4, seed=0, device=torch.device("cpu"))
    c = grad_tae.RademacherProjection([7, 5], 4, seed=1, device=torch.device("cpu"))
    assert a.matrix().shape == (12, 4)
    torch.testing.assert_close(a.matrix(), b.matrix())
    assert not torch.equal(a.matrix(), c.matrix())
    torch.testing.assert_close(a.block(1), a._draw(1))


# ------------------------------------------------------------ logistic regressions

def _regression_problem(n_tasks=4, n=60, d=5, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(n_tasks, n, d))
    w_true = rng.normal(size=d)
    y = (rng.random((n_tasks, n)) < 1 / (1 + np.exp(-(g @ w_true)))).astype(np.float64)
    return torch.as_tensor(g), torch.as_tensor(y)


@pytest.mark.parametrize("C", [1e-2, 1.0])
def test_subset_regressions_match_scikit_learn_without_offset(C):
    g, y = _regression_problem()
    subsets = np.array([[0, 1], [1, 3], [0, 2], [2, 3], [0, 3]])
    weights, steps = tae_solver.fit_subset_regressions(g, torch.zeros_like(y), y, subsets, C)
    assert weights.shape == (5, 5) and steps >= 1
    for j, subset in enumerate(subsets):
        features = np.concatenate([g[t].numpy() for t in subset])
        labels = np.concatenate([y[t].numpy() for t in subset])
        reference = LogisticRegression(C=C, fit_intercept=False, tol=1e-12, max_iter=10_000).fit(features, labels)
        np.testing.assert_allclose(weights[j].numpy(), reference.coef_[0], atol=1e-4)


def test_subset_regressions_with_offset_reach_the_optimum():
    g, y = _regression_problem(seed=1)
    offset = torch.as_tensor(np.random.default_rng(2).normal(size=y.shape))
    subsets = np.array([[0, 1, 2], [1, 2, 3]])
    C = 0.5
    weights, _ = tae_solver.fit_subset_regressions(g, offset, y, subsets, C)
    for j, subset in enumerate(subsets):  # gradient of C Σ ℓ + ½‖w‖² vanishes at ŵ_S
        grad = weights[j].clone()
        for t in subset:
            residual = torch.sigmoid(offset[t] + g[t] @ weights[j]) - y[t]
            grad += C * g[t].T @ residual
        assert float(grad.norm()) < 1e-6


def test_validation_losses_and_affinity_by_hand():
    g = torch.zeros(3, 2, 1)
    f = torch.tensor([[0.0, 0.0], [2.0, -2.0], [1.0, 1.0]])
    y = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    subsets = np.array([[0, 1], [1, 2]])
    losses = tae_solver.validation_losses(g, f, y, subsets, torch.zeros(2, 1))
    softplus = lambda z: np.log1p(np.exp(z))  # noqa: E731  BCE(z, 1) = softplus(-z)
    np.testing.assert_allclose(losses[0], [np.log(2), softplus(-2.0), np.nan])
    np.testing.assert_allclose(losses[1], [np.nan, softplus(-2.0), softplus(-1.0)])

    # Task 0 scores 1, 2, 3 in subsets {0,1}, {0,2}, {0,1,2}; tasks 1 and 2 always score the
    # same, so their standardised scores are 0.
    scores = np.array([[1.0, 5.0, np.nan], [2.0, np.nan, 7.0], [3.0, 5.0, 7.0], [np.nan, 5.0, 7.0]])
    z0 = (np.array([1.0, 2.0, 3.0]) - 2.0) / np.std([1.0, 2.0, 3.0])
    t = grad_tae.affinity_from_scores(scores)
    expected_01 = (np.mean([z0[0], z0[2]]) + 0.0) / 2
    expected_02 = (np.mean([z0[1], z0[2]]) + 0.0) / 2
    np.testing.assert_allclose(t, [[0, expected_01, expected_02], [expected_01, 0, 0], [expected_02, 0, 0]])


def test_task_subsets_cover_every_pair_and_are_seeded():
    rng = np.random.default_rng(0)
    subsets = grad_tae.sample_task_subsets(12, 3, 4, rng)  # 3 subsets of 4 cannot cover 66 pairs
    assert subsets.shape[1] == 4 and len(subsets) > 3
    assert all(len(set(row)) == 4 for row in subsets)
    together = np.zeros((12, 12), dtype=bool)
    for row in subsets:
        together[np.ix_(row, row)] = True
    assert together.all()
    again = grad_tae.sample_task_subsets(12, 3, 4, np.random.default_rng(0))
    np.testing.assert_array_equal(subsets, again)


def test_subset_plan_defaults():
    assert grad_tae.subset_plan(12) == (100, 5)    # ceil(8·132/20) = 53 → clamped up to 100
    assert grad_tae.subset_plan(30) == (348, 5)    # ceil(8·870/20)
    assert grad_tae.subset_plan(100) == (2000, 5)  # 3,960 → clamped down to 2,000
    assert grad_tae.subset_plan(3) == (100, 2)
    assert grad_tae.subset_plan(2) == (100, 2)
    assert grad_tae.subset_plan(10, n_subsets=7, subset_size=3) == (7, 3)


# ------------------------------------------------------------------------ clustering

def _block_affinity(sizes, seed=0, within=1.0, across=-0.5, noise=0.1):
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    t = np.where(truth[:, None] == truth[None, :], within, across) + noise * rng.normal(size=(len(truth),) * 2)
    t = (t + t.T) / 2
    np.fill_diagonal(t, 0)
    return t, truth


def test_sdp_recovers_planted_blocks_with_exactly_k_groups():
    t, truth = _block_affinity([4, 3, 3])
    labels, notes, warned, details = sdp.cluster_affinity(t, 3, solver="CLARABEL")
    assert details["clustering"] == "sdp" and details["sdp_candidate_groups"] == 3 and notes == warned == ()
    assert sorted(np.bincount(labels)) == [3, 3, 4]
    assert adjusted_rand_score(truth, labels) == 1.0
    x, _ = sdp.solve_sdp(t, 3)
    np.testing.assert_allclose(np.trace(x), 3, atol=1e-4)
    np.testing.assert_allclose(x.sum(1), 1, atol=1e-4)
    assert np.linalg.eigvalsh(x).min() > -1e-4 and x.min() > -1e-4


def test_sdp_with_scs_gives_the_same_groups():
    t, truth = _block_affinity([3, 3], seed=1)
    labels, _, _, details = sdp.cluster_affinity(t, 2, solver="SCS")
    assert details["solver"] == "SCS" and adjusted_rand_score(truth, labels) == 1.0


def test_rounding_turns_any_candidate_groups_into_exactly_k():
    t, _ = _block_affinity([2, 2, 2], noise=0.0)
    three_blocks = np.kron(np.eye(3), np.full((2, 2), 0.5))
    # More candidate groups (3) than k (2): the third block joins by affinity.
    labels, n_candidates = sdp.round_sdp_solution(three_blocks, t, 2)
    assert n_candidates == 3 and sorted(np.bincount(labels, minlength=2)) == [2, 4]
    # Fewer candidate groups (1) than k (3): split until every group is non-empty.
    labels, n_candidates = sdp.round_sdp_solution(np.full((6, 6), 1 / 6 + 0.1), t, 3)
    assert n_candidates == 1 and len(np.unique(labels)) == 3 and labels.min() == 0 and labels.max() == 2


def test_exactly_k_groups_places_unassigned_tasks_by_affinity():
    t, _ = _block_affinity([3, 3], noise=0.0)
    labels = sdp.exactly_k_groups(np.array([0, -1, 0, 1, 1, -1]), t, 2)
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1])


def test_spectral_clustering_on_request_is_labelled():
    t, truth = _block_affinity([3, 3], seed=2)
    labels, notes, warned, details = sdp.cluster_affinity(t, 2, clustering="spectral")
    assert details["clustering"] == "spectral" and adjusted_rand_score(truth, labels) == 1.0
    assert len(notes) == 1 and "spectral clustering" in notes[0] and "fallback" not in notes[0]
    assert warned == ()  # asked for, so nothing to doubt


def test_spectral_fallback_when_the_solver_fails(monkeypatch):
    import cvxpy

    def fail(self, *args, **kwargs):
        raise cvxpy.error.SolverError("simulated failure")

    monkeypatch.setattr(cvxpy.Problem, "solve", fail)
    t, truth = _block_affinity([3, 3], seed=3)
    with pytest.warns(RuntimeWarning, match="spectral-clustering fallback"):
        labels, notes, warned, details = sdp.cluster_affinity(t, 2, solver="CLARABEL")
    assert details["clustering"] == "spectral-fallback" and "simulated failure" in details["sdp_error"]
    assert notes == () and len(warned) == 1
    assert "spectral-clustering fallback" in warned[0] and "CLARABEL" in warned[0]
    assert adjusted_rand_score(truth, labels) == 1.0


def test_spectral_fallback_when_cvxpy_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "cvxpy", None)  # import cvxpy now raises ImportError
    t, _ = _block_affinity([3, 3], seed=4)
    with pytest.warns(RuntimeWarning, match="cvxpy is not installed"):
        labels, _, warned, _ = sdp.cluster_affinity(t, 2)
    assert "spectral-clustering fallback" in warned[0] and len(np.unique(labels)) == 2


# ------------------------------------------------------------------------ parameters

@pytest.mark.parametrize("change, message", [
    ({"max_samples": 5}, "max_samples=5"),
    ({"max_samples": 100.0}, "max_samples=100.0"),
    ({"validation_fraction": 1.0}, "validation_fraction=1.0"),
    ({"validation_fraction": 0}, "validation_fraction=0"),
    ({"projection_dim": 0}, "projection_dim=0"),
    ({"n_subsets": 0}, "n_subsets=0"),
    ({"subset_size": 1}, "subset_size=1"),
    ({"subset_size": 11}, "subset_size=11"),
    ({"subset_size": True}, "subset_size=True"),
    ({"C": 0.0}, "C=0.0"),
    ({"C": float("inf")}, "C=inf"),
    ({"offset": "yes"}, "offset='yes'"),
    ({"clustering": "kmeans"}, "'kmeans'"),
    ({"solver": "MOSEK"}, "'MOSEK'"),
])
def test_validate_names_the_bad_value(change, message):
    with pytest.raises(ValueError, match=message):
        grad_tae.GradTAEParams.from_dict(change).validate(10, 2)


def test_defaults_are_registered_and_valid():
    assert default_params("grad-tae") == grad_tae.GradTAEParams().to_dict()
    assert list(default_params("grad-tae"))[:2] == ["max_samples", "validation_fraction"]  # the stored order
    grad_tae.GradTAEParams().validate(10, 2)
    with pytest.raises(ValueError, match="C=-1"):
        GroupingSpec("x", "grad-tae", 2, params={"C": -1}).validate(10)


# ---------------------------------------------------------------- cost accounting

def test_extra_backward_passes_grow_with_the_number_of_tasks(tmp_path):
    store = ArtifactStore(tmp_path)
    tasks = get_preset("digits-g1").tasks
    results = {}
    for n_tasks, offset in ((3, False), (6, True)):
        spec = ExperimentSpec(dataset="digits", tasks=tasks[:n_tasks], subset=120, test_subset=40,
                              train=TrainConfig(epochs=1, batch_size=32))
        run_id = train_run(spec, store, device="cpu")
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="Grad-TAE")  # no fallback here: the SDP is solved
            results[n_tasks] = grad_tae.group(RunContext(store, run_id, "cpu"), 2, grad_tae.GradTAEParams(
                max_samples=40, n_subsets=8, projection_dim=8, offset=offset))
    small, large = results[3].cost, results[6].cost
    assert small.extra_forward_passes == large.extra_forward_passes == 2  # ceil(40 / 32)
    assert (small.extra_backward_passes, large.extra_backward_passes) == (6, 12)
    assert small.models_trained == large.models_trained == 1
    assert results[6].details["n_fit"] + results[6].details["n_validation"] == 40
    assert results[6].memberships.shape == (6, 2) and results[6].is_hard
    assert results[6].details["offset"] is True and "around θ*" in results[6].notes[0]
