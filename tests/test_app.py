"""The app's Experiment and Training pages and its sidebar, rendered headless with AppTest."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.state import APP_SCRIPT
from app.task_builder import apply_edits, new_task, to_tasks
from stg_core import jobs, locks
from stg_core.config import TrainConfig, spec_from_preset
from stg_core.store import ArtifactStore
from stg_core.training import train_run
from tests.echarts_options import chart_keys, chart_option



def _app(store_root, monkeypatch, page: str = "experiment") -> AppTest:
    monkeypatch.setenv("STG_STORE", str(store_root))
    at = AppTest.from_file(APP_SCRIPT, default_timeout=120).run()
    return at.switch_page(f"../pages/{page}.py").run()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    store = ArtifactStore(tmp_path_factory.mktemp("store"))
    run_id = train_run(spec_from_preset("digits-g2", subset=300, test_subset=80, train=TrainConfig(epochs=3)), store)
    return store, run_id


# ---- Experiment ---------------------------------------------------------------------------

def test_experiment_page_works_without_runs(tmp_path, monkeypatch):
    at = _app(tmp_path / "store", monkeypatch)
    assert not at.exception and not at.error
    assert at.title[0].value == "Experiment"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Tasks"] == "10"  # digits-g1: one task per class
    assert "Estimated training time" in metrics
    assert any("No run yet" in c.value for c in at.sidebar.caption)


def test_launch_saves_the_spec_submits_a_job_and_activates_the_run(tmp_path, monkeypatch, submitted):
    at = _app(tmp_path / "store", monkeypatch)
    at.selectbox(key="preset").set_value("digits-g2")
    at.number_input(key="epochs").set_value(2)
    at.number_input(key="subset").set_value(200).run()
    run_id = at.metric[2].value
    at.button(key="launch").click().run()
    assert not at.exception
    assert submitted == [jobs.Job(run_id)]
    store = ArtifactStore(tmp_path / "store")
    spec = store.load_spec(run_id)
    assert (spec.preset, spec.train.epochs, spec.subset, len(spec.tasks)) == ("digits-g2", 2, 200, 15)
    assert "versions" in (store.run_dir(run_id) / "spec.json").read_text()
    assert spec.train.feature_dim is None  # the paper's 128 units, left out of the run id
    assert at.sidebar.selectbox(key="active_run").value == run_id
    assert at.query_params["run"] == run_id
    assert any(run_id in s.value for s in at.success)


def test_feature_units_reach_the_spec_and_change_the_run(tmp_path, monkeypatch, submitted):
    at = _app(tmp_path / "store", monkeypatch)
    at.selectbox(key="preset").set_value("digits-g2")
    at.number_input(key="subset").set_value(200).run()
    default_id = at.metric[2].value
    at.number_input(key="feature_dim").set_value(8).run()
    assert not at.exception and not at.error and at.metric[2].value != default_id
    at.button(key="launch").click().run()
    assert ArtifactStore(tmp_path / "store").load_spec(submitted[0].run_id).train.feature_dim == 8
    at.selectbox(key="model").set_value("resnet18").run()  # ResNet-18 keeps its 512 features
    assert at.number_input(key="feature_dim").disabled and not at.error


def test_an_identical_finished_run_is_reused(trained, monkeypatch):
    store, run_id = trained
    at = _app(store.root, monkeypatch)
    at.selectbox(key="preset").set_value("digits-g2")
    at.number_input(key="epochs").set_value(3)
    at.number_input(key="subset").set_value(300)
    at.number_input(key="test_subset").set_value(80).run()
    assert at.metric[2].value == run_id
    assert any("already finished" in s.value for s in at.success)


def _custom(at: AppTest) -> AppTest:
    return at.radio(key="task_source").set_value("Custom").run()


def test_task_builder_adds_class_random_and_flipped_tasks(tmp_path, monkeypatch, submitted):
    at = _custom(_app(tmp_path / "store", monkeypatch))
    assert any("No task yet" in i.value for i in at.info)
    at.multiselect(key="new_classes").set_value(["0", "6", "8"])
    at.text_input(key="new_name").set_value("Round").run()
    at.button(key="add_classes").click().run()
    at.button(key="add_random").click().run()
    at.button(key="add_random").click().run()
    at.button(key="add_flipped").click().run()
    assert not at.exception and not at.error
    assert at.metric[0].value == "4"
    table = at.data_editor[0].value if hasattr(at, "data_editor") else None
    if table is not None:
        assert table["task"].tolist() == ["Round", "Random", "Random 2", "Downside"]
    at.button(key="launch").click().run()
    spec = ArtifactStore(tmp_path / "store").load_spec(submitted[0].run_id)
    assert [(t.name, t.kind, t.seed) for t in spec.tasks] == [
        ("Round", "classes", 0), ("Random", "random", 0), ("Random 2", "random", 1), ("Downside", "flipped", 0)]
    assert spec.preset is None


@pytest.mark.parametrize("classes, name, message", [
    ([], "", "pick at least one class"),
    ([str(d) for d in range(10)], "All", "every class as positive"),
])
def test_bad_task_definitions_show_an_error_and_launch_nothing(tmp_path, monkeypatch, submitted, classes, name, message):
    at = _custom(_app(tmp_path / "store", monkeypatch))
    at.multiselect(key="new_classes").set_value(classes)
    at.text_input(key="new_name").set_value(name).run()
    at.button(key="add_classes").click().run()
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert not any(b.key == "launch" for b in at.button)
    assert submitted == [] and ArtifactStore(tmp_path / "store").run_ids() == []


def test_duplicate_task_name_is_refused(tmp_path, monkeypatch):
    at = _custom(_app(tmp_path / "store", monkeypatch))
    for _ in range(2):
        at.multiselect(key="new_classes").set_value(["1"])
        at.text_input(key="new_name").set_value("One").run()
        at.button(key="add_classes").click().run()
    assert any("already exists" in e.value for e in at.error)
    assert at.metric[0].value == "1"


def test_task_file_upload_good_and_bad(tmp_path, monkeypatch):
    at = _custom(_app(tmp_path / "store", monkeypatch))
    at.file_uploader(key="tasks_file").set_value(("t.json", b"{not json", "application/json")).run()
    at.button(key="add_file").click().run()
    assert any("task file" in e.value for e in at.error)
    good = b'[{"name": "Round", "classes": ["0", "6", "8", "9"]}, {"name": "Noise", "kind": "random"}]'
    at.file_uploader(key="tasks_file").set_value(("t.json", good, "application/json")).run()
    at.button(key="add_file").click().run()
    assert not at.error and at.metric[0].value == "2"


def test_task_table_renames_and_removes():
    rows = [new_task("classes", [], ["1"])]
    rows.append(new_task("random", rows))
    rows.append(new_task("classes", rows, ["2", "3"], "Two or three"))
    edited = apply_edits(rows, {"edited_rows": {0: {"task": " One "}}, "deleted_rows": [1], "added_rows": []})
    assert [t.name for t in to_tasks(edited)] == ["One", "Two or three"]
    assert apply_edits(rows, None) == rows


def _npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_npz_upload_is_validated_before_it_reaches_the_store(tmp_path, monkeypatch):
    at = _app(tmp_path / "store", monkeypatch)
    at.selectbox(key="dataset").set_value("npz").run()
    assert any("Upload an .npz" in i.value for i in at.info)
    bad = _npz_bytes(x=np.zeros((20, 8, 8), np.float32), y=np.zeros(20, np.int64))
    at.file_uploader(key="npz_upload").set_value(("bad.npz", bad, "application/octet-stream")).run()
    assert not at.exception
    assert any("uint8" in e.value for e in at.error), [e.value for e in at.error]
    assert not (tmp_path / "store" / "uploads").exists() or not any((tmp_path / "store" / "uploads").iterdir())
    rng = np.random.default_rng(0)
    good = _npz_bytes(x=rng.integers(0, 255, (60, 8, 8), dtype=np.uint8), y=np.arange(60) % 3)
    at.file_uploader(key="npz_upload").set_value(("good.npz", good, "application/octet-stream")).run()
    assert not at.exception and not at.error
    assert len(list((tmp_path / "store" / "uploads").iterdir())) == 1


def test_data_folder_outside_the_allowed_roots_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("STG_DATA", str(tmp_path / "data"))
    at = _app(tmp_path / "store", monkeypatch)
    at.selectbox(key="dataset").set_value("fashion_mnist")
    at.text_input(key="data_root").set_value("/etc").run()
    assert not at.exception
    assert any("outside the allowed data folders" in e.value for e in at.error)


def test_data_folders_inside_the_allowed_root_without_a_dataset_or_with_a_corrupt_one(tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("STG_DATA", str(data))
    (data / "empty").mkdir(parents=True)
    store = tmp_path / "store"
    at = _app(store, monkeypatch)
    at.selectbox(key="dataset").set_value("cifar10")  # read from the typed folder only: no system copy
    for folder, message in ((data / "empty", "cifar10** is not available here"),
                            (data / "does-not-exist", "is not an existing folder")):
        at.text_input(key="data_root").set_value(str(folder)).run()
        assert not at.exception
        assert at.error and message in at.error[0].value, folder
    batches = data / "corrupt" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in ["batches.meta", "test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]:
        (batches / name).write_bytes(b"not a CIFAR batch")
    at.text_input(key="data_root").set_value(str(data / "corrupt")).run()
    assert not at.exception and at.error, "a corrupt dataset is an error, not a traceback"
    assert not (store / "runs").exists() or not any((store / "runs").iterdir())  # nothing stored


# ---- Training ------------------------------------------------------------------------------

def test_training_page_without_runs(tmp_path, monkeypatch):
    at = _app(tmp_path / "store", monkeypatch, "training")
    assert not at.exception
    assert any("No training run yet" in i.value for i in at.info)


def test_training_page_shows_progress_curves_and_data_maps(trained, monkeypatch):
    store, run_id = trained
    at = _app(store.root, monkeypatch, "training")
    assert not at.exception and not at.error
    assert at.sidebar.selectbox(key="active_run").value == run_id
    assert "completed · epoch 3/3" in at.get("progress")[0].proto.text
    task = at.selectbox(key="task").value
    # ECharts only: the page loads no Plotly bundle (app/training_charts.py says why)
    assert chart_keys(at) == ["curves", f"datamap_{task}"] and not at.get("plotly_chart")
    curves = chart_option(at, "curves")
    assert [s["name"] for s in curves["series"]] == ["train loss", "train F1", "test loss", "test F1"]
    metrics = store.read_metrics(run_id)
    assert [p[1] for p in curves["series"][2]["data"]] == [round(r["test_loss"], 4) for r in metrics]
    assert chart_option(at, f"datamap_{task}")["baseOption"]["timeline"]["data"] == ["1", "2", "3"]
    assert at.radio(key="color_by").value == "task label" and "class" in at.radio(key="color_by").options
    at.selectbox(key="task2").set_value("Random").run()
    assert chart_keys(at) == ["curves", f"datamap_{task}", "datamap_Random"]  # two data maps side by side
    assert at.query_params["task"] == at.selectbox(key="task").value


def test_training_page_shows_a_failed_runs_error_and_resumes(trained, monkeypatch, submitted):
    store, run_id = trained
    status = store.read_status(run_id)
    store.write_status(run_id, state="failed", error="RuntimeError: out of memory")
    try:
        at = _app(store.root, monkeypatch, "training")
        assert not at.exception
        assert any("out of memory" in e.value for e in at.error)
        at.button(key="resume").click().run()
        assert submitted == [jobs.Job(run_id)]
    finally:
        store.write_status(run_id, state=status["state"], error=None)


def test_datamap_timeline_has_an_option_per_epoch_and_a_series_per_label():
    from app.charts import subsample
    from app.training_charts import datamap_timeline

    rng = np.random.default_rng(0)
    conf, var = rng.random((3, 50)), rng.random((3, 50)) / 2
    classes = np.array(["cat", "dog"] * 25)
    option = datamap_timeline(conf, var, [1, 2, 5], classes, "class", categorical=True, title="Living being")
    base, frames = option["baseOption"], option["options"]
    assert base["timeline"]["data"] == ["1", "2", "5"] and base["timeline"]["currentIndex"] == 2  # last epoch first
    assert [s["name"] for s in base["series"]] == ["cat", "dog"] and base["legend"]["data"] == ["cat", "dog"]
    assert len(frames) == 3 and frames[1]["title"]["text"] == "Living being · epoch 2"
    json.dumps(option)  # what st.echarts_chart sends
    for i in range(3):  # each epoch's option points the series at that epoch's columns
        for s, frame_series, label in zip(base["series"], frames[i]["series"], ["cat", "dog"]):
            drawn = np.array(base["dataset"][s["datasetIndex"]]["source"])
            x, y = frame_series["encode"]["x"], frame_series["encode"]["y"]
            np.testing.assert_allclose(drawn[:, x], var[i, classes == label], atol=5e-4)  # 3 decimals
            np.testing.assert_allclose(drawn[:, y], conf[i, classes == label], atol=5e-4)
    assert base["series"][0]["encode"] == frames[2]["series"][0]["encode"]  # drawn first: the last epoch
    continuous = datamap_timeline(conf, var, [1, 2, 5], np.linspace(0, 1, 50), "correctness", categorical=False,
                                  start=2)
    base, frames = continuous["baseOption"], continuous["options"]
    assert len(base["series"]) == 1 and base["timeline"]["currentIndex"] == 1
    source = np.array(base["dataset"][0]["source"])
    assert base["visualMap"][0]["dimension"] == 0 and base["dataset"][0]["dimensions"][0] == "correctness"
    np.testing.assert_allclose(source[:, 0], np.linspace(0, 1, 50), atol=5e-4)  # the colour value
    np.testing.assert_allclose(source[:, base["series"][0]["encode"]["x"]], var[1], atol=5e-4)
    with pytest.raises(ValueError, match="do not match"):
        datamap_timeline(conf, var, [1, 2], classes, "class", categorical=True)
    keep = subsample(50_000)
    assert len(keep) == 10_000 and np.array_equal(keep, subsample(50_000)) and np.all(np.diff(keep) > 0)


def test_datamap_at_scale_is_a_stratified_sample_over_a_density_of_all_samples():
    """50,000 samples of a one-vs-rest task (1% positives): 2,000 points, the positives among
    them, coloured by the task's label with the class on hover; every sample in the density
    layer; each epoch's option carries only what moves."""
    from app.charts import datamap_density, subsample
    from app.training_charts import datamap_timeline

    rng = np.random.default_rng(1)
    n, epochs = 50_000, list(range(1, 6))
    labels = (rng.random(n) < 0.01).astype(np.uint8)
    keep = subsample(n, 2_000, labels=labels)
    assert len(keep) == 2_000 and labels[keep].sum() == labels.sum() and np.array_equal(
        keep, subsample(n, 2_000, labels=labels))
    conf, var = rng.random((5, n)), rng.random((5, n)) / 2
    density = datamap_density(conf, var)
    assert density.shape == (5, 50, 50) and density.dtype == np.uint8 and density.max() == 255
    counts, _, _ = np.histogram2d(conf[0], var[0], bins=(np.linspace(0, 1, 51), np.linspace(0, 0.5, 51)))
    np.testing.assert_array_equal(density[0] > 0, counts > 0)  # every sample counted
    color = np.where(labels[keep] > 0, "positive", "negative")
    hover = [f"class {c}" for c in range(len(keep))]
    option = datamap_timeline(conf[:, keep], var[:, keep], epochs, color, "label", categorical=True, hover=hover,
                              density=density)
    base = option["baseOption"]
    assert [s["type"] for s in base["series"]] == ["heatmap", "scatter", "scatter"]
    assert [s["name"] for s in base["series"][1:]] == ["positive", "negative"]
    cells = np.array(base["dataset"][0]["source"])
    positive = base["dataset"][base["series"][1]["datasetIndex"]]
    assert [row[0] for row in positive["source"]] == [h for h, c in zip(hover, color) if c == "positive"]  # on hover
    for i, frame in enumerate(option["options"]):
        value = frame["series"][0]["encode"]["value"]
        drawn = np.zeros((50, 50))
        drawn[cells[:, 1], cells[:, 0]] = cells[:, value]
        np.testing.assert_array_equal(drawn, density[i])  # every non-empty cell, row = confidence bin
        assert frame["visualMap"] == [{"dimension": value}]
        assert all(set(s) == {"encode"} for s in frame["series"])  # an epoch's option carries no data
    # every value once: about 12 bytes per point and epoch, 4 per density cell and epoch
    size = len(json.dumps(option, separators=(",", ":")))
    assert size < len(epochs) * (12 * len(keep) + 4 * 50 * 50) + 30 * len(keep)
    assert size * 50 / len(epochs) < 3_000_000  # 5 epochs here: 50 stay under 3 MB


def test_settings_that_leave_a_task_without_positives_are_refused_and_nothing_stored_changes(trained, monkeypatch,
                                                                                           submitted):
    store, run_id = trained
    at = _app(store.root, monkeypatch)
    # (the landing page may add to the run's reduction cache, reduced/: derived, not stored work)
    before = {p: p.stat().st_mtime_ns for p in store.run_dir(run_id).rglob("*") if p.is_file()}
    at.selectbox(key="preset").set_value("digits-g2")
    at.number_input(key="subset").set_value(3).run()  # 3 images cannot hold a positive for every task
    assert not at.exception
    assert at.error and "positive" in at.error[0].value, [e.value for e in at.error]
    assert not any(b.key == "launch" for b in at.button) and submitted == []
    assert store.run_ids() == [run_id]
    after = {p: p.stat().st_mtime_ns for p in store.run_dir(run_id).rglob("*") if p.is_file()}
    assert {p.name for p in after if after[p] != before.get(p)} == set()


def test_active_run_survives_its_label_changing_and_page_switches(trained, monkeypatch, tmp_path):
    store, first = trained
    other = train_run(spec_from_preset("digits-g1", subset=100, train=TrainConfig(epochs=1)), store)
    try:
        at = _app(store.root, monkeypatch, "training")
        chosen = max(first, other)  # not the first option: a reset would show
        at.sidebar.selectbox(key="active_run").set_value(chosen).run()
        assert at.sidebar.selectbox(key="active_run").value == chosen
        status = store.read_status(chosen)
        store.write_status(chosen, state="running", epochs_done=0)  # the option's label changes
        at.switch_page("../pages/clustering.py").run()
        assert at.sidebar.selectbox(key="active_run").value == chosen
        store.write_status(chosen, **{k: status[k] for k in ("state", "epochs_done")})
        at.switch_page("../pages/evaluation.py").run()
        assert at.sidebar.selectbox(key="active_run").value == chosen and not at.exception
    finally:
        import shutil
        shutil.rmtree(store.run_dir(other))
        with store._index() as index:
            index.delete(other)


def test_running_training_shows_epoch_eta_cancel_and_the_worker_log(trained, monkeypatch):
    store, run_id = trained
    status = store.read_status(run_id)
    log = jobs.Job(run_id).log_path(store)
    monkeypatch.setattr(locks, "is_worker", lambda pid: True)  # a live worker, without starting one
    cancelled = []
    monkeypatch.setattr(jobs, "cancel", lambda store, job: cancelled.append(job) or "cancelling")
    store.write_status(run_id, state="running", pid=12345, epochs_done=1, progress=0.5, eta_seconds=42.0)
    log.write_text("epoch 1/3 done\n")
    try:
        at = _app(store.root, monkeypatch, "training")
        assert not at.exception and not at.error
        assert "running · epoch 1/3 · ETA 42 s" in at.get("progress")[0].proto.text
        assert any(e.label == "Worker log" for e in at.expander)
        assert any("epoch 1/3 done" in c.value for c in at.code)
        assert not any(b.key == "resume" for b in at.button)  # running: cancel only
        at.button(key="cancel").click().run()
        assert cancelled == [jobs.Job(run_id)]
    finally:
        log.unlink(missing_ok=True)
        store.write_status(run_id, **{k: status.get(k) for k in ("state", "pid", "epochs_done", "progress",
                                                                 "eta_seconds")})


@pytest.mark.parametrize("state, run_every", [("running", 2), ("completed", None)])
def test_training_progress_polls_in_a_fragment_not_by_rerunning_the_page(trained, monkeypatch, polling, state,
                                                                       run_every):
    """Live progress is one ``st.fragment(run_every=2)`` while the run is active (Streamlit then
    re-runs that function alone), never a polling loop of full-page ``st.rerun`` calls; a
    finished run registers no timer at all."""
    store, run_id = trained
    status = store.read_status(run_id)
    monkeypatch.setattr(locks, "is_worker", lambda pid: True)
    if state == "running":
        store.write_status(run_id, state="running", pid=12345, epochs_done=1, progress=0.5, eta_seconds=42.0)
    try:
        at = _app(store.root, monkeypatch, "training")
        assert not at.exception
        assert ("progress_panel", run_every) in polling.fragments
        assert f"{state} · epoch" in at.get("progress")[0].proto.text
        assert polling.reruns == []  # the state did not change: nothing asks for a full-page rerun
    finally:
        store.write_status(run_id, **{k: status.get(k) for k in ("state", "pid", "epochs_done", "progress",
                                                                 "eta_seconds")})


def test_server_binds_to_localhost_without_usage_statistics():
    import tomllib

    config = tomllib.loads((Path(APP_SCRIPT).parents[1] / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "localhost"
    assert config["browser"]["gatherUsageStats"] is False


@pytest.mark.parametrize("names, message", [(["One", "One"], "duplicate task name 'One'"), (["One", " "], "empty name")])
def test_a_table_rename_to_a_duplicate_or_empty_name_is_refused(tmp_path, monkeypatch, submitted, names, message):
    # st.data_editor cannot be driven by AppTest: start from the rows a rename in the table leaves
    at = _custom(_app(tmp_path / "store", monkeypatch))
    rows = [new_task("classes", [], [str(i + 1)], name) for i, name in enumerate(["a", "b"])]
    for row, name in zip(rows, names):
        row["name"] = name
    at.session_state["custom_tasks"] = {"digits": rows}
    at.run()
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert not any(b.key == "launch" for b in at.button)
    assert submitted == [] and ArtifactStore(tmp_path / "store").run_ids() == []


def test_training_heading_follows_the_progress_not_a_stale_index(trained, monkeypatch):
    """The heading and the progress line read the same status: while a run trains (and the
    index lags behind its status file) the heading says the epochs the progress line says."""
    import app.state

    store, run_id = trained
    monkeypatch.setattr(app.state, "refresh", lambda *args, **kwargs: None)  # no worker process behind it
    status = store.read_status(run_id)
    store.write_status(run_id, state="running", epochs_done=2, pid=None)
    with store._index() as index:  # the index row of a moment ago
        index.set(run_id, {**store.read_status(run_id), "epochs_done": 0})
    try:
        at = _app(store.root, monkeypatch, "training")
        assert not at.exception
        heading = [h.value for h in at.subheader if h.value.startswith(run_id)][0]
        assert "2/3 epochs · running" in heading and "epoch 2/3" in at.get("progress")[0].proto.text
    finally:
        store.write_status(run_id, **{k: status[k] for k in ("state", "epochs_done", "pid")})


def test_training_page_deletes_derived_results_or_the_run_after_confirmation_not_while_trained(tmp_path,
                                                                                               monkeypatch):
    from stg_core.grouping import GroupingSpec, run_grouping

    store = ArtifactStore(tmp_path / "store")
    run_id = train_run(spec_from_preset("digits-g1", subset=100, test_subset=40, train=TrainConfig(epochs=1)), store)
    run_grouping(GroupingSpec(run_id, "random", 2), store)
    at = _app(store.root, monkeypatch, "training")
    assert not at.exception
    assert "disk" in at.dataframe[0].value.columns
    assert any("on disk" in c.value for c in at.caption)
    assert at.button(key="delete_run").disabled and at.button(key="delete_derived").disabled  # confirm first
    at.checkbox(key="confirm_delete").check().run()
    with store.writer_lock(run_id):  # a trainer of this run, in any process
        at.button(key="delete_run").click().run()
    assert any(f"run {run_id} is being trained by process" in e.value for e in at.error)
    assert store.exists(run_id)
    at.button(key="delete_derived").click().run()
    assert not at.exception and store.exists(run_id) and not (store.run_dir(run_id) / "groupings").exists()
    at.checkbox(key="confirm_delete").check().run()
    at.button(key="delete_run").click().run()
    assert not at.exception and store.run_ids() == []
    assert any("No training run yet" in i.value for i in at.info)


def test_job_panel_pieces_clamp_the_progress_and_format_the_eta(tmp_path):
    import time

    from app.job_panel import clamp_fraction, eta_from_start, eta_text, log_tail

    assert [clamp_fraction(v) for v in (1.3, -0.2, 0.25, None, "x")] == [1.0, 0.0, 0.25, 0.0, 0.0]
    assert (eta_text(None), eta_text(42.4), eta_text(600)) == ("—", "42 s", "10.0 min")
    assert eta_from_start({"progress": 0.0, "started": time.time()}) is None
    assert 9 < eta_from_start({"progress": 0.5, "started": time.time() - 10}) < 11
    log = tmp_path / "worker.log"
    assert log_tail(log) is None
    log.write_text("".join(f"line {i}\n" for i in range(300)))
    assert log_tail(log, 2) == "line 298\nline 299"
