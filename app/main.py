"""STG-MTL Studio — Streamlit entry point: ``streamlit run app/main.py``.

Registers the pages of the top-level ``pages/`` folder explicitly (Streamlit's auto-discovery
only looks beside this file) and draws the sidebar shared by every page.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts app/ on the path, not the repo root
    sys.path.insert(0, str(ROOT))

st.set_page_config(page_title="STG-MTL Studio", layout="wide")

pages = [
    st.Page(str(ROOT / "pages" / "runs.py"), title="Runs", default=True),
    st.Page(str(ROOT / "pages" / "clustering.py"), title="Clustering"),
]
st.sidebar.markdown("**STG-MTL Studio**  \nTask grouping for multi-task learning from data maps.")
st.navigation(pages).run()
