"""STG-MTL Studio's Streamlit script, served by ``streamlit run app/main.py``.

Registers the pages of the top-level ``pages/`` folder explicitly (Streamlit's auto-discovery
only looks beside this file) and draws the sidebar shared by every page: the active run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts app/ on the path, not the repo root
    sys.path.insert(0, str(ROOT))

from app.state import PAGE_FILES, active_run_selector, demo_guide, store  # noqa: E402 - needs the path above

st.set_page_config(page_title="STG-MTL Studio", layout="wide")

PAGES = [
    st.Page(PAGE_FILES["overview"], title="Overview", default=True),
    st.Page(PAGE_FILES["experiment"], title="Experiment"),
    st.Page(PAGE_FILES["training"], title="Training"),
    st.Page(PAGE_FILES["clustering"], title="Clustering"),
    st.Page(PAGE_FILES["evaluation"], title="Evaluation"),
    st.Page(PAGE_FILES["methods"], title="Methods"),
    st.Page(PAGE_FILES["stability"], title="Stability"),
]
navigation = st.navigation(PAGES)
st.sidebar.markdown("**STG-MTL Studio**  \nTask grouping for multi-task learning from data maps.")
active_run_selector(store())
demo_guide(navigation.url_path)
try:
    navigation.run()
except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
    # A damaged or partial artifact that a page's own checks did not foresee: a message, not a traceback.
    st.error(f"This page cannot be shown: {type(exc).__name__}: {exc}")
    st.info("If a run's files were changed or partly deleted, train it again (launch the same settings from "
            "**Experiment**) or choose another run in the sidebar.")
