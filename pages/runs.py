"""Runs: the training runs in the store, the presets, and the datasets available here."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from stg_core.data import DATASET_NAMES, dataset_status
from stg_core.store import ArtifactStore
from stg_core.tasks import PRESETS

st.title("Runs")
store = ArtifactStore()
runs = store.list_runs()
if runs:
    st.dataframe(pd.DataFrame(runs), hide_index=True, width="stretch")
else:
    st.info("No training run yet. Start one from a terminal with "
            "`python -m stg_core train --preset digits-g2` (the offline default dataset).")

st.subheader("Presets")
st.dataframe(pd.DataFrame([{"preset": p.name, "dataset": p.dataset, "tasks": len(p.tasks),
                            "description": p.description} for p in PRESETS.values()]), hide_index=True)

st.subheader("Datasets on this machine")
rows = []
for name in DATASET_NAMES:
    if name == "npz":
        continue
    s = dataset_status(name)
    rows.append({"dataset": name, "available": s.available, "where / how to get it": s.location or s.message})
st.dataframe(pd.DataFrame(rows), hide_index=True)
