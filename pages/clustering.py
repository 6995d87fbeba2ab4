"""Clustering: k and F sliders re-cluster a run's tasks instantly from its recorded statistics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from app.charts import cluster_order
from app.cluster_charts import contingency_heatmap, group_membership_bars, membership_heatmap, show, task_map
from app.claims_panel import claims_panel
from app.state import (active_run, epochs_from_url, epochs_to_url, glossary, run_problems_or_stop,
                       statistics_or_stop, to_url, url_default)
from stg_core.alignment import alignment_scores, contingency, run_task_groups
from stg_core.claims import GroupingSettings, run_claims, run_super_groups_claim
from stg_core.clustering import REPRESENTATIONS, ClusteringResult, cluster_tasks
from stg_core.run_vectors import load_reduced_task_vectors
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
run_problems_or_stop(store, run_id)
statistics_or_stop(store, run_id)
spec = store.load_spec(run_id)
names = list(spec.task_names)
groups = run_task_groups(store, run_id)  # task name -> known group (one-vs-rest class tasks)
has_groups = len(set(groups.values())) >= 2


@st.cache_data(show_spinner="Reducing the task vectors…", max_entries=16)
def _reduced(root: str, run: str, chosen: tuple[int, ...], rep: str) -> tuple[np.ndarray, int]:
    return load_reduced_task_vectors(ArtifactStore(root), run, chosen, rep)


@st.cache_data(max_entries=64, show_spinner=False)
def _alignment(labels: tuple[int, ...], known: tuple[str, ...]) -> dict:
    # 200 label permutations for the chance levels; cached so that moving F (same labels) costs nothing
    return alignment_scores(np.asarray(labels), list(known))


@st.cache_data(max_entries=16, show_spinner=False)
def _super_groups_claim(root: str, run: str, rep: str, epochs: tuple[int, ...], fuzziness: float, _reduced: np.ndarray,
                        n_features: int):
    # clusters at k = the number of known groups: the same for every k on display
    grouping = GroupingSettings(2, fuzziness, rep, epochs=epochs)
    return run_super_groups_claim(ArtifactStore(root), run, grouping, _reduced, n_features)


@st.fragment
def grouping_view() -> None:
    """Settings and everything drawn from them: a slider rerun redraws this part only."""
    c1, c2, c3 = st.columns(3)
    max_k = min(len(names), 20)
    k = c1.slider("Clusters k", 2, max_k, url_default("k", min(3, max_k), int, lambda v: 2 <= v <= max_k), key="k",
                  help="Number of task clusters (k-means on the tasks' data maps).")
    fuzziness = c2.slider("Fuzziness F", 1.05, 5.0, url_default("F", 2.0, float, lambda v: 1.05 <= v <= 5.0), 0.05,
                          key="fuzziness",
                          help="F > 1; close to 1 gives nearly hard memberships, larger F softer ones (paper: 2).")
    representation = c3.selectbox(
        "Representation", REPRESENTATIONS, key="representation",
        index=REPRESENTATIONS.index(url_default("rep", "raw", str, REPRESENTATIONS.__contains__)),
        help="raw: the paper's data maps; standardized: each feature standardised across tasks; pattern: which "
             "samples a task finds hard, not how hard it is overall.")
    default_epochs = epochs_from_url(st.query_params.get("ep"), recorded)
    chosen = st.session_state.get("epochs", default_epochs)
    summary = f"all {len(recorded)}" if list(chosen) == recorded else f"{len(chosen)} of {len(recorded)}"
    with st.expander(f"Data-map epochs used: {summary}"):
        epochs = st.multiselect("Data-map epochs", recorded, default=default_epochs, key="epochs",
                                help="Epochs whose data maps (over epochs 1..e) form each task's vector.")
    if not epochs:
        st.error("Pick at least one epoch.")
        st.stop()
    epochs = sorted(epochs)
    to_url(k=k, F=fuzziness, rep=representation, ep=epochs_to_url(epochs, recorded))

    try:
        reduced, n_features = _reduced(str(store.root), run_id, tuple(epochs), representation)
        result = cluster_tasks(reduced, k, fuzziness, random_state=0, n_features=n_features)
    except ValueError as exc:
        st.error(str(exc))
        st.stop()
    memberships = np.asarray(result.memberships)

    # One view at a time: a k or F change then redraws only the open tab, not every section of a
    # page that is 1,400 px tall at 100 tasks (before / after figures: bench/README.md, scale.py).
    views = ["Memberships", *(["Known groups"] if has_groups else []), "Paper's claims", "Table"]
    tabs = dict(zip(views, st.tabs(views, key="view", bind="query-params")))
    if tabs["Memberships"].open:
        with tabs["Memberships"]:
            memberships_view(memberships, result, reduced)
    if has_groups and tabs["Known groups"].open:
        with tabs["Known groups"]:
            known_groups(memberships, result.labels)
    if tabs["Paper's claims"].open:
        with tabs["Paper's claims"]:
            grouping = GroupingSettings(k, float(fuzziness), representation, epochs=tuple(epochs))
            super_groups = _super_groups_claim(str(store.root), run_id, representation, tuple(epochs),
                                               float(fuzziness), reduced, n_features)
            claims_panel(run_claims(store, run_id, grouping, memberships, reduced, n_features, super_groups),
                         grouping, store=store, run_id=run_id,
                         caption=f"On this grouping ({grouping.describe()}); the super-group check clusters at k = "
                                 "the number of known groups.")
    if tabs["Table"].open:
        with tabs["Table"]:
            membership_table(memberships, result.labels, k, fuzziness, representation, epochs)


def memberships_view(memberships: np.ndarray, result: ClusteringResult, reduced: np.ndarray) -> None:
    """The memberships heatmap (ordered by cluster or by known group) beside the task map."""
    left, right = st.columns(2)
    order_by = "cluster"
    if has_groups:
        order_by = left.radio("Order the tasks by", ["cluster", "known group"], horizontal=True, key="order",
                              bind="query-params",
                              help="known group: the dataset's own groups of classes, drawn as a band beside "
                                   "the memberships, so clusters that follow them show as blocks.")
    if order_by == "known group":
        order = sorted(range(len(names)), key=lambda i: (groups.get(names[i], "~"), -memberships[i].max(), names[i]))
        heatmap = membership_heatmap(memberships, names, order, bands=[groups.get(n, "") for n in names])
    else:
        heatmap = membership_heatmap(memberships, names)
    show(left, heatmap, "heatmap")
    show(right, task_map(reduced, names, memberships, result.labels, centers=result.cluster_centers), "task_map")
    right.caption("Each point is a task: its position is the first two principal axes of the task vectors "
                  "(the directions in which the tasks' data maps differ most), its colour the cluster, its size and "
                  "opacity its largest membership. Clusters that overlap here may still be apart in the other axes.")
    if not has_groups:
        st.caption("This dataset has no known super-groups to compare the clusters with.")


def membership_table(memberships: np.ndarray, labels: np.ndarray, k: int, fuzziness: float, representation: str,
                     epochs: list[int]) -> None:
    """Each task's cluster and memberships, with CSV and JSON downloads."""
    order = cluster_order(memberships)
    table = pd.DataFrame(memberships[order], index=[names[i] for i in order],
                         columns=[f"cluster {j}" for j in range(k)])
    table.insert(0, "cluster", labels[order])
    st.dataframe(table, key="memberships")
    d1, d2 = st.columns(2)
    d1.download_button("Memberships (CSV)", table.to_csv().encode(), f"memberships_{run_id}_k{k}.csv", "text/csv",
                       help="The table above: each task's cluster and its membership in every cluster (rows sum to 1).")
    d2.download_button("Memberships (JSON)",
                       json.dumps({"run": run_id, "k": k, "fuzziness": fuzziness, "representation": representation,
                                   "epochs": epochs, "tasks": names, "memberships": memberships.round(6).tolist(),
                                   "labels": labels.tolist()}).encode(),
                       f"memberships_{run_id}_k{k}.json", "application/json",
                       help="Run, settings, task names, memberships (n_tasks × k) and cluster labels, e.g. to use "
                            "the memberships as loss weights elsewhere.")


def known_groups(memberships: np.ndarray, labels: np.ndarray) -> None:
    """The clusters against the dataset's known groups: scores, the matched contingency, and the
    memberships of one group's tasks."""
    st.subheader("Clusters against the known groups")
    members = [names.index(t) for t in groups]
    scores = _alignment(tuple(int(labels[i]) for i in members), tuple(groups.values()))
    cols = st.columns(3)
    for col, metric, label in zip(cols, ("ari", "nmi", "purity"), ("ARI", "NMI", "Purity")):
        col.metric(f"{label} vs known groups", f"{scores[metric]:.3f}",
                   help=f"Chance level (random permutations): {scores['chance'][metric]['mean']:.3f}")
    st.caption("Chance level (mean over 200 random permutations of the cluster labels, 95th percentile in "
               "brackets): " + " · ".join(
                   f"{label} {scores['chance'][metric]['mean']:.3f} ({scores['chance'][metric]['p95']:.3f})"
                   for metric, label in (("ari", "ARI"), ("nmi", "NMI"), ("purity", "purity"))))
    matched = contingency(labels[members], list(groups.values()))
    left, right = st.columns([3, 2])
    show(left, contingency_heatmap(matched.table, matched.groups, matched.clusters, matched.matched), "contingency")
    right.caption(f"{len(members)} one-vs-rest tasks have a known group. Each known group is matched to one "
                  f"cluster (Hungarian matching, most shared tasks): {matched.on_diagonal} of {len(members)} tasks "
                  f"sit in their group's matched cluster. Groups and clusters without a partner come last.")
    sizes = {g: sum(1 for v in groups.values() if v == g) for g in set(groups.values())}
    known = sorted(sizes, key=lambda g: (-sizes[g], g))  # largest groups first
    group = right.selectbox("Known group", known, key="known_group",
                            index=known.index(url_default("group", known[0], str, known.__contains__)),
                            format_func=lambda g: f"{g} ({sizes[g]} task{'s' if sizes[g] > 1 else ''})",
                            help="A group of classes the dataset itself defines (e.g. Fashion-MNIST's tops or "
                                 "footwear, CIFAR-100's superclasses). The bars show how each of its one-vs-rest "
                                 "tasks is shared among the clusters: a grouping that matches the known groups puts "
                                 "the tasks of one group in the same cluster.")
    to_url(group=group)
    show(right, group_membership_bars(memberships, names, groups, group), "group_bars")


grouping_view()
