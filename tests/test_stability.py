"""Stability of a grouping across a sweep's seeds: hand-computed metrics, then a digits G2 sweep
of 5 seeds (co-association properties, claims "in x of R seeds") and a planted sweep of 5 seeds
(exact duplicates always together, the planted sets recovered by the consensus grouping)."""

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from app.state import APP_SCRIPT
from stg_core.config import TrainConfig, spec_from_preset
from stg_core.stability import (claim_summary, co_association, consensus_grouping, pairwise_ari, sweep_stability,
                                task_stability)
from stg_core.store import ArtifactStore
from stg_core.sweep import run_sweep
from stg_core.tasks import PLANTED_GROUPS
from tests.echarts_options import chart_keys, chart_option

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [0, 1, 2, 3, 4]


def test_metrics_hand_computed():
    labels = np.array([[0, 0, 1], [0, 1, 1]])  # two seeds, three tasks
    co = co_association(labels)
    np.testing.assert_allclose(co, [[1, 0.5, 0], [0.5, 1, 0.5], [0, 0.5, 1]])
    np.testing.assert_allclose(task_stability(co), [0.75, 0.5, 0.75])
    ari = pairwise_ari(labels)
    assert ari[0, 0] == ari[1, 1] == 1 and ari[0, 1] == ari[1, 0] == adjusted_rand_score([0, 0, 1], [0, 1, 1])
    blocks = np.array([[1, 0.9, 0.1, 0], [0.9, 1, 0, 0.2], [0.1, 0, 1, 0.8], [0, 0.2, 0.8, 1]])
    np.testing.assert_array_equal(consensus_grouping(blocks, 2), [0, 0, 1, 1])
    np.testing.assert_array_equal(consensus_grouping(blocks, 4), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="k=5"):
        consensus_grouping(blocks, 5)
    assert claim_summary(["holds", "does not hold", "not applicable", "holds"]) == "holds in 2 of 3 seeds"
    assert claim_summary(["not applicable"] * 2) == "not applicable"


@pytest.fixture(scope="module")
def g2_sweep(tmp_path_factory):
    store = ArtifactStore(tmp_path_factory.mktemp("g2-sweep"))
    base = spec_from_preset("digits-g2", subset=300, test_subset=100, train=TrainConfig(epochs=2))
    return store, run_sweep(base, SEEDS, store)


def test_co_association_of_a_digits_g2_sweep(g2_sweep):
    store, record = g2_sweep
    report = sweep_stability(store, record["id"], 3)
    co, n = report.co_association, len(report.task_names)
    assert co.shape == (n, n) == (15, 15) and report.labels.shape == (5, 15)
    np.testing.assert_array_equal(co, co.T)
    np.testing.assert_array_equal(np.diag(co), 1.0)
    np.testing.assert_allclose(co * 5, np.round(co * 5))  # a fraction of 5 seeds
    np.testing.assert_array_equal(co, co_association(report.memberships.argmax(2)))
    assert np.all((report.stability >= 0.5) & (report.stability <= 1))
    assert len(set(report.consensus.tolist())) == 3
    np.testing.assert_allclose(np.diag(report.ari), 1.0)
    for claim in report.claims:
        assert claim["holds"] + claim["fails"] + claim["not_applicable"] == 5
        applicable = 5 - claim["not_applicable"]
        if applicable:
            assert claim["summary"] == f"holds in {claim['holds']} of {applicable} seeds"
    keys = [c["key"] for c in report.claims]
    assert keys == ["complements", "random_isolated", "super_groups", "f1"]


@pytest.mark.slow  # a command-line subprocess
def test_stability_command_line_json(g2_sweep):
    store, record = g2_sweep
    out = subprocess.run([sys.executable, "-m", "stg_core", "stability", record["id"][:6], "--k", "3", "--json",
                          "--store", str(store.root)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    expected = sweep_stability(store, record["id"], 3).to_json()
    assert got == json.loads(json.dumps(expected))
    assert got["seeds"] == SEEDS and len(got["runs"]) == 5


@pytest.mark.slow
def test_a_planted_sweep_keeps_duplicates_together_and_its_consensus_recovers_the_sets(tmp_path):
    store = ArtifactStore(tmp_path)
    # 400 images in batches of 32 for 3 epochs: enough for the planted split on every seed tried
    base = spec_from_preset("digits-planted", subset=400, test_subset=100, train=TrainConfig(epochs=3, batch_size=32))
    record = run_sweep(base, SEEDS, store)
    report = sweep_stability(store, record["id"], 2)
    names = list(report.task_names)
    for i, name in enumerate(names):
        if name.endswith(" again"):
            assert report.co_association[i, names.index(name.removesuffix(" again"))] == 1.0
    planted = [PLANTED_GROUPS[n] for n in names]
    assert adjusted_rand_score(planted, report.consensus) == 1.0


WIDGETS = ("button", "selectbox", "slider", "number_input", "download_button")


def test_the_stability_page_draws_a_sweep(g2_sweep, monkeypatch):
    from streamlit.testing.v1 import AppTest

    store, record = g2_sweep
    monkeypatch.setenv("STG_STORE", str(store.root))
    at = AppTest.from_file(APP_SCRIPT, default_timeout=120).run()
    at = at.switch_page("../pages/stability.py").run()
    assert not at.exception
    assert at.selectbox(key="sweep").value == record["id"]
    at.slider(key="stability_k").set_value(4).run()
    assert not at.exception and at.query_params["k"] == "4"
    report = sweep_stability(store, record["id"], 4).to_json()
    charts = {key: chart_option(at, key, "plotly_chart") for key in chart_keys(at, "plotly_chart")}
    assert set(charts) == {"co_association", "task_stability", "seed_ari"}
    z = charts["co_association"]["data"][0]["z"]  # plotly's typed-array encoding
    co = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"])
    assert sorted(co.ravel().tolist()) == sorted(np.array(report["co_association"]).ravel().tolist())
    verdicts = at.dataframe[0].value["verdict"].tolist()
    assert verdicts == [c["summary"] for c in report["claims"]]
    assert [w for kind in WIDGETS for w in at.get(kind) if not getattr(w, "help", None)] == []
    assert any(e.label == "Glossary" for e in at.expander)


def test_the_stability_page_without_a_sweep(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("STG_STORE", str(tmp_path))
    at = AppTest.from_file(APP_SCRIPT, default_timeout=120).run()
    at = at.switch_page("../pages/stability.py").run()
    assert not at.exception and "stg_core sweep" in at.info[0].value
