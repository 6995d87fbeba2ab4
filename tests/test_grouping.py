"""Grouping methods: the shared result type and store, STG, random, and TAG."""

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from stg_core.config import ExperimentSpec, TrainConfig
from stg_core.grouping import (GroupingCost, GroupingResult, GroupingSpec, list_groupings, read_grouping,
                               run_grouping, save_grouping_spec)
from stg_core.grouping.base import RunContext
from stg_core.grouping.tag import (LookaheadAffinity, _n_partitions, partition_scores, select_groups,
                                   set_partitions)
from stg_core.planted import duplicates_together
from stg_core.store import ArtifactStore
from stg_core.tasks import PLANTED_GROUPS, Task
from stg_core.training import MultiTaskTrainer, TrainingData, seeded_model, train_run


def planted_checks(result: GroupingResult) -> float:
    """Duplicates share a group; return the ARI against the planted groups."""
    names = list(result.task_names)
    labels = result.labels
    assert duplicates_together(names, labels), (names, labels)
    return adjusted_rand_score([PLANTED_GROUPS[n] for n in names], labels)


# ---- result type and store ---------------------------------------------------------------

def test_result_validates_and_round_trips():
    cost = GroupingCost(1.5, 1, extra_forward_passes=3)
    r = GroupingResult("tag", ("a", "b", "c"), np.eye(2)[[0, 1, 1]], cost, affinity=np.arange(9.0).reshape(3, 3),
                       notes=("a deviation",), details={"search": "exhaustive"}, warnings=("a fallback",))
    assert r.is_hard and r.n_clusters == 2 and r.labels.tolist() == [0, 1, 1]
    back = GroupingResult.from_json(r.to_json())
    assert back.cost == cost and back.notes == r.notes and back.warnings == r.warnings
    assert np.array_equal(back.affinity, r.affinity)
    with pytest.raises(ValueError, match="rows summing to 1"):
        GroupingResult("x", ("a", "b"), np.array([[0.5, 0.4], [1, 0]]), cost)
    with pytest.raises(ValueError, match="do not match 3 tasks"):
        GroupingResult("x", ("a", "b", "c"), np.eye(2), cost)
    with pytest.raises(ValueError, match="affinity of shape"):
        GroupingResult("x", ("a", "b"), np.eye(2), cost, affinity=np.zeros((3, 3)))


def test_spec_validation_names_the_problem(planted_run):
    store, run_id = planted_run
    with pytest.raises(ValueError, match="unknown grouping method 'nope'"):
        save_grouping_spec(GroupingSpec(run_id, "nope", 2), store)
    with pytest.raises(ValueError, match="k=1 must be between 2"):
        save_grouping_spec(GroupingSpec(run_id, "stg", 1), store)
    with pytest.raises(ValueError, match="k=13 must be between 2 and the number of tasks"):
        save_grouping_spec(GroupingSpec(run_id, "random", 13), store)
    with pytest.raises(ValueError, match="unknown parameter 'tau' for method 'stg'"):
        save_grouping_spec(GroupingSpec(run_id, "stg", 2, params={"tau": 1}), store)
    with pytest.raises(ValueError, match="fuzziness F=1 must be a finite number greater than 1"):
        save_grouping_spec(GroupingSpec(run_id, "stg", 2, params={"fuzziness": 1}), store)
    # values a JSON box lets through, each refused before a job is started
    for method, params, message in (("stg", {"fuzziness": "3"}, "fuzziness F='3'"),
                                    ("stg", {"fuzziness": float("inf")}, "fuzziness F=inf"),
                                    ("stg", {"epochs": 3}, "epochs=3 must be None"),
                                    ("stg", {"epochs": [0, 2]}, "epochs=\\[0, 2\\]"),
                                    ("tag", {"lookahead_lr": "0.1"}, "lookahead_lr='0.1'"),
                                    ("tag", {"epochs": True}, "epochs=True")):
        with pytest.raises(ValueError, match=message):
            save_grouping_spec(GroupingSpec(run_id, method, 2, params=params), store)
    GroupingSpec(run_id, "stg", 2, params={"epochs": [1, 15]}).validate(12)
    with pytest.raises(ValueError, match="affinity_every=0 must be a positive integer"):
        save_grouping_spec(GroupingSpec(run_id, "tag", 2, params={"affinity_every": 0}), store)
    assert GroupingSpec(run_id, "stg", 2).grouping_id() == GroupingSpec(
        run_id, "stg", 2, params={"fuzziness": 2.0}).grouping_id()  # defaults are part of the id


def test_unfinished_run_is_refused(tmp_path):
    store = ArtifactStore(tmp_path)
    spec = ExperimentSpec("digits", (Task("3", "classes", ("3",)), Task("5", "classes", ("5",))), TrainConfig(epochs=1))
    from stg_core.training import save_run_spec

    run_id = save_run_spec(store, spec)
    with pytest.raises(ValueError, match="has not finished training"):
        save_grouping_spec(GroupingSpec(run_id, "stg", 2), store)
    with pytest.raises(ValueError, match="group its tasks once training has completed"):
        RunContext(store, run_id)


def test_stg_and_random_are_stored_and_reused(planted_run):
    store, run_id = planted_run
    stg = run_grouping(GroupingSpec(run_id, "stg", 2), store)
    assert planted_checks(stg) >= 0.8
    assert not stg.is_hard and stg.affinity is None
    # cost: STG needs no pass beyond the run's own training, which it reuses
    assert stg.cost.extra_forward_passes == 0 and stg.cost.extra_backward_passes == 0
    assert stg.cost.models_trained == 1 and stg.cost.reused_training_seconds > 0
    rnd = run_grouping(GroupingSpec(run_id, "random", 2, seed=3), store)
    assert rnd.is_hard and rnd.cost.models_trained == 0
    assert sorted(np.bincount(rnd.labels).tolist()) == [6, 6]
    ids = [gid for gid, _ in list_groupings(store, run_id)]
    assert GroupingSpec(run_id, "stg", 2).grouping_id() in ids
    again = read_grouping(store, run_id, GroupingSpec(run_id, "stg", 2).grouping_id())
    np.testing.assert_allclose(again.memberships, stg.memberships, atol=1e-6)
    assert run_grouping(GroupingSpec(run_id, "stg", 2), store).cost == stg.cost  # reused, not recomputed


# ---- TAG: group selection ------------------------------------------------------------------

@pytest.mark.parametrize("n,k", [(1, 1), (4, 2), (6, 3), (7, 7), (9, 4)])
def test_set_partitions_are_all_the_partitions(n, k):
    parts = set_partitions(n, k)
    assert len(parts) == _n_partitions(n, k)
    # every row: exactly k groups, a restricted growth string (so no partition appears twice)
    assert all(len(set(row)) == k for row in parts.tolist())
    assert all(all(row[i] <= max(row[:i], default=-1) + 1 for i in range(n)) for row in parts.tolist())
    assert len({tuple(r) for r in parts.tolist()}) == len(parts)


def test_partition_scores_by_hand():
    z = np.array([[9.0, 1.0, 2.0], [3.0, 9.0, 4.0], [5.0, 6.0, 9.0]])
    # {0, 1} {2}: task 0 gets Z[1,0] = 3, task 1 gets Z[0,1] = 1, task 2 alone 0 -> mean 4/3
    assert partition_scores(z, np.array([[0, 0, 1]]))[0] == pytest.approx(4 / 3)
    # all together: task 0 (3+5)/2, task 1 (1+6)/2, task 2 (2+4)/2 -> mean of 4, 3.5, 3
    assert partition_scores(z, np.array([[0, 0, 0]]))[0] == pytest.approx(3.5)


def _brute_force_best(z, k):
    n = len(z)
    best = -np.inf
    for labels in itertools.product(range(k), repeat=n):
        if len(set(labels)) == k:
            best = max(best, partition_scores(z, np.array([labels]))[0])
    return best


def test_exhaustive_search_finds_the_best_partition():
    rng = np.random.default_rng(0)
    for n, k in [(5, 2), (6, 3), (7, 2)]:
        z = rng.normal(size=(n, n))
        labels, search = select_groups(z, k)
        assert search == "exhaustive" and len(set(labels.tolist())) == k
        assert partition_scores(z, labels[None])[0] == pytest.approx(_brute_force_best(z, k))


def test_beam_search_recovers_planted_blocks_and_never_beats_exhaustive():
    rng = np.random.default_rng(1)
    truth = np.repeat(np.arange(4), 5)  # 20 tasks, 4 blocks
    z = 0.1 * rng.normal(size=(20, 20)) + np.equal.outer(truth, truth)
    labels, search = select_groups(z, 4)
    assert search == "beam" and adjusted_rand_score(truth, labels) == 1.0
    for seed in range(3):  # on small problems the beam is compared with the true optimum
        z = np.random.default_rng(seed).normal(size=(9, 9))
        beam, _ = select_groups(z, 3, exhaustive_max_tasks=5)
        best, _ = select_groups(z, 3)
        assert len(set(beam.tolist())) == 3
        assert partition_scores(z, beam[None])[0] <= partition_scores(z, best[None])[0] + 1e-12


# ---- TAG: the lookahead affinity -------------------------------------------------------------

def _tiny_trainer(n_tasks=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
    y = rng.integers(0, 2, (40, n_tasks))
    data = TrainingData.from_arrays(x, y, x[:8], y[:8], torch.device("cpu"))
    tasks = tuple(Task(f"t{i}", "random", seed=i) for i in range(n_tasks))
    model = seeded_model(ExperimentSpec("digits", tasks, TrainConfig(model="small_cnn", seed=seed)), (8, 8, 1))
    return MultiTaskTrainer(model, data, batch_size=20, seed=seed, record=False)


def test_lookahead_affinity_matches_a_naive_computation():
    import copy

    trainer = _tiny_trainer()
    index = trainer.batches(1)[0]
    meter = LookaheadAffinity(trainer, lookahead_lr=0.05, task_chunk=2)
    meter.measure(index)

    def losses(model):
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.eval()
            if isinstance(m, torch.nn.BatchNorm2d):
                m.track_running_stats = False
        return trainer.loss_per_task(model(trainer.inputs(trainer.data.x_train[index])), trainer.data.y_train[index])

    base = losses(copy.deepcopy(trainer.model)).detach()
    expected = np.zeros((3, 3))
    for i in range(3):
        model = copy.deepcopy(trainer.model)
        loss_i = losses(model)[i]
        shared = [p for name, p in model.named_parameters() if name.startswith("trunk.")]
        grads = torch.autograd.grad(loss_i, shared)
        with torch.no_grad():
            for p, g in zip(shared, grads):
                p -= 0.05 * g
        expected[i] = (1 - losses(model) / base).detach().numpy()
    np.testing.assert_allclose(meter.affinity, expected, rtol=1e-3, atol=1e-6)


def test_measuring_changes_nothing_in_the_training_run():
    plain, measured = _tiny_trainer(), _tiny_trainer()
    meter = LookaheadAffinity(measured, 1e-3)
    for epoch in (1, 2):
        plain.train_epoch(epoch)
        measured.train_epoch(epoch, before_step=lambda i, index: meter.measure(index))
    assert meter.measurements == 4
    for (name, a), b in zip(plain.model.state_dict().items(), measured.model.state_dict().values()):
        assert torch.equal(a, b), name  # weights, BatchNorm running statistics, batch counts


# ---- TAG on the planted problem ----------------------------------------------------------------

@pytest.mark.slow
def test_tag_on_the_planted_problem(planted_run):
    """TAG's affinity sees the planted sets — tasks of one set help each other more than tasks
    of the other set —, its selection at k = 2 recovers the two sets, and duplicates share a
    group (recovered on 10 of 10 run seeds: ``python bench/planted.py``)."""
    store, run_id = planted_run
    result = run_grouping(GroupingSpec(run_id, "tag", 2), store)
    assert planted_checks(result) >= 0.8
    assert result.details["search"] == "exhaustive" and result.is_hard
    assert result.details["n_distinct_tasks"] == 6
    z = result.affinity
    names = list(result.task_names)
    truth = np.array([PLANTED_GROUPS[n] for n in names])
    copies = np.array([[a.removesuffix(" again") == b.removesuffix(" again") for b in names] for a in names])
    within = np.equal.outer(truth, truth) & ~copies
    assert z[within].mean() > 1.5 * z[~np.equal.outer(truth, truth)].mean()
    assert any("partition into exactly k groups" in note for note in result.notes)
    assert any("6 exact duplicate task(s)" in note for note in result.notes)


def test_tag_extra_passes_grow_with_the_number_of_tasks(tmp_path):
    store = ArtifactStore(tmp_path)
    passes = {}
    for n in (3, 6):
        tasks = tuple(Task(str(d), "classes", (str(d),)) for d in range(n))
        run_id = train_run(ExperimentSpec("digits", tasks, TrainConfig(epochs=2), subset=300), store)
        cost = run_grouping(GroupingSpec(run_id, "tag", 2, params={"affinity_every": 1}), store).cost
        passes[n] = (cost.extra_forward_passes, cost.extra_backward_passes, cost.models_trained)
        stg = run_grouping(GroupingSpec(run_id, "stg", 2), store).cost
        assert (stg.extra_forward_passes, stg.extra_backward_passes) == (0, 0)
    # 2 epochs of 2 batches, measured every step: 4 measurements of (1 + n) forward and n backward passes
    assert passes == {3: (16, 12, 1), 6: (28, 24, 1)}
    assert math.isclose(passes[6][1] / passes[3][1], 2.0)


# ---- background jobs and the command line ---------------------------------------------------

def test_grouping_runs_as_a_background_job(planted_run):
    import time

    from stg_core import jobs

    store, run_id = planted_run
    spec = GroupingSpec(run_id, "random", 3, seed=7)
    job = jobs.Job(run_id, grouping_id=save_grouping_spec(spec, store))
    assert job in jobs.all_jobs(store) and job.kind == "grouping"
    assert jobs.submit(store, job) in ("running", "completed")
    deadline = time.monotonic() + 120
    while jobs.read_status(store, job).get("state") not in ("completed", "failed"):
        assert time.monotonic() < deadline, jobs.read_status(store, job)
        time.sleep(0.1)
    assert jobs.read_status(store, job)["state"] == "completed", job.log_path(store).read_text()
    assert read_grouping(store, run_id, job.grouping_id).n_clusters == 3
    assert "grouping:" in job.log_path(store).read_text()
    assert jobs.submit(store, job) == "completed"  # reused, not recomputed


@pytest.mark.slow  # several command-line subprocesses
def test_group_command_json_has_the_shape_of_cluster_json(planted_run):
    import json
    import subprocess
    import sys
    from pathlib import Path

    store, run_id = planted_run
    root = Path(__file__).resolve().parents[1]

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "stg_core", *args, "--store", str(store.root)], cwd=root,
                              capture_output=True, text=True, timeout=300)

    group = json.loads(cli("group", run_id, "--method", "stg", "--k", "2", "--json", "-q").stdout)
    cluster = json.loads(cli("cluster", run_id, "--k", "2", "--json").stdout)
    for key in ("tasks", "memberships", "labels"):
        assert group[key] == cluster[key] or np.allclose(group[key], cluster[key], atol=1e-6), key
    assert group["method"] == "stg" and group["cost"]["models_trained"] == 1 and group["affinity"] is None
    assert group["warnings"] == []
    text = cli("group", run_id[:6], "--method", "random", "--k", "2", "-q")
    assert text.returncode == 0 and "cost:" in text.stdout and "{8,9} again" in text.stdout
    collapsed = cli("group", run_id, "--method", "dmtg", "--k", "2", "--param", "alpha_lr=0", "--param", "epochs=1",
                    "-q")  # α frozen at its uniform start: every task in the first group
    assert collapsed.returncode == 0 and "warning: collapsed: 1 of 2 groups used" in collapsed.stdout
    assert "note: grouping phase only" in collapsed.stdout
    bad = cli("group", run_id, "--method", "tag", "--k", "2", "--param", "affinity_every=0")
    assert bad.returncode == 2 and "affinity_every=0 must be a positive integer" in bad.stderr
    bad = cli("group", run_id, "--method", "stg", "--k", "2", "--param", "nonsense")
    assert bad.returncode == 2 and "write NAME=VALUE" in bad.stderr
    # Several methods: one unit each, one JSON line each, in the order given (stg reused from above).
    lines = cli("group", run_id, "--method", "random,stg", "--k", "2", "--json", "-q").stdout.splitlines()
    assert [json.loads(line)["method"] for line in lines] == ["random", "stg"]
    assert json.loads(lines[1])["memberships"] == group["memberships"]
    bad = cli("group", run_id, "--method", "stg,nope", "--k", "2")
    assert bad.returncode == 2 and "unknown method nope" in bad.stderr
    bad = cli("group", run_id, "--method", "stg,tag", "--k", "2", "--param", "fuzziness=3")
    assert bad.returncode == 2 and "--param applies to one method" in bad.stderr
