"""The Streamlit app, rendered headless with AppTest (no browser)."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from stg_core.config import TrainConfig, spec_from_preset
from stg_core.store import ArtifactStore
from stg_core.training import train_run

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


def test_app_renders_with_an_empty_store(tmp_path, monkeypatch):
    monkeypatch.setenv("STG_STORE", str(tmp_path / "store"))
    at = AppTest.from_file(MAIN, default_timeout=60).run()
    assert not at.exception
    assert any("No training run yet" in i.value for i in at.info)
    assert at.title[0].value == "Runs"


def test_app_lists_a_finished_run(tmp_path, monkeypatch):
    store = ArtifactStore(tmp_path / "store")
    run_id = train_run(spec_from_preset("digits-g1", subset=200, train=TrainConfig(epochs=1)), store)
    monkeypatch.setenv("STG_STORE", str(store.root))
    at = AppTest.from_file(MAIN, default_timeout=60).run()
    assert not at.exception
    assert run_id in at.dataframe[0].value["id"].tolist()
