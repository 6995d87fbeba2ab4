"""Evaluation: does the grouping help? Launch an evaluation job, follow it, compare F1."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from app.charts import f1_curves, method_label
from app.job_panel import clamp_fraction, eta_from_start, eta_text, job_buttons, progress_bar, worker_log
from app.state import completed_run_or_stop, flash, glossary, show_flash, to_url, url_default
from stg_core import jobs
from stg_core.clustering import REPRESENTATIONS
from stg_core.evaluation import (COMBINATIONS, METHODS, EvaluationSpec, load_evaluation_spec, read_results,
                                 save_evaluation_spec)
from stg_core.store import ArtifactStore

st.title("Evaluation")
st.caption("Does the grouping help? STG-MTL trains one specialised model per cluster, each on all tasks with "
           "the tasks' memberships as loss weights, and compares its F1 with one multi-task model (MTL), one "
           "model per task (STL) and a random grouping — same data, seed, epochs and hyperparameters as the run.")
glossary()
show_flash()
store = ArtifactStore()
run_id = completed_run_or_stop(store, "evaluate its grouping here", "an evaluation needs its finished data maps")
run_spec = store.load_spec(run_id)
names = list(run_spec.task_names)
n_tasks = len(names)


def _label(eid: str, spec: EvaluationSpec | None, status: dict[str, Any]) -> str:
    if spec is None:
        return f"{eid} · unreadable spec"
    return (f"{eid} · k={spec.n_clusters} · F={spec.fuzziness:g} · {spec.combination} · "
            f"{len(spec.methods)} methods · {status.get('state', 'missing')}")


def _evaluations() -> dict[str, tuple[EvaluationSpec | None, dict[str, Any]]]:
    """The run's evaluations, newest first: id → (spec, status)."""
    found = [j for j in jobs.all_jobs(store) if j.run_id == run_id and j.evaluation_id]
    found.sort(key=lambda j: (j.folder(store) / "spec.json").stat().st_mtime, reverse=True)
    out = {}
    for job in found:
        try:
            spec: EvaluationSpec | None = load_evaluation_spec(store, run_id, job.evaluation_id)
        except (ValueError, TypeError, KeyError, OSError):  # written by another version, or damaged
            spec = None
        out[job.evaluation_id] = (spec, jobs.read_status(store, job))
    return out


evaluations = _evaluations()

# ---- a new evaluation ----------------------------------------------------------------------
with st.expander("New evaluation", expanded=not evaluations):
    c1, c2, c3, c4 = st.columns(4)
    max_k = n_tasks
    in_k = lambda v: 2 <= v <= max_k  # noqa: E731
    in_f = lambda v: 1.05 <= v <= 5.0  # noqa: E731
    from_clustering = st.session_state.get("k")  # the Clustering page's sliders, if visited
    k_default = from_clustering if isinstance(from_clustering, int) and in_k(from_clustering) else min(3, max_k)
    k_help = ("Number of task clusters, i.e. of specialised models for STG-MTL (and of random groups). Each "
              "cluster's model trains on all tasks, weighted by their memberships.")
    if max_k > 2:
        k = c1.slider("Clusters k", 2, max_k, url_default("k", k_default, int, in_k), key="eval_k", help=k_help)
    else:
        k = int(c1.number_input("Clusters k", 2, 2, 2, disabled=True, key="eval_k", help=k_help))
    from_clustering = st.session_state.get("fuzziness")
    f_default = float(from_clustering) if isinstance(from_clustering, float) and in_f(from_clustering) else 2.0
    fuzziness = c2.slider("Fuzziness F", 1.05, 5.0, url_default("F", f_default, float, in_f), 0.05, key="eval_fuzziness",
                          help="F > 1 of the task memberships: close to 1 nearly hard (each task weighs on one "
                               "cluster's model), larger F softer (paper: 2).")
    combination = c3.selectbox(
        "Combination", COMBINATIONS, key="combination",
        index=COMBINATIONS.index(url_default("comb", COMBINATIONS[0], str, COMBINATIONS.__contains__)),
        help="How STG-MTL soft combines the k cluster models' outputs for a task, weighted by its memberships "
             "(paper eq. 4): probabilities Σ_j w_tj·σ(z_tj) (the paper's text) or logits σ(Σ_j w_tj·z_tj) "
             "(the original code).")
    from_clustering = st.session_state.get("representation")
    rep_default = from_clustering if from_clustering in REPRESENTATIONS else "raw"
    representation = c4.selectbox(
        "Representation", REPRESENTATIONS, key="eval_representation",
        index=REPRESENTATIONS.index(url_default("rep", rep_default, str, REPRESENTATIONS.__contains__)),
        help="What the clusters are computed from — raw: the tasks' data maps (confidence and variability per "
             "sample, the paper's); standardized: per feature; pattern: which samples a task finds hard, not "
             "how hard it is overall.")
    methods = st.multiselect(
        "Methods", METHODS, default=list(METHODS), format_func=method_label, key="methods",
        help="MTL: one model for all tasks. STL: one model per task. STG-MTL soft: k cluster models, each task "
             "predicted by its memberships' mix of them. STG-MTL hard: each task predicted by the model of its "
             "largest-membership cluster. Random grouping: k random clusters of tasks, as a control.")
    epochs = st.number_input(
        "Training epochs", min_value=1, max_value=1000, value=None, step=1, key="eval_epochs",
        placeholder=f"{run_spec.train.epochs} (the run's)",
        help="Epochs of every evaluated model. Empty: as many as the run that recorded the data maps.")
    to_url(k=k, F=fuzziness, comb=combination, rep=representation)

    chosen = tuple(m for m in METHODS if m in methods)  # canonical order: the same set gives the same id
    spec = EvaluationSpec(run_id, k, fuzziness=fuzziness, representation=representation, methods=chosen,
                          combination=combination, epochs=int(epochs) if epochs is not None else None)
    try:
        if not chosen:
            raise ValueError("no method selected: pick at least one method to compare")
        spec.validate(n_tasks)
    except ValueError as exc:
        st.error(f"Cannot evaluate: {exc}.")
    else:
        n_models = sum({"mtl": 1, "stl": n_tasks, "stg": k, "stg-hard": k, "random": k}[m] for m in chosen)
        st.caption(f"Trains up to {n_models} models for {spec.epochs or run_spec.train.epochs} epochs each, in a "
                   "background job; the grouping is k-means with seed 0 on the data maps of all recorded epochs "
                   "(the Clustering page's default settings).")
        if st.button("Launch evaluation", type="primary", key="launch",
                     help="Save these settings and start the evaluation job (the same settings twice: one job)."):
            try:
                eid = save_evaluation_spec(spec, store)
                state = jobs.submit(store, jobs.Job(run_id, eid))
            except (ValueError, OSError) as exc:
                st.error(f"Could not launch the evaluation: {exc}")
            else:
                st.session_state["_pending_eval"] = eid
                flash("success", f"Evaluation {eid}: {state}.")
                st.rerun()

# ---- the run's evaluations -------------------------------------------------------------------
if not evaluations:
    st.info("No evaluation of this run yet: choose k, F and the methods above and launch one.")
    st.stop()

ids = list(evaluations)
pending = st.session_state.pop("_pending_eval", None)
if pending in ids:
    st.session_state["evaluation"] = pending
elif st.session_state.get("evaluation") not in ids:
    st.session_state["evaluation"] = url_default("eval", ids[0], str, ids.__contains__)
eid = st.selectbox("Evaluation", ids, key="evaluation", format_func=lambda e: _label(e, *evaluations[e]),
                   help="An evaluation of this run: its k, fuzziness F, combination and methods, and its state.")
to_url(eval=eid)
spec, status = evaluations[eid]
job = jobs.Job(run_id, eid)

with st.expander(f"All evaluations of this run ({len(ids)})", expanded=False):
    st.dataframe(pd.DataFrame([{
        "evaluation": e, "k": s.n_clusters if s else None, "F": s.fuzziness if s else None,
        "combination": s.combination if s else None, "representation": s.representation if s else None,
        "methods": ", ".join(method_label(m) for m in s.methods) if s else None,
        "epochs": (s.epochs or run_spec.train.epochs) if s else None,
        "state": job_status.get("state"), "progress": job_status.get("progress"), "error": job_status.get("error"),
    } for e, (s, job_status) in evaluations.items()]), hide_index=True, key="evaluations")

if spec is None:
    st.error(f"The settings of evaluation {eid} cannot be read (spec.json is damaged or from another version).")
    st.stop()
st.caption(f"k = {spec.n_clusters} · F = {spec.fuzziness:g} · combination: {spec.combination} · representation: "
           f"{spec.representation} · {spec.epochs or run_spec.train.epochs} epochs · methods: "
           f"{', '.join(method_label(m) for m in spec.methods)}")
initial_state = status.get("state")


@st.fragment(run_every=2 if initial_state in jobs.ACTIVE else None)
def status_panel() -> None:
    """Re-runs alone every 2 s while the job is active: progress, Cancel / Resume."""
    if initial_state in jobs.ACTIVE:
        jobs.refresh(store)  # a worker that died is marked interrupted; queued jobs start
    status = jobs.read_status(store, job)
    state = status.get("state", "missing")
    if initial_state in jobs.ACTIVE and state not in jobs.ACTIVE:
        st.rerun()  # finished or stopped: redraw the page once (results, buttons), stop polling
    if state == "completed":
        return
    fraction = clamp_fraction(status.get("progress"))
    text = f"{state} · {fraction:.0%}"
    if state == "running":
        seconds = eta_from_start(status)
        text += (f" · {status['message']}" if status.get("message") else "") + (
            f" · ETA {eta_text(seconds)}" if seconds is not None else "")
    progress_bar(fraction, text)
    if state == "failed":
        st.error(f"The evaluation failed: {status.get('error') or 'no message'}. See the worker log below.")
    elif state == "interrupted":
        st.warning(f"Interrupted{': ' + status['error'] if status.get('error') else ''}. Resume reuses every "
                   "model already trained.")
    job_buttons(store, job, state, name=eid, cancel_help="Stop the evaluation job; it stays resumable.",
                resume_help="Run the evaluation job; models already trained by an interrupted job are reused.")


status_panel()
worker_log(job.log_path(store))

# ---- results -------------------------------------------------------------------------------
results = read_results(store, run_id, eid)
if results is None:
    st.info("The charts and the per-task F1 table appear here when the evaluation has finished.")
    st.stop()

scores = results["methods"]
task_names = results["task_names"]
st.subheader("Mean F1 over tasks")
baseline = scores.get("mtl", {}).get("mean_f1", {}).get("test", [None])[-1]
cols = st.columns(len(scores))
for col, (method, score) in zip(cols, scores.items()):
    final = score["mean_f1"]["test"][-1]
    delta = f"{final - baseline:+.3f} vs MTL" if baseline is not None and method != "mtl" else None
    col.metric(method_label(method), f"{final:.3f}", delta,
               help=f"Test F1 at the last epoch, averaged over the {len(task_names)} tasks; "
                    f"{score['models_trained']} model(s) trained in {score['seconds']:.0f} s.")
st.plotly_chart(f1_curves({m: s["mean_f1"] for m, s in scores.items()}), key="f1_curves")

st.subheader("Final test F1 per task")
table = pd.DataFrame({method_label(m): s["epochs"][-1]["test"]["f1"] for m, s in scores.items()}, index=task_names)
table.index.name = "task"
st.dataframe(table, key="f1_table",
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns})
st.caption("F1 at threshold 0.5 on the test split after the last epoch (0 when a model predicts no positive).")


def _long_table(scores: dict[str, Any], task_names: list[str]) -> pd.DataFrame:
    """Every metric of every method, epoch, split and task, one row each."""
    rows = [{"method": m, "epoch": r["epoch"], "split": split, "task": t, **{k: v[i] for k, v in r[split].items()}}
            for m, s in scores.items() for r in s["epochs"] for split in ("train", "test")
            for i, t in enumerate(task_names)]
    return pd.DataFrame(rows)


d1, d2, d3 = st.columns(3)
d1.download_button("Per-task F1 (CSV)", table.to_csv().encode(), f"f1_{run_id}_{eid}.csv", "text/csv",
                   key="download_f1", help="The table above: each task's final test F1 under each method.")
d2.download_button("All metrics per epoch (CSV)", _long_table(scores, task_names).to_csv(index=False).encode(),
                   f"metrics_{run_id}_{eid}.csv", "text/csv", key="download_metrics",
                   help="F1, accuracy and balanced accuracy of every method, epoch, split (train / test) and task.")
d3.download_button("Results (JSON)", json.dumps(results).encode(), f"evaluation_{run_id}_{eid}.json",
                   "application/json", key="download_json",
                   help="Everything the evaluation stored: its settings, the memberships (tasks × clusters) "
                        "used as loss weights, and every metric per epoch.")
