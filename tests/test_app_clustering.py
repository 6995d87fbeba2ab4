"""The Clustering page, rendered headless with AppTest."""

import json
import os
import subprocess
import sys

import pytest
from streamlit.testing.v1 import AppTest

from app.state import APP_SCRIPT
from stg_core.config import TrainConfig, spec_from_preset
from stg_core.store import ArtifactStore
from stg_core.training import train_run
from tests.echarts_options import chart_keys, chart_option, heatmap_matrix, open_tab



def _clustering_page(store_root, monkeypatch) -> AppTest:
    monkeypatch.setenv("STG_STORE", str(store_root))
    at = AppTest.from_file(APP_SCRIPT, default_timeout=60).run()
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
    assert any("no known super-groups" in c.value for c in at.caption)
    assert [t.label for t in at.tabs] == ["Memberships", "Paper's claims", "Table"]  # no known groups here
    table = open_tab(at, "Table").dataframe[0].value
    assert table.shape == (15, 1 + 3) and set(table["cluster"]) <= {0, 1, 2}
    at.slider(key="k").set_value(5).run()
    assert not at.exception
    table5 = at.dataframe[0].value
    assert table5.shape == (15, 1 + 5)
    at.slider(key="fuzziness").set_value(1.2).run()
    sharper = at.dataframe[0].value
    assert sharper.iloc[:, 1:].max(axis=1).mean() > table5.iloc[:, 1:].max(axis=1).mean()  # F near 1: harder
    assert [at.query_params["run"]] == store.run_ids()  # the URL reproduces the view


def test_the_clustering_and_training_pages_do_not_import_torch(store):
    """A fresh server's first render pays for every import: torch (seconds) is for training and
    recording, not for showing a run's clustering or data maps."""
    code = f"""
import sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({APP_SCRIPT!r}, default_timeout=120).run()
for page in ("../pages/clustering.py", "../pages/training.py"):
    at = at.switch_page(page).run()
    assert not at.exception, at.exception
    assert at.title[0].value == page.split("/")[-1][:-3].capitalize()
    assert not at.error and not at.info, "the page stopped before its figures"
    assert at.get("echarts_chart"), "the page drew no figure"  # memberships, or the data maps
print(sorted(m for m in ("torch", "torchvision") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "STG_STORE": str(store.root)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_no_epoch_selected_shows_an_error(store, monkeypatch):
    at = _clustering_page(store.root, monkeypatch)
    at.multiselect(key="epochs").set_value([]).run()
    assert not at.exception
    assert any("at least one epoch" in e.value for e in at.error)


def test_membership_heatmap_orders_tasks_by_cluster_and_keeps_names_as_labels():
    import numpy as np

    from app.cluster_charts import membership_heatmap

    m = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    option = membership_heatmap(m, ["0", "1", "2", "3"])
    assert option["yAxis"][0] == {**option["yAxis"][0], "type": "category", "data": ["1", "3", "0", "2"]}
    np.testing.assert_allclose(heatmap_matrix(option), m[[1, 3, 0, 2]])  # cluster 0 by membership, then 1
    assert option["xAxis"][0]["data"] == ["cluster 0", "cluster 1"]
    assert json.loads(json.dumps(option)) == option  # plain JSON: what st.echarts_chart sends
    with pytest.raises(ValueError, match="do not match"):
        membership_heatmap(m, ["0", "1", "2"])


# ---- known groups and the task map -----------------------------------------------------------

def _write_synthetic_run(store: ArtifactStore, n_samples: int = 200, n_epochs: int = 3) -> str:
    """A finished Fashion-MNIST G2 run (15 tasks) whose p_true is synthetic: the tasks of a known
    group share a per-sample difficulty pattern. Written as training writes a run, without training."""
    from stg_core.data import _FASHION_SUPER, FASHION_MNIST_CLASSES
    from stg_core.synthetic import write_synthetic_run

    return write_synthetic_run(store, "fashion_mnist-g2", n_samples=n_samples, n_epochs=n_epochs,
                               class_names=list(FASHION_MNIST_CLASSES), super_groups=_FASHION_SUPER,
                               image_shape=(28, 28, 1))


@pytest.fixture(scope="module")
def grouped_store(tmp_path_factory):
    store = ArtifactStore(tmp_path_factory.mktemp("grouped"))
    _write_synthetic_run(store)
    return store


def test_group_membership_bars_for_a_run_with_known_groups(grouped_store, monkeypatch):
    at = open_tab(_clustering_page(grouped_store.root, monkeypatch), "Known groups")
    assert not at.exception and not at.error
    assert [m.label for m in at.metric] == ["ARI vs known groups", "NMI vs known groups", "Purity vs known groups"]
    box = at.selectbox(key="known_group")
    assert box.options[:2] == ["tops (4 tasks)", "footwear (3 tasks)"]  # largest group first
    assert box.value == "tops" and at.query_params["group"] == "tops"
    bars = chart_option(at, "group_bars")
    assert [b["name"] for b in bars["series"]] == ["cluster 0", "cluster 1", "cluster 2"]  # one per cluster (k = 3)
    assert bars["xAxis"]["data"] == ["T-shirt/top", "Pullover", "Coat", "Shirt"]
    box.set_value("footwear").run()
    assert not at.exception
    assert chart_option(at, "group_bars")["xAxis"]["data"] == ["Sandal", "Sneaker", "Ankle boot"]
    assert at.query_params["group"] == "footwear"
    at.slider(key="k").set_value(5).run()
    assert len(chart_option(at, "group_bars")["series"]) == 5
    assert at.selectbox(key="known_group").value == "footwear"  # kept across re-clustering


def test_changing_k_recolours_the_task_map(grouped_store, monkeypatch):
    at = _clustering_page(grouped_store.root, monkeypatch)

    def colour_of_task() -> dict[str, str]:
        series = [s for s in chart_option(at, "task_map")["series"] if s["name"].startswith("cluster")]
        return {p["name"]: s["itemStyle"]["color"] for s in series for p in s["data"]}

    three = colour_of_task()
    assert len(three) == 15 and len(set(three.values())) == 3
    at.slider(key="k").set_value(5).run()
    assert not at.exception
    five = colour_of_task()
    assert len(five) == 15 and len(set(five.values())) == 5
    assert five != three
    table = open_tab(at, "Table").dataframe[0].value  # the map's colours are the table's clusters
    assert len({five[t] for t in table.index[table["cluster"] == 0]}) == 1


def test_group_membership_bars_figure():
    import numpy as np

    from app.charts import cluster_color
    from app.cluster_charts import group_membership_bars

    w = np.array([[0.1, 0.9], [0.5, 0.5], [0.7, 0.3], [0.4, 0.6], [0.2, 0.8]])
    names = ["Sneaker", "Random", "Coat", "3", "Sandal"]
    groups = {"Sneaker": "footwear", "Coat": "tops", "3": "footwear", "Sandal": "footwear"}
    option = group_membership_bars(w, names, groups, "footwear")
    assert [s["name"] for s in option["series"]] == ["cluster 0", "cluster 1"]
    assert option["xAxis"]["data"] == ["Sneaker", "3", "Sandal"]  # the group's tasks, in task order
    assert option["xAxis"]["type"] == "category"  # names like "3" stay labels
    assert option["series"][0]["data"] == [0.1, 0.4, 0.2] and option["series"][1]["data"] == [0.9, 0.6, 0.8]
    assert [s["itemStyle"]["color"] for s in option["series"]] == [cluster_color(0), cluster_color(1)]
    assert all(s["type"] == "bar" and "stack" not in s for s in option["series"])  # grouped, side by side
    with pytest.raises(ValueError, match="'hats'"):
        group_membership_bars(w, names, groups, "hats")
    with pytest.raises(ValueError, match="do not match"):
        group_membership_bars(w[:3], names, groups, "tops")


def test_cluster_colors_are_distinct_up_to_20_clusters():
    from app.charts import cluster_color

    assert len({cluster_color(j) for j in range(20)}) == 20
    assert cluster_color(20) == cluster_color(0)


def test_task_map_figure():
    import numpy as np

    from app.charts import cluster_color
    from app.cluster_charts import task_map

    reduced = np.array([[3.0, 1.0, 0.5], [2.0, -1.0, 0.1], [-2.0, 0.5, -0.3], [-3.0, -0.5, -0.3]])
    w = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.5, 0.5]])
    labels = np.array([0, 0, 1, 1])  # the last task is a tie: labels decide its colour
    centers = np.array([[2.5, 0.0, 0.3], [-2.5, 0.0, -0.3]])
    option = task_map(reduced, ["a", "b", "c", "d"], w, labels, centers=centers)
    clusters = [s for s in option["series"] if s["name"].startswith("cluster")]
    assert [s["name"] for s in clusters] == ["cluster 0 (2)", "cluster 1 (2)"]
    assert [[p["name"] for p in s["data"]] for s in clusters] == [["a", "b"], ["c", "d"]]
    assert [p["value"][:2] for p in clusters[0]["data"]] == [[3.0, 1.0], [2.0, -1.0]]  # first two columns
    assert [s["itemStyle"]["color"] for s in clusters] == [cluster_color(0), cluster_color(1)]
    size_a, size_b = (p["symbolSize"] for p in clusters[0]["data"])
    opacity_c, opacity_d = (p["itemStyle"]["opacity"] for p in clusters[1]["data"])
    assert size_a > size_b and opacity_c > opacity_d  # larger membership: bigger, more opaque
    assert opacity_d == pytest.approx(0.4)  # spread evenly over the clusters: faintest
    centroids = option["series"][-1]
    assert centroids["name"] == "centroids" and [p["value"] for p in centroids["data"]] == [[2.5, 0.0], [-2.5, 0.0]]
    total = (reduced ** 2).sum()
    assert f"{(reduced[:, 0] ** 2).sum() / total:.0%}" in option["xAxis"]["name"]
    assert clusters[0]["label"]["show"] is True
    assert task_map(reduced, list("abcd"), w, show_names=False)["series"][0]["label"]["show"] is False
    line = task_map(reduced[:, :1], list("abcd"), w)  # a one-column reduction: second axis at 0
    assert all(p["value"][1] == 0 for s in line["series"] for p in s["data"])
    assert [s["name"] for s in task_map(reduced, list("abcd"), w)["series"]] == ["cluster 0 (3)", "cluster 1 (1)"]
    with pytest.raises(ValueError, match="one row per task"):
        task_map(reduced[:3], list("abcd"), w)


def test_reduction_columns_are_principal_component_scores():
    # why task_map needs no PCA of its own: the reduction's first columns are PCA scores
    import numpy as np
    from sklearn.decomposition import PCA

    from stg_core.clustering import reduce_task_vectors

    x = np.random.default_rng(0).normal(size=(12, 300)) * np.linspace(3, 0.1, 300)
    reduced = reduce_task_vectors(x)
    pca = PCA(n_components=2).fit_transform(x)
    for a in range(2):
        sign = np.sign(reduced[0, a] * pca[0, a])
        np.testing.assert_allclose(reduced[:, a], sign * pca[:, a], atol=1e-9)


def test_claims_panel_follows_the_grouping(store, monkeypatch):
    at = open_tab(_clustering_page(store.root, monkeypatch), "Paper's claims")
    claims = at.table[-1].value.reset_index()
    assert list(claims["paper"].str.startswith("Section")) == [True] * 4
    verdicts = dict(zip(claims["claim"], claims["verdict"]))
    from stg_core.claims import GroupingSettings, check_complements
    from stg_core.clustering import cluster_tasks
    from stg_core.run_vectors import load_reduced_task_vectors

    run_id = store.run_ids()[0]
    spec = store.load_spec(run_id)
    reduced, n_features = load_reduced_task_vectors(store, run_id)
    memberships = cluster_tasks(reduced, 3, 2.0, n_features=n_features).memberships
    expected = check_complements(memberships, spec.task_names, spec.tasks, tuple(str(d) for d in range(10)))
    assert verdicts["Exact complements get the same memberships"] == {"holds": "✓ holds",
                                                                      "does not hold": "✗ does not hold"}[expected.verdict]
    assert expected.detail in list(claims["numbers"])
    assert verdicts["STG-MTL's test F1 beats MTL's and STL's"] == "— not applicable"
    assert GroupingSettings(3, 2.0, epochs=(1, 2, 3)).describe() in list(claims["computed on"])
    at.slider(key="k").set_value(2).run()
    assert "k = 2" in at.caption[-1].value


def test_a_link_with_the_run_and_settings_reproduces_the_view(tmp_path, monkeypatch):
    """The URL's query parameters (run, k, F, representation, known group) open the same view,
    whichever run the store lists first; two sessions on the same link see the same memberships."""
    store = ArtifactStore(tmp_path / "store")
    runs = [_write_synthetic_run(store), _write_synthetic_run(store, n_epochs=2)]
    assert len(set(runs)) == 2
    monkeypatch.setenv("STG_STORE", str(store.root))
    link = {"k": "5", "F": "1.3", "rep": "pattern", "group": "footwear", "view": "Known groups"}

    def open_link(run_id: str) -> AppTest:
        at = AppTest.from_file(APP_SCRIPT, default_timeout=60)
        at.query_params.update({"run": run_id, **link})
        at.run().switch_page("../pages/clustering.py").run()
        assert not at.exception and not at.error
        return at

    for run_id in runs:
        at = open_link(run_id)
        assert at.sidebar.selectbox(key="active_run").value == run_id
        assert (at.slider(key="k").value, at.slider(key="fuzziness").value) == (5, 1.3)
        assert at.selectbox(key="representation").value == "pattern"
        assert at.selectbox(key="known_group").value == "footwear"
        assert {name: at.query_params[name] for name in ("run", *link)} == {"run": run_id, **link}
        assert any("Chance level" in c.value for c in at.caption)  # shown, not only in a tooltip
        table = open_tab(at, "Table").dataframe[0].value
        assert table.shape == (15, 1 + 5)
        assert len(at.get("download_button")) == 2  # memberships as CSV and JSON
    again = open_tab(open_link(runs[-1]), "Table")
    assert again.dataframe[0].value.equals(table)


def test_known_groups_order_band_and_matched_contingency(grouped_store, monkeypatch):
    """With known groups: tasks can be ordered by group with the group drawn as a band, and the
    contingency of known groups × clusters puts the matched pairs on its diagonal."""
    import numpy as np

    from stg_core.alignment import contingency, run_task_groups

    at = _clustering_page(grouped_store.root, monkeypatch)
    at.radio(key="order").set_value("known group").run()
    assert not at.exception and not at.error
    heat = chart_option(at, "heatmap")
    memberships, band = heat["series"]
    assert heat["xAxis"][1]["data"] == ["known group"] and heat["xAxis"][0]["data"][0] == "cluster 0"
    assert heat["yAxis"][0]["data"] == heat["yAxis"][1]["data"]  # the band's rows are the heatmap's
    groups = run_task_groups(grouped_store, grouped_store.run_ids()[0])
    rows = heat["yAxis"][0]["data"]
    shown = [groups[rows[p["value"][1]]] for p in band["data"] if p["value"][2] >= 0]
    assert shown == sorted(shown) and sorted(shown) == sorted(groups.values())  # ordered by group
    assert all(p["name"] == f"{rows[p['value'][1]]}: {groups.get(rows[p['value'][1]], '—')}" for p in band["data"])
    table = open_tab(at, "Table").dataframe[0].value
    labels = dict(zip(table.index, table["cluster"]))
    expected = contingency([labels[t] for t in groups], list(groups.values()))
    drawn = chart_option(open_tab(at, "Known groups"), "contingency")
    assert drawn["yAxis"]["data"] == expected.groups
    assert drawn["xAxis"]["data"] == [f"cluster {j}" for j in expected.clusters]
    z = heatmap_matrix(drawn)
    np.testing.assert_array_equal(z, expected.table)
    assert z.sum() == len(groups)


def test_epochs_and_representation_come_from_the_url(grouped_store, monkeypatch):
    at = AppTest.from_file(APP_SCRIPT, default_timeout=60)
    monkeypatch.setenv("STG_STORE", str(grouped_store.root))
    at.query_params.update({"run": grouped_store.run_ids()[0], "ep": "1,3", "rep": "pattern"})
    at.run().switch_page("../pages/clustering.py").run()
    assert not at.exception
    assert at.multiselect(key="epochs").value == [1, 3] and at.selectbox(key="representation").value == "pattern"
    assert at.query_params["ep"] == "1,3"
    at.multiselect(key="epochs").set_value([1, 2, 3]).run()
    assert at.query_params["ep"] == "all"


@pytest.mark.parametrize("page", ["clustering", "training", "overview"])
def test_a_run_with_a_missing_artifact_says_what_is_missing_not_a_traceback(tmp_path, monkeypatch, page):
    store = ArtifactStore(tmp_path / "store")
    run_id = _write_synthetic_run(store)
    (store.run_dir(run_id) / "samples" / "classes.npy").unlink()
    (store.run_dir(run_id) / "datamaps" / "epoch_2.npy").write_bytes(b"not an array")
    monkeypatch.setenv("STG_STORE", str(store.root))
    at = AppTest.from_file(APP_SCRIPT, default_timeout=60).run()
    if page != "overview":
        at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "samples/classes.npy is missing" in errors and "epoch 2 is damaged" in errors, errors


def test_a_run_recorded_before_the_statistics_gets_them_once(tmp_path, monkeypatch):
    store = ArtifactStore(tmp_path / "store")
    run_id = _write_synthetic_run(store)
    for path in store.run_dir(run_id).glob("datamaps/*"):
        if not path.name.startswith("epoch_"):
            path.unlink()
    assert store.statistics_epochs(run_id) == []
    at = _clustering_page(store.root, monkeypatch)
    assert not at.exception and not at.error
    assert store.statistics_epochs(run_id) == [1, 2, 3]
    assert open_tab(at, "Table").dataframe[0].value.shape == (15, 1 + 3)


def test_only_the_open_view_is_drawn_and_each_view_keeps_its_settings(grouped_store, monkeypatch):
    """A k or F change redraws the open tab only: the other views are neither computed nor sent.
    The task order and the known group are kept while another tab is open (in the session: the
    URL drops the order while a tab that does not draw it is open), and back in the URL with their tab."""
    at = _clustering_page(grouped_store.root, monkeypatch)
    assert [t.label for t in at.tabs] == ["Memberships", "Known groups", "Paper's claims", "Table"]
    assert chart_keys(at) == ["heatmap", "task_map"]
    assert not at.dataframe and not at.table and not at.metric
    at.radio(key="order").set_value("known group").run()
    at.slider(key="k").set_value(4).run()
    assert chart_keys(at) == ["heatmap", "task_map"] and not at.dataframe
    open_tab(at, "Known groups")
    assert chart_keys(at) == ["contingency", "group_bars"] and len(at.metric) == 3
    at.selectbox(key="known_group").set_value("footwear").run()
    open_tab(at, "Paper's claims")
    assert chart_keys(at) == [] and at.table and "k = 4" in at.caption[-1].value
    open_tab(at, "Memberships")
    assert at.radio(key="order").value == "known group" and at.query_params["order"] == "known group"
    open_tab(at, "Known groups")
    assert at.selectbox(key="known_group").value == "footwear"


@pytest.mark.parametrize("view", ["<script>", "", "Table" * 1000, "memberships"])
def test_an_unknown_view_in_the_url_opens_the_memberships(grouped_store, monkeypatch, view):
    monkeypatch.setenv("STG_STORE", str(grouped_store.root))
    at = AppTest.from_file(APP_SCRIPT, default_timeout=60)
    at.query_params.update({"run": grouped_store.run_ids()[0], "view": view})
    at.run().switch_page("../pages/clustering.py").run()
    assert not at.exception and not at.error
    assert chart_keys(at) == ["heatmap", "task_map"]
