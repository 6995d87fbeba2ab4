"""The Clustering page, rendered headless with AppTest."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from stg_core.config import TrainConfig, spec_from_preset
from stg_core.store import ArtifactStore
from stg_core.training import train_run

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


def _clustering_page(store_root, monkeypatch) -> AppTest:
    monkeypatch.setenv("STG_STORE", str(store_root))
    at = AppTest.from_file(MAIN, default_timeout=60).run()
    return at.switch_page("../pages/clustering.py").run()


def test_clustering_page_without_runs(tmp_path, monkeypatch):
    at = _clustering_page(tmp_path / "empty", monkeypatch)
    assert not at.exception
    assert any("No run with recorded data maps" in i.value for i in at.info)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = ArtifactStore(tmp_path_factory.mktemp("store"))
    train_run(spec_from_preset("digits-g2", subset=300, test_subset=80, train=TrainConfig(epochs=3)), store)
    return store


def test_moving_k_and_f_changes_the_memberships(store, monkeypatch):
    at = _clustering_page(store.root, monkeypatch)
    assert not at.exception
    table = at.dataframe[0].value
    assert table.shape == (15, 1 + 3) and set(table["cluster"]) <= {0, 1, 2}
    at.slider(key="k").set_value(5).run()
    assert not at.exception
    table5 = at.dataframe[0].value
    assert table5.shape == (15, 1 + 5)
    at.slider(key="fuzziness").set_value(1.2).run()
    sharper = at.dataframe[0].value
    assert sharper.iloc[:, 1:].max(axis=1).mean() > table5.iloc[:, 1:].max(axis=1).mean()  # F near 1: harder
    assert [at.query_params["run"]] == store.run_ids()  # the URL reproduces the view
    assert any("no known super-groups" in c.value for c in at.caption)


def test_no_epoch_selected_shows_an_error(store, monkeypatch):
    at = _clustering_page(store.root, monkeypatch)
    at.multiselect(key="epochs").set_value([]).run()
    assert not at.exception
    assert any("at least one epoch" in e.value for e in at.error)


def test_membership_heatmap_orders_tasks_by_cluster_and_keeps_names_as_labels():
    import numpy as np

    from app.charts import membership_heatmap

    m = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    fig = membership_heatmap(m, ["0", "1", "2", "3"])
    assert list(fig.data[0].y) == ["1", "3", "0", "2"]  # cluster 0 by membership, then cluster 1
    assert fig.layout.yaxis.type == "category"
