"""Stability: how the grouping of a seed sweep's runs varies with the training seed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from app.charts import co_association_heatmap, seed_agreement_heatmap, task_stability_bars
from app.state import glossary, to_url, url_default
from stg_core.clustering import REPRESENTATIONS
from stg_core.stability import sweep_stability
from stg_core.store import ArtifactStore
from stg_core.sweep import list_sweeps

st.title("Stability")
st.caption("The paper reports one training seed per figure. A seed sweep trains the same experiment once per "
           "seed; here each run's tasks are clustered at the same k, F and representation, and the groupings "
           "are compared: how often two tasks share a cluster (co-association), the consensus grouping, how "
           "stable each task is, how much the seeds agree (ARI), and in how many seeds each paper claim holds.")
glossary()
store = ArtifactStore()
sweeps = [s for s in list_sweeps(store) if s.get("state") == "completed"]
if not sweeps:
    st.info("No finished seed sweep yet. Train one from the command line, e.g. "
            "`python -m stg_core sweep --preset digits-g2 --seeds 0-4` (add `--executor ray` to run the seeds "
            "on a Ray cluster), then come back.")
    st.stop()


def _label(s: dict) -> str:
    spec = s["spec"]
    return f"{s['id']} · {spec.get('preset') or spec['dataset']} · {len(spec['tasks'])} tasks · {len(s['seeds'])} seeds"


ids = [s["id"] for s in sweeps]
by_id = {s["id"]: s for s in sweeps}
chosen = url_default("sweep", ids[0], str, lambda v: v in by_id)
sweep_id = st.selectbox("Sweep", ids, index=ids.index(chosen), format_func=lambda i: _label(by_id[i]), key="sweep",
                        help="A finished seed sweep: one run per training seed (`python -m stg_core sweep`).")
n_tasks = len(by_id[sweep_id]["spec"]["tasks"])
c1, c2, c3 = st.columns(3)
k = c1.slider("Clusters k", 2, n_tasks, url_default("k", min(3, n_tasks), int, lambda v: 2 <= v <= n_tasks),
              key="stability_k", help="Clusters per run; every seed is clustered at this k.")
fuzziness = c2.number_input("Fuzziness F", 1.1, 10.0, url_default("F", 2.0, float, lambda v: 1.1 <= v <= 10.0),
                            step=0.1, key="stability_F",
                            help="Softness of the memberships (paper: 2); the argmax clusters compared hardly depend on it.")
representation = c3.selectbox("Representation", REPRESENTATIONS,
                              index=REPRESENTATIONS.index(url_default("rep", "raw", str, lambda v: v in REPRESENTATIONS)),
                              key="stability_rep",
                              help="Task vectors clustered: the paper's raw data maps, standardized, or the pattern "
                                   "of (1 − confidence, variability).")
to_url(sweep=sweep_id, k=k, F=fuzziness, rep=representation)


@st.cache_data(max_entries=16, show_spinner="Clustering every seed's run…")
def _report(root: str, sweep: str, k: int, fuzziness: float, representation: str) -> dict:
    return sweep_stability(ArtifactStore(root), sweep, k, fuzziness=fuzziness, representation=representation).to_json()


try:
    report = _report(str(store.root), sweep_id, k, float(fuzziness), representation)
except ValueError as exc:
    st.error(str(exc))
    st.stop()

names = report["tasks"]
co, consensus = np.array(report["co_association"]), np.array(report["consensus"])
stability = np.array(report["stability"])
order = np.lexsort((-stability, consensus))
m1, m2, m3 = st.columns(3)
m1.metric("Seeds", len(report["seeds"]))
m2.metric("Mean ARI between seeds", f"{report['mean_ari']:.3f}")
m3.metric("Least stable task", names[int(stability.argmin())], f"{stability.min():.3f}", delta_color="off")

st.subheader("Paper claims across seeds")
st.dataframe(pd.DataFrame([{"claim": c["title"], "source": c["source"], "verdict": c["summary"]}
                           for c in report["claims"]]), hide_index=True, width="stretch")
st.plotly_chart(co_association_heatmap(co, names, order), width="stretch", key="co_association")
st.plotly_chart(task_stability_bars(stability, names, consensus, order), width="stretch",
                key="task_stability")
st.caption("Stability of a task: the mean over the other tasks of max(c, 1 − c), c their co-association — 1 when "
           "every seed pairs it the same way with every other task, 0.5 when each pairing is a coin flip.")
st.plotly_chart(seed_agreement_heatmap(np.array(report["ari"]), report["seeds"]), width="stretch",
                key="seed_ari")

tasks_csv = pd.DataFrame({"task": names, "consensus": consensus, "stability": stability}).to_csv(index=False)
co_csv = pd.DataFrame(co, index=names, columns=names).to_csv()
d1, d2, d3 = st.columns(3)
d1.download_button("Tasks (CSV)", tasks_csv, f"stability-{sweep_id}-k{k}-tasks.csv", "text/csv", key="dl_tasks",
                   help="Each task's consensus group and stability score.")
d2.download_button("Co-association (CSV)", co_csv, f"stability-{sweep_id}-k{k}-co-association.csv", "text/csv",
                   key="dl_co", help="The co-association matrix: share of seeds in which two tasks share a cluster.")
d3.download_button("Report (JSON)", json.dumps(report, indent=1), f"stability-{sweep_id}-k{k}.json",
                   "application/json", key="dl_json",
                   help="Everything on this page: per-seed labels and memberships, co-association, consensus, "
                        "stability, ARI, claims per seed.")
