"""STG-MTL Studio: ``streamlit run app/main.py``.

Serves ``app/studio.py`` (the navigation, the sidebar and the pages). As the server starts, a
background thread imports the libraries the pages use (:mod:`app.preload`), so the first page
a visitor opens does not wait for them. Streamlit finds the ``app`` below and serves it.
Streamlit marks ``st.App`` experimental: ``streamlit run app/studio.py`` serves the same pages
without the preload.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts app/ on the path, not the repo root
    sys.path.insert(0, str(ROOT))

from app.preload import preload_pages  # noqa: E402 - needs the path above
from app.state import APP_SCRIPT  # noqa: E402


@asynccontextmanager
async def lifespan(_app: st.App) -> AsyncIterator[None]:
    threading.Thread(target=preload_pages, name="stg-preload", daemon=True).start()
    yield


app = st.App(APP_SCRIPT, lifespan=lifespan)
