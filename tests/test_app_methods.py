"""The Methods page (groupings of several methods side by side), rendered headless with AppTest,
and its figure builders."""

import json
import shutil

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.state import APP_SCRIPT
from stg_core import jobs, locks
from stg_core.config import TrainConfig, spec_from_preset
from stg_core.evaluation import load_evaluation_spec, run_evaluation
from stg_core.grouping import GROUPING_METHODS, GroupingSpec, grouping_dir, run_grouping, save_grouping_spec
from stg_core.store import ArtifactStore, update_status_file
from stg_core.training import train_run
from tests.echarts_options import chart_keys, chart_option, heatmap_matrix

WIDGETS = ("button", "selectbox", "slider", "number_input", "text_input", "radio", "multiselect", "checkbox",
           "file_uploader", "toggle", "download_button", "select_slider", "text_area")
DONE = ("stg", "tag", "random")  # the groupings the `grouped` fixture computes (k = 3, seed 0)


def _methods_page(store_root, monkeypatch) -> AppTest:
    monkeypatch.setenv("STG_STORE", str(store_root))
    at = AppTest.from_file(APP_SCRIPT, default_timeout=60).run()
    return at.switch_page("../pages/methods.py").run()


def _choose(at: AppTest, methods, k: int = 3) -> AppTest:
    at.multiselect(key="group_methods").set_value(list(methods))
    at.slider(key="methods_k").set_value(k)
    return at.run()


#: How to tell the page's tables apart (AppTest does not expose a dataframe's key): a column each has.
TABLE_COLUMNS = {"agreement": "STG-MTL", "cost": "wall s", "alignment": "ARI chance", "f1": "evaluated as"}


def _table(at: AppTest, key: str):
    tables = [d.value for d in at.dataframe if TABLE_COLUMNS[key] in d.value.columns]
    assert len(tables) == 1, f"no single table {key!r}"
    return tables[0]


def _missing_help(at: AppTest) -> list[str]:
    return [f"{kind} {getattr(w, 'label', '?')!r}" for kind in WIDGETS for w in at.get(kind)
            if not getattr(w, "help", None)]


def _grouping_ids(store: ArtifactStore, run_id: str) -> list[str]:
    folder = store.run_dir(run_id) / "groupings"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished digits-g2 run (15 tasks, 2 epochs on 300 images) without any grouping."""
    store = ArtifactStore(tmp_path_factory.mktemp("store"))
    run_id = train_run(spec_from_preset("digits-g2", subset=300, test_subset=80, train=TrainConfig(epochs=2)), store)
    return store, run_id


@pytest.fixture(scope="module")
def grouped(finished_run, tmp_path_factory):
    """The same run with finished STG, TAG and random groupings at k = 3 (TAG: ~5 s)."""
    store, run_id = finished_run
    root = tmp_path_factory.mktemp("grouped") / "store"
    shutil.copytree(store.root, root)
    store = ArtifactStore(root)
    results = {m: run_grouping(GroupingSpec(run_id, m, 3), store) for m in DONE}
    return store, run_id, results


@pytest.fixture
def copy_of(tmp_path):
    """A private copy of a module's store, for tests that add groupings or evaluations."""
    def copy(store: ArtifactStore) -> ArtifactStore:
        root = tmp_path / "store"
        shutil.copytree(store.root, root)
        return ArtifactStore(root)
    return copy


# ---- empty states ----------------------------------------------------------------------------

def test_methods_page_without_runs(tmp_path, monkeypatch):
    at = _methods_page(tmp_path / "empty", monkeypatch)
    assert not at.exception and not at.error
    assert at.title[0].value == "Methods"
    assert any("No run yet" in i.value for i in at.info)
    assert any(e.label == "Glossary" for e in at.expander)


def test_a_run_still_training_cannot_be_grouped(interrupted_run, monkeypatch):
    at = _methods_page(interrupted_run.root, monkeypatch)
    assert not at.exception and not at.error
    assert any("interrupted" in i.value and "completed" in i.value for i in at.info)
    assert not at.button


def test_finished_run_without_groupings_offers_every_method_and_its_cost(finished_run, monkeypatch):
    store, run_id = finished_run
    at = _methods_page(store.root, monkeypatch)
    assert not at.exception and not at.error
    assert at.multiselect(key="group_methods").value == list(GROUPING_METHODS)  # all five by default
    assert at.slider(key="methods_k").value == 3 and at.slider(key="methods_k").max == 15
    assert at.button(key="launch_groupings")
    hints = " ".join(c.value for c in at.caption)
    for label, words in (("STG-MTL", "instant"), ("TAG", "trains one MTL model"), ("Grad-TAE", "per-sample gradients"),
                         ("DMTG", "branches"), ("random", "floor")):
        assert f"**{label}**" in hints and words in hints
    assert any("No grouping of this run" in i.value for i in at.info)
    assert _missing_help(at) == []
    assert at.query_params["methods"] == ",".join(GROUPING_METHODS) and at.query_params["k"] == "3"


def test_no_method_selected_is_an_error(finished_run, monkeypatch):
    store, _ = finished_run
    at = _methods_page(store.root, monkeypatch)
    at.multiselect(key="group_methods").set_value([]).run()
    assert not at.exception
    assert any("No method selected" in e.value for e in at.error)
    assert not [b for b in at.button if b.key == "launch_groupings"]


# ---- launching -------------------------------------------------------------------------------

def test_launch_saves_one_grouping_per_method_and_submits_each(finished_run, copy_of, monkeypatch, submitted):
    store = copy_of(finished_run[0])
    run_id = finished_run[1]
    at = _methods_page(store.root, monkeypatch)
    _choose(at, ["random", "stg"], k=4)
    at.number_input(key="methods_seed").set_value(7).run()
    assert at.query_params["k"] == "4" and at.query_params["seed"] == "7"
    assert at.query_params["methods"] == "stg,random"  # canonical order
    at.button(key="launch_groupings").click().run()
    assert not at.exception and not at.error
    gids = {m: GroupingSpec(run_id, m, 4, 7).grouping_id() for m in ("stg", "random")}
    assert _grouping_ids(store, run_id) == sorted(gids.values())
    for gid in gids.values():
        assert (grouping_dir(store, run_id, gid) / "spec.json").exists()
    assert submitted == [jobs.Job(run_id, grouping_id=gids["stg"]), jobs.Job(run_id, grouping_id=gids["random"])]
    assert any("Launched" in s.value for s in at.success)
    bars = [p.proto.text for p in at.get("progress")]  # saved, submitted (here: only recorded)
    assert len(bars) == 2 and all("created" in b for b in bars)
    at.button(key="launch_groupings").click().run()  # the same settings again: the same groupings
    assert _grouping_ids(store, run_id) == sorted(gids.values())
    assert submitted[2:] == submitted[:2]


def test_method_parameters_make_another_grouping_and_bad_ones_are_named(finished_run, copy_of, monkeypatch,
                                                                         submitted):
    store = copy_of(finished_run[0])
    run_id = finished_run[1]
    at = _methods_page(store.root, monkeypatch)
    _choose(at, ["stg", "dmtg", "random"], k=2)
    assert [t.key for t in at.text_input] == ["params_stg", "params_dmtg"]  # random has no parameters
    assert json.loads(at.text_input(key="params_dmtg").placeholder)["tau"] == 2.5
    assert "alpha_lr" in at.text_input(key="params_dmtg").help
    for text, message in (('{"alpha_lr": 0.001', "not valid JSON"), ("[1, 2]", "must be a JSON object"),
                          ('{"alpha": 1}', "unknown parameter 'alpha'"), ('{"epochs": 0}', "epochs=0"),
                          ('{"tau": NaN}', "hold NaN")):
        at.text_input(key="params_dmtg").set_value(text).run()
        assert not at.exception
        assert [e.value for e in at.error if "DMTG" in e.value and message in e.value], text
        assert at.button(key="launch_groupings")  # the other methods can still be launched
    at.text_input(key="params_dmtg").set_value('{"alpha_lr": 0.001, "epochs": 3}').run()
    assert not at.error
    assert at.query_params["params_dmtg"] == '{"alpha_lr": 0.001, "epochs": 3}' and "params_stg" not in at.query_params
    at.button(key="launch_groupings").click().run()
    params = {"alpha_lr": 0.001, "epochs": 3}
    gid = GroupingSpec(run_id, "dmtg", 2, 0, params).grouping_id()
    assert gid != GroupingSpec(run_id, "dmtg", 2, 0).grouping_id()
    assert jobs.Job(run_id, grouping_id=gid) in submitted
    assert json.loads((grouping_dir(store, run_id, gid) / "spec.json").read_text())["params"]["alpha_lr"] == 0.001


def test_the_settings_come_from_the_url(finished_run, monkeypatch):
    store, _ = finished_run
    monkeypatch.setenv("STG_STORE", str(store.root))
    at = AppTest.from_file(APP_SCRIPT, default_timeout=60)
    at.query_params.update({"k": "5", "seed": "3", "methods": "tag,random", "params_tag": '{"beam_width": 4}'})
    at.run().switch_page("../pages/methods.py").run()
    assert not at.exception
    assert at.slider(key="methods_k").value == 5 and at.number_input(key="methods_seed").value == 3
    assert at.multiselect(key="group_methods").value == ["tag", "random"]
    assert at.text_input(key="params_tag").value == '{"beam_width": 4}'


def test_k_comes_from_the_clustering_page(finished_run, monkeypatch):
    store, _ = finished_run
    monkeypatch.setenv("STG_STORE", str(store.root))
    at = AppTest.from_file(APP_SCRIPT, default_timeout=60).run()
    at.switch_page("../pages/clustering.py").run()
    at.slider(key="k").set_value(6).run()
    at.switch_page("../pages/methods.py").run()
    assert not at.exception
    assert at.slider(key="methods_k").value == 6


# ---- job status ------------------------------------------------------------------------------

def test_failed_grouping_shows_its_error_and_log_and_can_resume(finished_run, copy_of, monkeypatch, submitted):
    store = copy_of(finished_run[0])
    run_id = finished_run[1]
    gid = save_grouping_spec(GroupingSpec(run_id, "dmtg", 2), store)
    folder = grouping_dir(store, run_id, gid)
    update_status_file(folder / "status.json", state="failed", error="RuntimeError: out of memory")
    (folder / "worker.log").write_text("epoch 1/2\nerror: RuntimeError: out of memory\n")
    at = _methods_page(store.root, monkeypatch)
    _choose(at, ["dmtg"], k=2)
    assert not at.exception
    assert any("DMTG" in e.value and "out of memory" in e.value for e in at.error)
    assert any(e.label == "Worker log · DMTG" for e in at.expander)
    assert any("epoch 1/2" in c.value for c in at.code)
    assert any("appear here side by side" in i.value for i in at.info)
    assert _missing_help(at) == []
    at.button(key="resume_dmtg").click().run()
    assert submitted == [jobs.Job(run_id, grouping_id=gid)]


def test_running_grouping_shows_progress_and_cancel(finished_run, copy_of, monkeypatch, polling):
    store = copy_of(finished_run[0])
    run_id = finished_run[1]
    gid = save_grouping_spec(GroupingSpec(run_id, "tag", 3), store)
    monkeypatch.setattr(locks, "is_worker", lambda pid: True)  # a live worker, without starting one
    cancelled = []
    monkeypatch.setattr(jobs, "cancel", lambda store, job: cancelled.append(job) or "cancelling")
    update_status_file(grouping_dir(store, run_id, gid) / "status.json", state="running", pid=12345, progress=0.4,
                       message="epoch 1/2")
    at = _methods_page(store.root, monkeypatch)
    _choose(at, ["tag"])
    assert not at.exception and not at.error
    (bar,) = at.get("progress")
    assert "TAG" in bar.proto.text and "running" in bar.proto.text and "epoch 1/2" in bar.proto.text
    assert ("panel", 2) in polling.fragments and polling.reruns == []  # polled in a fragment
    at.button(key="cancel_tag").click().run()
    assert cancelled == [jobs.Job(run_id, grouping_id=gid)]


# ---- results ---------------------------------------------------------------------------------

def test_finished_groupings_side_by_side(grouped, monkeypatch):
    store, run_id, results = grouped
    at = _methods_page(store.root, monkeypatch)
    _choose(at, DONE)
    assert not at.exception and not at.error
    assert not at.get("progress")  # all finished: no progress bar, no polling
    keys = chart_keys(at, "plotly_chart")
    assert chart_keys(at) == ["heatmap_stg", "heatmap_tag", "heatmap_random"]
    heatmaps = {m: chart_option(at, f"heatmap_{m}") for m in DONE}
    order = heatmaps["stg"]["yAxis"][0]["data"]
    assert sorted(order) == sorted(results["stg"].task_names)
    assert all(h["yAxis"][0]["data"] == order for h in heatmaps.values())  # the same task order for every method
    rows = [results["stg"].task_names.index(t) for t in order]
    np.testing.assert_allclose(heatmap_matrix(heatmaps["stg"]), np.asarray(results["stg"].memberships)[rows],
                               atol=5e-4)  # the reference's own clusters, drawn rounded to 4 decimals
    assert [k for k in keys if k.startswith("affinity_")] == ["affinity_tag"]  # only TAG has an affinity
    affinity = chart_option(at, "affinity_tag", "plotly_chart")["data"][0]
    assert affinity["x"] == order and affinity["y"] == order

    ari = _table(at, "agreement")
    assert list(ari.index) == ["STG-MTL", "TAG", "random"] and ari.shape == (3, 3)
    np.testing.assert_allclose(np.diag(ari.values), 1.0)
    from sklearn.metrics import adjusted_rand_score
    assert ari.loc["TAG", "random"] == pytest.approx(adjusted_rand_score(results["tag"].labels, results["random"].labels))
    assert "agreement_heatmap" in keys

    cost = _table(at, "cost")
    assert list(cost.index) == ["STG-MTL", "TAG", "random"]
    assert cost.loc["TAG", "extra forward passes"] == results["tag"].cost.extra_forward_passes > 0
    assert cost.loc["STG-MTL", "extra forward passes"] == 0
    assert cost.loc["STG-MTL", "reused training s"] == pytest.approx(results["stg"].cost.reused_training_seconds)

    notes = " ".join(c.value for c in at.caption) + " ".join(w.value for w in at.warning)
    for note in results["tag"].notes:
        assert note in notes
    assert "**STG-MTL**: no deviation" in notes
    assert any("no known super-groups" in c.value for c in at.caption)  # digits has none

    assert [b.label for b in at.get("download_button")] == ["Groupings side by side (CSV)", "Groupings (JSON)"]
    assert at.button(key="evaluate_f1")
    assert _missing_help(at) == []
    assert any(e.label == "Glossary" for e in at.expander)
    assert any(e.label == "All groupings of this run (3)" for e in at.expander)

    _choose(at, ["stg", "dmtg"])  # a method not run with these settings is named, the others shown
    assert not at.exception and not at.error
    assert any("DMTG: not launched with these settings" in c.value for c in at.caption)
    assert chart_keys(at) == ["heatmap_stg"]
    assert any("no other method to compare" in c.value for c in at.caption)


def test_a_methods_warnings_are_shown_as_warnings_and_its_notes_as_captions(grouped, copy_of, monkeypatch):
    from stg_core.grouping import GroupingCost, GroupingResult
    from stg_core.store import write_json

    store = copy_of(grouped[0])
    run_id = grouped[1]
    names = grouped[2]["stg"].task_names
    spec = GroupingSpec(run_id, "dmtg", 3)
    gid = save_grouping_spec(spec, store)
    memberships = np.eye(3)[[0] * 8 + [1] * 7]  # group 2 left empty
    result = GroupingResult("dmtg", names, memberships, GroupingCost(1.0, 1, compute_factor=1.4),
                            notes=("grouping phase only", "a note that mentions a fallback is still a note"),
                            warnings=("collapsed: 2 of 3 groups used", "settled early: the grouping did not change "
                                      "after epoch 1 of 15"))
    write_json(grouping_dir(store, run_id, gid) / "result.json", {"grouping_id": gid, "spec": spec.to_json(),
                                                                 **result.to_json(with_affinity=False)})
    update_status_file(grouping_dir(store, run_id, gid) / "status.json", state="completed", progress=1.0)
    at = _methods_page(store.root, monkeypatch)
    _choose(at, ["stg", "dmtg"])
    assert not at.exception and not at.error
    assert any("DMTG" in w.value and "collapsed: 2 of 3" in w.value for w in at.warning)
    assert any("DMTG" in w.value and "settled early" in w.value for w in at.warning)
    assert any("DMTG" in c.value and "grouping phase only" in c.value for c in at.caption)
    assert any("DMTG" in c.value and "still a note" in c.value for c in at.caption)
    assert not any("still a note" in w.value for w in at.warning)  # the method says what warns, not its words
    assert _table(at, "cost").loc["DMTG", "compute factor"] == pytest.approx(1.4)
    assert any("None of these methods gives an affinity" in c.value for c in at.caption)


def test_evaluate_f1_submits_one_evaluation_per_grouping_and_shows_their_f1(grouped, copy_of, monkeypatch, submitted):
    store = copy_of(grouped[0])
    run_id, results = grouped[1], grouped[2]
    at = _methods_page(store.root, monkeypatch)
    _choose(at, DONE)
    at.number_input(key="f1_epochs").set_value(1).run()
    at.button(key="evaluate_f1").click().run()
    assert not at.exception and not at.error
    assert len(submitted) == 3 and all(j.evaluation_id for j in submitted)
    specs = {j.evaluation_id: load_evaluation_spec(store, run_id, j.evaluation_id) for j in submitted}
    by_method = dict(zip(DONE, [specs[j.evaluation_id] for j in submitted]))
    assert by_method["stg"].methods == ("stg",)  # soft memberships
    assert by_method["tag"].methods == by_method["random"].methods == ("stg-hard",)  # one-hot
    for m in DONE:
        np.testing.assert_allclose(np.asarray(by_method[m].memberships), results[m].memberships, atol=1e-6)
        assert by_method[m].epochs == 1 and by_method[m].n_clusters == 3
    table = _table(at, "f1")
    assert list(table.index) == ["STG-MTL", "TAG", "random"] and "mean test F1" not in table
    evaluated = run_evaluation(by_method["random"], store)  # one evaluation finishes (3 small models, 1 epoch)
    at.run()
    table = _table(at, "f1")
    assert table.loc["random", "mean test F1"] == pytest.approx(evaluated["methods"]["stg-hard"]["mean_f1"]["test"][-1])
    assert np.isnan(table.loc["TAG", "mean test F1"])  # not evaluated yet
    assert _missing_help(at) == []


def test_alignment_with_known_groups(tmp_path, monkeypatch):
    from tests.test_app_clustering import _write_synthetic_run

    store = ArtifactStore(tmp_path / "store")
    run_id = _write_synthetic_run(store)
    for method in ("stg", "random"):
        run_grouping(GroupingSpec(run_id, method, 3), store)
    at = _methods_page(store.root, monkeypatch)
    _choose(at, ["stg", "random"])
    assert not at.exception and not at.error
    table = _table(at, "alignment")
    assert list(table.index) == ["STG-MTL", "random"]
    assert list(table.columns) == ["ARI", "NMI", "purity", "ARI chance", "NMI chance", "purity chance"]
    assert table.loc["STG-MTL", "ARI"] > table.loc["STG-MTL", "ARI chance"]  # planted: each group its own pattern


# ---- figure builders -------------------------------------------------------------------------

def test_membership_heatmap_takes_a_task_order():
    from app.cluster_charts import membership_heatmap

    m = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert membership_heatmap(m, ["0", "1", "2", "3"])["yAxis"][0]["data"] == ["1", "3", "0", "2"]  # default unchanged
    option = membership_heatmap(m, ["0", "1", "2", "3"], order=[3, 2, 1, 0], title="TAG")
    assert option["yAxis"][0]["data"] == ["3", "2", "1", "0"]
    np.testing.assert_allclose(heatmap_matrix(option), m[[3, 2, 1, 0]])
    assert option["title"]["text"] == "TAG"
    with pytest.raises(ValueError, match="permutation"):
        membership_heatmap(m, ["0", "1", "2", "3"], order=[0, 0, 1, 2])


def test_affinity_and_agreement_heatmaps():
    from app.charts import affinity_heatmap, agreement_heatmap
    from stg_core.alignment import match_clusters, pairwise_ari

    a = np.array([[9.0, 0.2, -0.1], [0.3, 9.0, 0.0], [-0.4, 0.1, 9.0]])
    fig = affinity_heatmap(a, ["a", "b", "c"], order=[2, 0, 1], title="TAG: task affinity")
    assert list(fig.data[0].x) == list(fig.data[0].y) == ["c", "a", "b"]
    np.testing.assert_allclose(fig.data[0].z, a[np.ix_([2, 0, 1], [2, 0, 1])])
    assert (fig.data[0].zmin, fig.data[0].zmax) == (-0.4, 0.4)  # the off-diagonal entries set the range
    with pytest.raises(ValueError, match="does not match 2 tasks"):
        affinity_heatmap(a, ["a", "b"])

    ari = pairwise_ari({"stg": [0, 0, 1, 1], "tag": [1, 1, 0, 0], "random": [0, 1, 0, 1]})
    assert ari.shape == (3, 3) and ari[0, 1] == pytest.approx(1.0) and ari[0, 2] < 0.5
    np.testing.assert_allclose(ari, ari.T)
    fig = agreement_heatmap(ari, ["stg", "tag", "random"])
    assert list(fig.data[0].x) == ["STG-MTL", "TAG", "random"]
    assert fig.data[0].text[0][1] == "1.00"
    with pytest.raises(ValueError, match="does not match 2 methods"):
        agreement_heatmap(ari, ["stg", "tag"])

    ref = np.eye(3)[[0, 0, 1, 2]]
    swapped = np.eye(3)[[2, 2, 0, 1]]  # the same grouping, numbered differently
    np.testing.assert_array_equal(match_clusters(swapped, ref), ref)
