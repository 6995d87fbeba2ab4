"""The Evaluation page, rendered headless with AppTest, and its F1 figure."""

import shutil

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.state import APP_SCRIPT
from stg_core import jobs, locks
from stg_core.config import TrainConfig, spec_from_preset
from stg_core.evaluation import (METHODS, EvaluationSpec, evaluation_dir, load_evaluation_spec, run_evaluation,
                                 save_evaluation_spec)
from stg_core.store import ArtifactStore, update_status_file
from stg_core.training import train_run
from tests.echarts_options import chart_option, open_tab



def _evaluation_page(store_root, monkeypatch) -> AppTest:
    monkeypatch.setenv("STG_STORE", str(store_root))
    at = AppTest.from_file(APP_SCRIPT, default_timeout=60).run()
    return at.switch_page("../pages/evaluation.py").run()


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A finished digits-g2 run (15 tasks) with one finished evaluation (k = 3, 1 epoch, every method)."""
    store = ArtifactStore(tmp_path_factory.mktemp("store"))
    run_id = train_run(spec_from_preset("digits-g2", subset=300, test_subset=80, train=TrainConfig(epochs=2)), store)
    results = run_evaluation(EvaluationSpec(run_id, 3, epochs=1), store)
    return store, run_id, results


@pytest.fixture
def store_copy(evaluated, tmp_path):
    """A private copy of the evaluated store, for tests that add evaluations."""
    store, run_id, results = evaluated
    root = tmp_path / "store"
    shutil.copytree(store.root, root)
    return ArtifactStore(root), run_id, results


def _evaluation_ids(store: ArtifactStore, run_id: str) -> list[str]:
    return sorted(j.evaluation_id for j in jobs.all_jobs(store) if j.run_id == run_id and j.evaluation_id)


def test_evaluation_page_without_runs(tmp_path, monkeypatch):
    at = _evaluation_page(tmp_path / "empty", monkeypatch)
    assert not at.exception and not at.error
    assert at.title[0].value == "Evaluation"
    assert any("No run yet" in i.value for i in at.info)


def test_a_run_still_training_cannot_be_evaluated(interrupted_run, monkeypatch):
    at = _evaluation_page(interrupted_run.root, monkeypatch)
    assert not at.exception and not at.error
    assert any("interrupted" in i.value and "completed" in i.value for i in at.info)
    assert not at.button  # nothing to launch


def test_finished_evaluation_shows_f1_curves_and_per_task_table(evaluated, monkeypatch):
    store, run_id, results = evaluated
    at = _evaluation_page(store.root, monkeypatch)
    assert not at.exception and not at.error
    assert at.query_params["eval"] == results["evaluation_id"] and at.query_params["run"] == run_id
    assert at.selectbox(key="evaluation").value == results["evaluation_id"]
    assert not at.get("progress")  # finished: no progress bar, no polling
    curves = chart_option(at, "f1_curves", "plotly_chart")["data"]
    assert [c["name"] for c in curves] == [f"{label} · {split}" for label in
                                           ("MTL", "STL", "STG-MTL soft", "STG-MTL hard", "random grouping")
                                           for split in ("test", "train")]
    assert curves[0]["y"] == results["methods"]["mtl"]["mean_f1"]["test"]
    table = next(d.value for d in at.dataframe if d.value.index.name == "task")
    assert table.shape == (15, 5)  # one row per task, one column per method
    assert list(table.columns) == ["MTL", "STL", "STG-MTL soft", "STG-MTL hard", "random grouping"]
    assert list(table.index) == results["task_names"]
    np.testing.assert_allclose(table["STG-MTL soft"], results["methods"]["stg"]["epochs"][-1]["test"]["f1"])
    assert [m.label for m in at.metric][:2] == ["MTL", "STL"]
    buttons = at.get("download_button")
    assert len(buttons) == 3


def test_no_method_selected_shows_an_error_and_saves_nothing(store_copy, monkeypatch, submitted):
    store, run_id, _ = store_copy
    before = _evaluation_ids(store, run_id)
    at = _evaluation_page(store.root, monkeypatch)
    at.multiselect(key="methods").set_value([]).run()
    assert not at.exception
    assert any("no method selected" in e.value for e in at.error)
    assert not [b for b in at.button if b.key == "launch"]  # nothing to press
    assert _evaluation_ids(store, run_id) == before and not submitted


def test_launch_saves_the_spec_from_the_widgets_and_submits_one_job(store_copy, monkeypatch, submitted):
    store, run_id, _ = store_copy
    before = _evaluation_ids(store, run_id)
    at = _evaluation_page(store.root, monkeypatch)
    at.slider(key="eval_k").set_value(4)
    at.slider(key="eval_fuzziness").set_value(1.5)
    at.selectbox(key="combination").set_value("logits")
    at.multiselect(key="methods").set_value(["stg", "mtl"])
    at.number_input(key="eval_epochs").set_value(1)
    at.run()
    assert at.query_params["k"] == "4" and at.query_params["F"] == "1.5" and at.query_params["comb"] == "logits"
    at.button(key="launch").click().run()
    assert not at.exception and not at.error
    new = sorted(set(_evaluation_ids(store, run_id)) - set(before))
    assert len(new) == 1 and submitted == [jobs.Job(run_id, new[0])]
    spec = load_evaluation_spec(store, run_id, new[0])
    assert (spec.n_clusters, spec.fuzziness, spec.combination, spec.epochs) == (4, 1.5, "logits", 1)
    assert spec.methods == ("mtl", "stg")  # canonical order
    assert at.selectbox(key="evaluation").value == new[0] and at.query_params["eval"] == new[0]
    assert any(new[0] in s.value for s in at.success)
    assert any("created" in p.proto.text for p in at.get("progress"))  # saved, submitted (here: recorded)
    assert at.button(key="resume").proto.label == "Start"


def test_failed_and_interrupted_evaluations_show_their_error_and_can_resume(store_copy, monkeypatch, submitted):
    store, run_id, _ = store_copy
    eid = save_evaluation_spec(EvaluationSpec(run_id, 2, epochs=1, methods=("mtl",)), store)
    status = evaluation_dir(store, run_id, eid) / "status.json"
    update_status_file(status, state="failed", error="RuntimeError: out of memory")
    at = _evaluation_page(store.root, monkeypatch)
    at.selectbox(key="evaluation").set_value(eid).run()
    assert not at.exception
    assert any("out of memory" in e.value for e in at.error)
    assert any("appear here when the evaluation has finished" in i.value for i in at.info)
    update_status_file(status, state="interrupted", error="stopped: SIGTERM")
    at.run()
    assert any("SIGTERM" in w.value for w in at.warning)
    at.button(key="resume").click().run()
    assert submitted == [jobs.Job(run_id, eid)]


def test_running_evaluation_shows_progress_and_cancel(store_copy, monkeypatch, polling):
    store, run_id, _ = store_copy
    eid = save_evaluation_spec(EvaluationSpec(run_id, 2, epochs=1, methods=("mtl",)), store)
    monkeypatch.setattr(locks, "is_worker", lambda pid: True)  # a live worker, without starting one
    cancelled = []
    monkeypatch.setattr(jobs, "cancel", lambda store, job: cancelled.append(job) or "cancelling")
    update_status_file(evaluation_dir(store, run_id, eid) / "status.json", state="running", pid=12345,
                       progress=0.25, message="mtl: epoch 1/1")
    at = _evaluation_page(store.root, monkeypatch)
    at.selectbox(key="evaluation").set_value(eid).run()
    assert not at.exception and not at.error
    (bar,) = at.get("progress")
    assert "running" in bar.proto.text and "mtl: epoch 1/1" in bar.proto.text
    assert ("status_panel", 2) in polling.fragments and polling.reruns == []  # polled in a fragment
    at.button(key="cancel").click().run()
    assert cancelled == [jobs.Job(run_id, eid)]


def test_f1_curves_figure():
    from app.charts import METHOD_LABELS, f1_curves, method_color

    mean_f1 = {"stg": {"train": [0.5, 0.7, 0.8], "test": [0.4, 0.6, 0.65]},
               "mtl": {"train": [0.5, 0.6, 0.7], "test": [0.45, 0.55, 0.6]}}
    fig = f1_curves(mean_f1)
    assert [t.name for t in fig.data] == ["STG-MTL soft · test", "STG-MTL soft · train", "MTL · test", "MTL · train"]
    assert [t.line.dash for t in fig.data] == ["solid", "dash", "solid", "dash"]  # test solid, train dashed
    assert list(fig.data[0].x) == [1, 2, 3] and list(fig.data[1].y) == [0.5, 0.7, 0.8]
    assert fig.data[0].line.color == fig.data[1].line.color == method_color("stg") != method_color("mtl")
    assert f1_curves({"stg": mean_f1["stg"]}).data[0].line.color == method_color("stg")  # same colour alone
    assert list(f1_curves(mean_f1, epochs=[2, 4, 6]).data[0].x) == [2, 4, 6]
    assert set(METHOD_LABELS) == set(METHODS)
    assert len({method_color(m) for m in METHODS}) == len(METHODS)
    with pytest.raises(ValueError, match="'mtl': train F1 needs one value per epoch"):
        f1_curves({"stg": mean_f1["stg"], "mtl": {"train": [0.5], "test": [0.4, 0.5, 0.6]}})
    with pytest.raises(ValueError, match="no method"):
        f1_curves({})


def test_k_and_f_come_from_the_url_or_the_clustering_page(evaluated, monkeypatch):
    store, run_id, _ = evaluated
    monkeypatch.setenv("STG_STORE", str(store.root))
    at = AppTest.from_file(APP_SCRIPT, default_timeout=60).run()
    at.switch_page("../pages/clustering.py").run()
    at.slider(key="k").set_value(5).run()
    at.slider(key="fuzziness").set_value(1.3).run()
    at.switch_page("../pages/evaluation.py").run()
    assert not at.exception
    assert at.slider(key="eval_k").value == 5 and at.slider(key="eval_fuzziness").value == 1.3

    shared = AppTest.from_file(APP_SCRIPT, default_timeout=60)  # a link to the page: the URL wins
    shared.query_params.update({"k": "6", "F": "2.5", "comb": "logits"})
    shared.run().switch_page("../pages/evaluation.py").run()
    assert not shared.exception
    assert shared.slider(key="eval_k").value == 6 and shared.slider(key="eval_fuzziness").value == 2.5
    assert shared.selectbox(key="combination").value == "logits"


def test_claims_panel_reports_the_f1_claim_from_the_runs_evaluation(evaluated, monkeypatch):
    """With a finished evaluation (STG-MTL, MTL and STL), the F1 claim gets a verdict and its
    numbers on the Overview and on Clustering — no longer "not applicable"."""
    store, run_id, results = evaluated
    final = {m: results["methods"][m]["mean_f1"]["test"][-1] for m in ("stg", "mtl", "stl")}
    expected = "✓ holds" if final["stg"] >= max(final["mtl"], final["stl"]) else "✗ does not hold"
    monkeypatch.setenv("STG_STORE", str(store.root))
    at = AppTest.from_file(APP_SCRIPT, default_timeout=60).run()
    for page in ("overview", "clustering"):
        if page != "overview":
            open_tab(at.switch_page(f"../pages/{page}.py").run(), "Paper's claims")
        assert not at.exception
        claims = at.table[-1].value.reset_index().set_index("claim")
        row = claims.loc["STG-MTL's test F1 beats MTL's and STL's"]
        assert row["verdict"] == expected, page
        assert f"STG-MTL {final['stg']:.3f}, MTL {final['mtl']:.3f}, STL {final['stl']:.3f}" in row["numbers"]


def test_f1_claim_of_another_grouping_is_not_applicable_and_one_click_evaluates_it(evaluated, submitted,
                                                                                      monkeypatch):
    """At k = 4 the run's only evaluation (k = 3) is of another grouping: the F1 claim says which
    settings that one used and a button launches the evaluation of the grouping on display."""
    from stg_core.evaluation import EvaluationSpec

    store, run_id, _ = evaluated
    monkeypatch.setenv("STG_STORE", str(store.root))
    at = AppTest.from_file(APP_SCRIPT, default_timeout=60).run()
    open_tab(at.switch_page("../pages/clustering.py").run(), "Paper's claims")
    at.slider(key="k").set_value(4).run()
    assert not at.exception
    row = at.table[-1].value.reset_index().set_index("claim").loc["STG-MTL's test F1 beats MTL's and STL's"]
    assert row["verdict"] == "— not applicable"
    assert "the newest evaluation used k = 3, F = 2.00, raw data maps, data-map epochs 1–2" in row["numbers"]
    assert row["computed on"] == "k = 4, F = 2.00, raw data maps, data-map epochs 1–2"
    at.button(key="claims_evaluate").click().run()
    expected = EvaluationSpec(run_id, 4).evaluation_id()
    assert [j.evaluation_id for j in submitted] == [expected]
    shutil.rmtree(store.run_dir(run_id) / "evaluations" / expected)  # the shared store keeps one evaluation
