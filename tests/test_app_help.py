"""Every widget on every page carries a help tooltip, and every page has the glossary."""

import pytest
from streamlit.testing.v1 import AppTest

from app.state import APP_SCRIPT
from stg_core.config import TrainConfig, spec_from_preset
from stg_core.store import ArtifactStore
from stg_core.training import train_run

WIDGETS = ("button", "selectbox", "slider", "number_input", "text_input", "radio", "multiselect", "checkbox",
           "file_uploader", "toggle", "download_button", "select_slider", "text_area")
PAGES = ("overview", "experiment", "training", "clustering", "evaluation", "methods", "stability")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = ArtifactStore(tmp_path_factory.mktemp("store"))
    train_run(spec_from_preset("digits-g2", subset=300, test_subset=80, train=TrainConfig(epochs=2)), store)
    return store


def _missing_help(at: AppTest) -> list[str]:
    return [f"{kind} {getattr(w, 'label', '?')!r}" for kind in WIDGETS for w in at.get(kind)
            if not getattr(w, "help", None)]


@pytest.mark.parametrize("page", PAGES)
def test_every_widget_has_a_tooltip_and_the_page_a_glossary(store, monkeypatch, page):
    monkeypatch.setenv("STG_STORE", str(store.root))
    at = AppTest.from_file(APP_SCRIPT, default_timeout=120).run().switch_page(f"../pages/{page}.py").run()
    assert not at.exception
    missing = _missing_help(at)
    if page == "experiment":  # the task builder's widgets too
        at.radio(key="task_source").set_value("Custom").run()
        missing += _missing_help(at)
    assert missing == []
    assert any(e.label == "Glossary" for e in at.expander)
