"""Overview: what the method does, a one-click demo, and the paper's claims on the active run."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.charts import fuzziness_example, pipeline_figure
from app.claims_panel import claims_panel
from app.state import (PAGE_FILES, active_run, flash, glossary, run_problems_or_stop, show_flash, start_demo,
                       statistics_or_stop)
from stg_core.claims import GroupingSettings, run_claims
from stg_core.clustering import cluster_tasks, fuzzy_memberships
from stg_core.run_vectors import load_reduced_task_vectors
from stg_core.demo import DEMOS, available_demos
from stg_core.store import ArtifactStore

st.title("STG-MTL Studio")
st.markdown("Multi-task learning helps related tasks and hurts unrelated ones. **Which tasks should be trained "
            "together?** Trying every grouping is exponential; STG-MTL answers from **one** training run.")
show_flash()
store = ArtifactStore()

# ---- demo ----------------------------------------------------------------------------------
demos = available_demos()
cols = st.columns(len(demos))
for col, demo in zip(cols, demos):
    if col.button(demo.button, key=f"demo_{demo.name}", type="primary" if demo.name == "digits" else "secondary",
                  help=f"{demo.title}: trains in the background, then the sidebar guides you through the pages."):
        state = start_demo(store, demo.name)
        flash("success", f"Demo started ({state}). Watch the data maps form, then follow the sidebar.")
        st.switch_page(PAGE_FILES["training"])

# ---- the method ------------------------------------------------------------------------------
st.subheader("The method in four steps")
st.plotly_chart(pipeline_figure(), key="pipeline", config={"staticPlot": True})
links = st.columns(4)
for col, (page, label) in zip(links, (("experiment", "1 · Define tasks and train"), ("training", "2 · Watch the data maps"),
                                      ("clustering", "3 · Cluster the tasks"), ("evaluation", "4 · Compare F1"))):
    col.page_link(PAGE_FILES[page], label=label)
st.caption("Other ways to find task groups — TAG (lookahead affinity), Grad-TAE (gradient-based affinity "
           "estimates) and DMTG (differentiable grouping) — run on the same tasks on the **Methods** page, with "
           "what each costs.")
st.page_link(PAGE_FILES["methods"], label="Compare grouping methods →")

st.subheader("Data maps")
st.markdown("""
For every task (a binary question such as *is it a 3?*) and every training image, the model gives
the true label a probability **p_true** at each epoch. Over the epochs so far:

- **confidence** is the mean of p_true — how sure the model is of the right answer;
- **variability** is its standard deviation — how much the model changed its mind.

Plotting confidence (y) against variability (x) gives the task's **data map**: **easy-to-learn**
images sit top-left (always right), **hard-to-learn** ones bottom-left (always wrong), and
**ambiguous** ones to the right (the model keeps hesitating). Tasks whose data maps look alike —
the same images easy, the same ones hard — are likely to help each other.
""")

st.subheader("Clusters k and fuzziness F")
st.markdown("""
Each task's data maps form one long vector; k-means splits the tasks into **k clusters**. Instead of
a hard assignment, each task gets **memberships**: a weight per cluster, summing to 1, from its
distances to the cluster centres (the paper's eq. 2). The **fuzziness F** sets how soft they are:
close to 1 every task belongs to its nearest cluster only; larger F spreads the weight out. One
model is then trained per cluster, each task's loss weighted by its membership.

Three tasks between two cluster centres A (at 0) and B (at 1):
""")
fuzziness = st.slider("Fuzziness F", 1.05, 5.0, 2.0, 0.05, key="example_F",
                      help="Move it: near 1 the memberships become 0 or 1; large F makes them nearly equal.")
points = {"task near A (0.1)": 0.1, "task in between (0.45)": 0.45, "task near B (0.8)": 0.8}
distances = np.abs(np.array(list(points.values()))[:, None] - np.array([0.0, 1.0])[None, :])
st.plotly_chart(fuzziness_example(fuzzy_memberships(distances, fuzziness), list(points), fuzziness),
                key="fuzziness_example")

st.subheader("Raw data maps and the pattern representation")
st.markdown("""
With the paper's **raw** data maps, the biggest difference between two tasks is usually *how hard*
they are overall: easy tasks cluster with easy tasks. The **pattern** representation divides each
task's vector `(1 − confidence, variability)` by its length, so tasks are compared by *which*
images they find hard, not how hard they are. Try both on the Clustering page: on Fashion-MNIST,
pattern agrees better with the natural groups (tops, footwear).
""")
glossary()

# ---- claims on the active run ---------------------------------------------------------------------
run_id = active_run()
recorded = store.recorded_epochs(run_id) if run_id else []
if not recorded:
    st.info("Run the demo (or launch a run from Experiment) to check the paper's claims on your own run.")
    st.stop()
run_problems_or_stop(store, run_id)
statistics_or_stop(store, run_id)
spec = store.load_spec(run_id)
demo_k = next((d.k for d in DEMOS.values() if d.spec.run_id() == run_id), None)
grouping = GroupingSettings(demo_k or min(3, len(spec.tasks)), 2.0, epochs=tuple(recorded))
try:
    reduced, n_features = load_reduced_task_vectors(store, run_id, recorded)
except ValueError as exc:
    st.error(f"Cannot check the claims on run {run_id}: {exc}")
    st.stop()
result = cluster_tasks(reduced, grouping.k, grouping.fuzziness, random_state=grouping.seed, n_features=n_features)
demo_note = " (the demo's k)" if demo_k else ""
claims_panel(run_claims(store, run_id, grouping, result.memberships, reduced, n_features), grouping, store=store,
             run_id=run_id, caption=f"Run {run_id}, {grouping.describe()}{demo_note}. Change k and F on the "
                                    "Clustering page.")
