"""The framework's share of a slider change, for ``bench/scale.py``: a Streamlit page with only
a title, the k slider and the Clustering page's membership heatmap (the same builder, random
memberships of ``STG_FLOOR_TASKS`` tasks). ``streamlit run bench/floor_app.py``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.cluster_charts import membership_heatmap, show  # noqa: E402 - needs the path above

st.title("Floor")
n_tasks = int(os.environ.get("STG_FLOOR_TASKS", "100"))
k = st.slider("Clusters k", 2, 20, 3, key="k")
memberships = np.random.default_rng(k).dirichlet(np.ones(k), size=n_tasks)
show(st, membership_heatmap(memberships, [f"task {i}" for i in range(n_tasks)]), "heatmap")
