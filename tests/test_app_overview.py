"""The Overview page: explanation, live fuzziness example, demo button, claims panel."""

import pytest
from streamlit.testing.v1 import AppTest

from app.state import APP_SCRIPT
from stg_core import jobs
from stg_core.config import TrainConfig, spec_from_preset
from stg_core.demo import DEMOS
from stg_core.store import ArtifactStore
from stg_core.training import train_run



def _overview(store_root, monkeypatch) -> AppTest:
    monkeypatch.setenv("STG_STORE", str(store_root))
    return AppTest.from_file(APP_SCRIPT, default_timeout=120).run()


def test_overview_is_the_landing_page_and_works_without_runs(tmp_path, monkeypatch):
    at = _overview(tmp_path / "store", monkeypatch)
    assert not at.exception and not at.error
    assert at.title[0].value == "STG-MTL Studio"
    assert any("Run the demo" in i.value for i in at.info)
    assert [b.label for b in at.button][0] == "Run the demo"
    assert {p.proto.page.rsplit("/", 1)[-1] for p in at.get("page_link")} >= {
        "experiment", "training", "clustering", "evaluation"}


def test_fuzziness_example_reacts_to_the_slider(tmp_path, monkeypatch):
    at = _overview(tmp_path / "store", monkeypatch)

    def middle_share():  # membership of the in-between task in its nearest cluster
        fig = at.get("plotly_chart")[-1].proto.spec
        import json
        bars = json.loads(fig)["data"]
        return max(float(bar["text"][1]) for bar in bars)

    soft = middle_share()
    at.slider(key="example_F").set_value(1.1).run()
    hard = middle_share()
    at.slider(key="example_F").set_value(5.0).run()
    softest = middle_share()
    assert softest < soft < hard and hard > 0.9


def test_demo_button_launches_the_digits_demo_and_guides_the_user(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(jobs, "submit", lambda store, job, **kw: calls.append(job) or "running")
    at = _overview(tmp_path / "store", monkeypatch)
    at.button(key="demo_digits").click().run()
    assert not at.exception
    demo = DEMOS["digits"]
    assert calls == [jobs.Job(demo.spec.run_id())]
    assert ArtifactStore(tmp_path / "store").load_spec(calls[0].run_id) == demo.spec
    assert (demo.spec.preset, demo.spec.train.epochs) == ("digits-g2", 40)
    assert at.title[0].value == "Training"
    assert any("Demo · step 1 of 3" in m.value for m in at.sidebar.markdown)


@pytest.fixture(scope="module")
def g2_run(tmp_path_factory):
    store = ArtifactStore(tmp_path_factory.mktemp("store"))
    run_id = train_run(spec_from_preset("digits-g2", subset=500, train=TrainConfig(epochs=4)), store)
    return store, run_id


def test_claims_panel_shows_verdicts_on_a_finished_run(g2_run, monkeypatch):
    """The panel shows the engine's verdicts on the grouping it names (k = 3, F = 2, raw, every epoch)."""
    from stg_core.claims import GroupingSettings, run_claims
    from stg_core.clustering import cluster_tasks
    from stg_core.run_vectors import load_reduced_task_vectors

    store, run_id = g2_run
    at = _overview(store.root, monkeypatch)
    assert not at.exception
    table = at.table[-1].value.reset_index()
    verdicts = dict(zip(table["claim"], table["verdict"]))
    grouping = GroupingSettings(3, 2.0, epochs=tuple(store.recorded_epochs(run_id)))
    reduced, n_features = load_reduced_task_vectors(store, run_id)
    memberships = cluster_tasks(reduced, 3, 2.0, n_features=n_features).memberships
    expected = {c.title: c for c in run_claims(store, run_id, grouping, memberships, reduced, n_features)}
    icons = {"holds": "✓ holds", "does not hold": "✗ does not hold", "not applicable": "— not applicable"}
    assert verdicts == {title: icons[c.verdict] for title, c in expected.items()}
    assert dict(zip(table["claim"], table["computed on"]))["Exact complements get the same memberships"] == \
        "k = 3, F = 2.00, raw data maps, data-map epochs 1–4"
    assert grouping.describe() in at.caption[-1].value
    assert verdicts["Class tasks cluster along the known super-groups"] == "— not applicable"  # digits: none
    assert verdicts["STG-MTL's test F1 beats MTL's and STL's"] == "— not applicable"  # no evaluation yet
    assert table["paper"].str.startswith("Section").all()


@pytest.mark.parametrize("fashion_here", [True, False])
def test_second_demo_on_fashion_mnist_only_when_its_files_are_here(tmp_path, monkeypatch, fashion_here):
    import stg_core.demo as demo_module
    from stg_core.data import DatasetStatus

    def status(name, root=None):
        return DatasetStatus(name, name == "digits" or fashion_here, None, "")

    monkeypatch.setattr(demo_module, "dataset_status", status)
    calls = []
    monkeypatch.setattr(jobs, "submit", lambda store, job, **kw: calls.append(job) or "queued")
    at = _overview(tmp_path / "store", monkeypatch)
    keys = [b.key for b in at.button if b.key and b.key.startswith("demo_")]
    assert keys == (["demo_digits", "demo_fashion_mnist"] if fashion_here else ["demo_digits"])
    if fashion_here:
        at.button(key="demo_fashion_mnist").click().run()
        assert calls == [jobs.Job(DEMOS["fashion_mnist"].spec.run_id())]
        assert DEMOS["fashion_mnist"].spec.preset == "fashion_mnist-g2"
