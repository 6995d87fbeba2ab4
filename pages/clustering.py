"""Clustering: k and F sliders re-cluster a run's tasks instantly from its data maps."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from app.charts import cluster_order, group_membership_bars, membership_heatmap, task_map
from app.claims_panel import claims_panel
from app.state import active_run, glossary, to_url, url_default
from stg_core.claims import GroupingSettings, run_claims
from stg_core.clustering import REPRESENTATIONS, alignment_scores, cluster_tasks, load_reduced_task_vectors, task_groups
from stg_core.store import ArtifactStore

st.title("Clustering")
glossary()
store = ArtifactStore()
run_id = active_run()
recorded = store.recorded_epochs(run_id) if run_id else []
if not recorded:
    st.info("No run with recorded data maps yet. Launch one from **Experiment** (e.g. the "
            "`digits-g2` preset) and come back once an epoch has finished.")
    st.stop()

spec = store.load_spec(run_id)
names = list(spec.task_names)

c1, c2, c3 = st.columns(3)
max_k = min(len(names), 20)
k = c1.slider("Clusters k", 2, max_k, url_default("k", min(3, max_k), int, lambda v: 2 <= v <= max_k), key="k",
              help="Number of task clusters (k-means on the tasks' data maps).")
fuzziness = c2.slider("Fuzziness F", 1.05, 5.0, url_default("F", 2.0, float, lambda v: 1.05 <= v <= 5.0), 0.05,
                      key="fuzziness",
                      help="F > 1; close to 1 gives nearly hard memberships, larger F softer ones (paper: 2).")
representation = c3.selectbox("Representation", REPRESENTATIONS, key="representation",
                              index=REPRESENTATIONS.index(url_default("rep", "raw", str, REPRESENTATIONS.__contains__)),
                              help="raw: the paper's data maps; standardized: each feature standardised across "
                                   "tasks; pattern: which samples a task finds hard, not how hard it is overall.")
chosen = st.session_state.get("epochs", recorded)
summary = f"all {len(recorded)}" if list(chosen) == recorded else f"{len(chosen)} of {len(recorded)}"
with st.expander(f"Data-map epochs used: {summary}"):
    epochs = st.multiselect("Data-map epochs", recorded, default=recorded, key="epochs",
                            help="Epochs whose data maps (over epochs 1..e) form each task's vector.")
if not epochs:
    st.error("Pick at least one epoch.")
    st.stop()
to_url(k=k, F=fuzziness, rep=representation)


@st.cache_data(show_spinner="Reducing the task vectors (once per setting)…", max_entries=16)
def _reduced(root: str, run: str, chosen: tuple[int, ...], rep: str) -> tuple[np.ndarray, int]:
    return load_reduced_task_vectors(ArtifactStore(root), run, chosen, rep)


@st.cache_data(max_entries=64, show_spinner=False)
def _alignment(labels: tuple[int, ...], known: tuple[str, ...]) -> dict:
    # 200 label permutations for the chance levels; cached so that moving F (same labels) costs nothing
    return alignment_scores(np.asarray(labels), list(known))


try:
    reduced, n_features = _reduced(str(store.root), run_id, tuple(sorted(epochs)), representation)
    result = cluster_tasks(reduced, k, fuzziness, random_state=0, n_features=n_features)
except ValueError as exc:
    st.error(str(exc))
    st.stop()

memberships = np.asarray(result.memberships)
left, right = st.columns(2)
left.plotly_chart(membership_heatmap(memberships, names), key="heatmap")
right.plotly_chart(task_map(reduced, names, memberships, result.labels, centers=result.cluster_centers), key="task_map")
right.caption("Each point is a task: its position is the first two principal axes of the task vectors "
              "(the directions in which the tasks' data maps differ most), its colour the cluster, its size and "
              "opacity its largest membership. Clusters that overlap here may still be apart in the other axes.")

super_groups = store.read_dataset_info(run_id).get("super_groups")
groups = task_groups(names, spec.tasks, super_groups) if super_groups else {}
if len(set(groups.values())) >= 2:
    st.subheader("Clusters against the known groups")
    scores = _alignment(tuple(int(result.labels[names.index(t)]) for t in groups), tuple(groups.values()))
    cols = st.columns(3)
    for col, metric, label in zip(cols, ("ari", "nmi", "purity"), ("ARI", "NMI", "Purity")):
        col.metric(f"{label} vs known groups", f"{scores[metric]:.3f}",
                   help=f"Chance level (random permutations): {scores['chance'][metric]['mean']:.3f}")
    st.caption("Chance level (mean over 200 random permutations of the cluster labels): " + " · ".join(
        f"{label} {scores['chance'][metric]['mean']:.3f}"
        for metric, label in (("ari", "ARI"), ("nmi", "NMI"), ("purity", "purity"))))
    sizes = {g: sum(1 for v in groups.values() if v == g) for g in set(groups.values())}
    known = sorted(sizes, key=lambda g: (-sizes[g], g))  # largest groups first
    group = st.selectbox("Known group", known, key="known_group",
                         index=known.index(url_default("group", known[0], str, known.__contains__)),
                         format_func=lambda g: f"{g} ({sizes[g]} task{'s' if sizes[g] > 1 else ''})",
                         help="A group of classes the dataset itself defines (e.g. Fashion-MNIST's tops or "
                              "footwear, CIFAR-100's superclasses). The bars show how each of its one-vs-rest "
                              "tasks is shared among the clusters: a grouping that matches the known groups puts "
                              "the tasks of one group in the same cluster.")
    to_url(group=group)
    st.plotly_chart(group_membership_bars(memberships, names, groups, group), key="group_bars")
else:
    st.caption("This dataset has no known super-groups to compare the clusters with.")

order = cluster_order(memberships)
table = pd.DataFrame(memberships[order], index=[names[i] for i in order],
                     columns=[f"cluster {j}" for j in range(k)])
table.insert(0, "cluster", result.labels[order])
st.dataframe(table, key="memberships")
d1, d2 = st.columns(2)
d1.download_button("Memberships (CSV)", table.to_csv().encode(), f"memberships_{run_id}_k{k}.csv", "text/csv",
                   help="The table above: each task's cluster and its membership in every cluster (rows sum to 1).")
d2.download_button("Memberships (JSON)", json.dumps({"run": run_id, "k": k, "fuzziness": fuzziness, "tasks": names,
                                                     "memberships": memberships.round(6).tolist(),
                                                     "labels": result.labels.tolist()}).encode(),
                   f"memberships_{run_id}_k{k}.json", "application/json",
                   help="Run, k, F, task names, memberships (n_tasks × k) and cluster labels, e.g. to use the "
                        "memberships as loss weights elsewhere.")

grouping = GroupingSettings(k, float(fuzziness), representation, epochs=tuple(sorted(epochs)))
claims_panel(run_claims(store, run_id, grouping, memberships, reduced, n_features), grouping, store=store,
             run_id=run_id, caption=f"On this grouping ({grouping.describe()}); the super-group check clusters at "
                                    "k = the number of known groups.")
