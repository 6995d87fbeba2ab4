"""Clustering: k and F sliders re-cluster a run's tasks instantly from its data maps."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from app.charts import cluster_order, membership_heatmap
from stg_core.clustering import (REPRESENTATIONS, SCALINGS, alignment_scores, cluster_tasks,
                                 load_reduced_task_vectors, task_groups)
from stg_core.store import ArtifactStore

st.title("Clustering")
store = ArtifactStore()
runs = [r for r in store.list_runs() if r["epochs_done"] >= 1]
if not runs:
    st.info("No run with recorded data maps yet. Train one first, e.g. "
            "`python -m stg_core train --preset digits-g2 --epochs 40`.")
    st.stop()

ids = [r["id"] for r in runs]
wanted = st.query_params.get("run")
run_id = st.selectbox("Run", ids, index=ids.index(wanted) if wanted in ids else 0,
                      format_func=lambda i: next(f"{r['id']} · {r['preset'] or r['dataset']} · {r['n_tasks']} tasks · "
                                                 f"{r['epochs_done']}/{r['epochs']} epochs" for r in runs if r["id"] == i),
                      help="The training run whose data maps are clustered.")
st.query_params["run"] = run_id
spec = store.load_spec(run_id)
names = list(spec.task_names)
recorded = store.recorded_epochs(run_id)

c1, c2, c3, c4 = st.columns(4)
k = c1.slider("Clusters k", 2, min(len(names), 20), min(3, len(names)), key="k",
              help="Number of task clusters (k-means on the tasks' data maps).")
fuzziness = c2.slider("Fuzziness F", 1.05, 5.0, 2.0, 0.05, key="fuzziness",
                      help="F > 1; close to 1 gives nearly hard memberships, larger F softer ones (paper: 2).")
representation = c3.selectbox("Representation", REPRESENTATIONS, key="representation",
                              help="raw: the paper's data maps; standardized: per feature; pattern: which samples "
                                   "a task finds hard, not how hard it is overall.")
scaling = c4.selectbox("Scaling", SCALINGS, key="scaling", help="Per-feature standardisation before k-means.")
epochs = st.multiselect("Data-map epochs", recorded, default=recorded, key="epochs",
                        help="Epochs whose data maps (over epochs 1..e) form each task's vector.")
if not epochs:
    st.error("Pick at least one epoch.")
    st.stop()


@st.cache_data(show_spinner="Reducing the task vectors (once per setting)…", max_entries=16)
def _reduced(root: str, run: str, chosen: tuple[int, ...], rep: str, scale: str) -> tuple[np.ndarray, int]:
    return load_reduced_task_vectors(ArtifactStore(root), run, chosen, rep, scale)


try:
    reduced, n_features = _reduced(str(store.root), run_id, tuple(sorted(epochs)), representation, scaling)
    result = cluster_tasks(reduced, k, fuzziness, random_state=0, n_features=n_features)
except ValueError as exc:
    st.error(str(exc))
    st.stop()

memberships = np.asarray(result.memberships)
st.plotly_chart(membership_heatmap(memberships, names), key="heatmap")

super_groups = store.read_dataset_info(run_id).get("super_groups")
groups = task_groups(names, spec.tasks, super_groups) if super_groups else {}
if len(set(groups.values())) >= 2:
    scores = alignment_scores(result.labels[[names.index(t) for t in groups]], list(groups.values()))
    cols = st.columns(3)
    for col, metric, label in zip(cols, ("ari", "nmi", "purity"), ("ARI", "NMI", "Purity")):
        col.metric(f"{label} vs known groups", f"{scores[metric]:.3f}",
                   help=f"Chance level (random permutations): {scores['chance'][metric]['mean']:.3f}")
else:
    st.caption("This dataset has no known super-groups to compare the clusters with.")

order = cluster_order(memberships)
table = pd.DataFrame(memberships[order], index=[names[i] for i in order],
                     columns=[f"cluster {j}" for j in range(k)])
table.insert(0, "cluster", result.labels[order])
st.dataframe(table, key="memberships")
d1, d2 = st.columns(2)
d1.download_button("Memberships (CSV)", table.to_csv().encode(), f"memberships_{run_id}_k{k}.csv", "text/csv")
d2.download_button("Memberships (JSON)", json.dumps({"run": run_id, "k": k, "fuzziness": fuzziness, "tasks": names,
                                                     "memberships": memberships.round(6).tolist(),
                                                     "labels": result.labels.tolist()}).encode(),
                   f"memberships_{run_id}_k{k}.json", "application/json")
