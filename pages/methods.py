"""Methods: STG-MTL, TAG, Grad-TAE, DMTG and a random grouping of the same tasks, side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app.charts import affinity_heatmap, agreement_heatmap, cluster_order, grouping_label
from app.cluster_charts import membership_heatmap, show
from app.job_panel import clamp_fraction, job_buttons, progress_bar, worker_log
from app.state import completed_run_or_stop, flash, glossary, show_flash, to_url, url_default
from stg_core import jobs
from stg_core.alignment import alignment_scores, match_clusters, pairwise_ari, run_task_groups
from stg_core.evaluation import EvaluationSpec, evaluation_dir, read_results, save_evaluation_spec
from stg_core.grouping import (GROUPING_METHODS, GroupingSpec, default_params, list_groupings, read_grouping,
                               save_grouping_spec)
from stg_core.store import ArtifactStore

METHODS = tuple(GROUPING_METHODS)

#: What each method costs beyond the run's training (the estimate shown before launching).
COST_HINTS = {
    "stg": "instant — clusters the data maps the run already recorded; no pass through the network.",
    "tag": "trains one MTL model again and, every 10 steps, measures a one-step lookahead for every task: about "
           "n extra forward and backward passes per measurement (Θ(n²) work in all).",
    "grad-tae": "no training — per-sample gradients of every task at the run's model (up to 1,000 images, "
                "batched with torch.func), then one logistic regression per random task subset and an SDP.",
    "dmtg": "trains one network with k branches over the shared trunk and k × n heads, the Gumbel-softmax "
            "assignment learnt jointly: roughly the run's training times the branches' extra compute.",
    "random": "instant — a seeded random grouping, the floor every method must beat.",
}

#: An example for the Method parameters inputs, where one helps.
PARAM_HINTS = {"dmtg": ' E.g. {"branch_units": 8, "hard": true, "alpha_lr": 0.001, "epochs": 150}: branches of '
                       "8 units, so that the tasks of a group compete for them, straight-through assignments, and "
                       "the original's single learning rate over more epochs (docs/dmtg-planted.md: the setting that "
                       "found the planted sets on the digit pairs)."}


def _about() -> str:
    """The methods in short, as docs/methods.md states them (one text for the docs and the app)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "methods.md").read_text(encoding="utf-8")
    return text.split("<!-- methods-summary", 1)[1].split("-->", 1)[1].split("<!-- /methods-summary -->", 1)[0].strip()


ABOUT = _about()

st.title("Methods")
st.caption("Which tasks belong together? STG-MTL reads the answer off the data maps of one training; TAG, "
           "Grad-TAE and DMTG find it by other, costlier means, and a random grouping is the floor. Run them on "
           "the same tasks and compare the groupings, what they cost and the F1 they give.")
glossary()
with st.expander("The methods"):
    st.markdown(ABOUT)
show_flash()
store = ArtifactStore()
run_id = completed_run_or_stop(store, "group its tasks here with every method",
                               "the grouping methods need a finished training run (its data maps, its model and data)")
run_spec = store.load_spec(run_id)
names = list(run_spec.task_names)
n_tasks = len(names)

# ---- settings ------------------------------------------------------------------------------
c1, c2, c3 = st.columns([3, 2, 1])
in_k = lambda v: 2 <= v <= n_tasks  # noqa: E731
from_clustering = st.session_state.get("k")  # the Clustering page's slider, if visited
k_default = from_clustering if isinstance(from_clustering, int) and in_k(from_clustering) else min(3, n_tasks)
url_methods = url_default("methods", METHODS, lambda s: tuple(m for m in s.split(",") if m),
                          lambda ms: all(m in METHODS for m in ms))
chosen_widget = c1.multiselect(
    "Methods", METHODS, default=list(url_methods), format_func=grouping_label, key="group_methods",
    help="Grouping methods to run on this run's tasks: STG-MTL (data maps), TAG (lookahead affinity during a "
         "training), Grad-TAE (per-sample gradients at the run's model), DMTG (differentiable grouping with k "
         "branches) and a random grouping as the floor.")
k_help = "Number of groups every method forms (for DMTG an upper bound: groups it leaves empty are reported)."
if n_tasks > 2:
    k = c2.slider("Groups k", 2, n_tasks, url_default("k", k_default, int, in_k), key="methods_k", help=k_help)
else:
    k = int(c2.number_input("Groups k", 2, 2, 2, disabled=True, key="methods_k", help=k_help))
seed = int(c3.number_input(
    "Seed", min_value=0, max_value=2**31 - 1, value=url_default("seed", 0, int, lambda v: 0 <= v < 2**31), step=1,
    key="methods_seed",
    help="Seed of each method's own randomness (k-means start, TAG's and DMTG's batches, Grad-TAE's projection "
         "and subsets, the random grouping). The model weights start from the run's seed."))
chosen = [m for m in METHODS if m in chosen_widget]  # canonical order
to_url(k=k, seed=seed, methods=",".join(chosen))


def _no_constant(name: str) -> None:
    raise ValueError(f"its parameters hold {name}, which is not a number here")


def _params(text: str) -> dict[str, Any]:
    """A method's parameters typed as a JSON object (empty: its defaults)."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"its parameters are not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, dict):
        raise ValueError('its parameters must be a JSON object such as {"name": value}')
    return value


with_defaults = {m: default_params(m) for m in chosen}
texts: dict[str, str] = {}
if any(with_defaults.values()):
    with st.expander("Method parameters"):
        st.caption("Each method's parameters as a JSON object; empty: the defaults shown. Other parameters give "
                   "another grouping, kept beside the default one (docs/methods.md).")
        for method, defaults in with_defaults.items():
            if defaults:
                texts[method] = st.text_input(
                    grouping_label(method), url_default(f"params_{method}", "", str), key=f"params_{method}",
                    placeholder=json.dumps(defaults),
                    help=f"Only the parameters of {grouping_label(method)} that differ from its defaults (shown "
                         "in grey), as a JSON object." + PARAM_HINTS.get(method, ""))

for method, text in texts.items():  # parameters that differ from the defaults go into the URL, as k and the seed do
    if text.strip():
        to_url(**{f"params_{method}": text.strip()})
    else:
        st.query_params.pop(f"params_{method}", None)

specs: dict[str, GroupingSpec] = {}
ids: dict[str, str] = {}
problems = []
for method in chosen:
    try:
        spec = GroupingSpec(run_id, method, k, seed, params=_params(texts.get(method, "")))
        spec.validate(n_tasks)
        ids[method] = spec.grouping_id()
    except (ValueError, TypeError, ImportError) as exc:  # a method that cannot run here is named, the others run
        problems.append(f"{grouping_label(method)}: {exc}")
    else:
        specs[method] = spec
for problem in problems:
    st.error(f"Cannot group with {problem}")
if not chosen:
    st.error("No method selected: pick at least one grouping method.")

def submit_all(saves: dict[str, Any], done: str, failed: str) -> None:
    """Save and submit one background job per method (``saves``: method -> a function that saves
    the spec and returns its :class:`jobs.Job`). A method that fails is named; the others still
    run. All submitted: a success message and a rerun; else the errors and what did start."""
    states, failures = {}, []
    for method, save in saves.items():
        try:
            states[method] = jobs.submit(store, save())
        except (ValueError, OSError) as exc:  # shown, and the other methods still launch
            failures.append(f"{grouping_label(method)}: {exc}")
    text = f"{done}: " + ", ".join(f"{grouping_label(m)} {s}" for m, s in states.items()) + "."
    if not failures:
        flash("success", text)
        st.rerun()
    st.error(f"{failed} " + "; ".join(failures))
    if states:
        st.success(text)


seconds = sum(float(r.get("seconds", 0.0)) for r in store.read_metrics(run_id))
if specs:
    with st.container(border=True):
        st.markdown(f"**Estimated cost** (the run's own training took {seconds:.0f} s for "
                    f"{run_spec.train.epochs} epochs)")
        for method in specs:
            st.caption(f"**{grouping_label(method)}** — {COST_HINTS.get(method, '')}")
    if st.button("Launch", type="primary", key="launch_groupings",
                 help="Save one grouping per chosen method with these settings and run each as a background job "
                      "(one at a time; the same settings twice reuse the same job and its result)."):
        submit_all({m: (lambda spec=spec: jobs.Job(run_id, grouping_id=save_grouping_spec(spec, store)))
                    for m, spec in specs.items()}, "Launched", "Could not launch")


def job_panel(entries: list[tuple[str, str, jobs.Job]], what: str) -> None:
    """Status of background jobs ``(key, label, job)``: progress, errors with the worker log,
    Cancel / Resume. Polled every 2 s while any is active, then one full rerun."""
    initial = {key: jobs.read_status(store, job).get("state") for key, _, job in entries}
    active = any(s in jobs.ACTIVE for s in initial.values())

    @st.fragment(run_every=2 if active else None)
    def panel() -> None:
        if active:
            jobs.refresh(store)  # a worker that died is marked interrupted; queued jobs start
        statuses = {key: jobs.read_status(store, job) for key, _, job in entries}
        if active and not any(s.get("state") in jobs.ACTIVE for s in statuses.values()):
            st.rerun()  # all finished or stopped: redraw the page once (results), stop polling
        for key, label, job in entries:
            status = statuses[key]
            state = status.get("state", "missing")
            if state == "completed":
                continue
            fraction = clamp_fraction(status.get("progress"))
            text = f"{label} · {state} · {fraction:.0%}"
            if state == "running" and status.get("message"):
                text += f" · {status['message']}"
            progress_bar(fraction, text)
            if state == "failed":
                st.error(f"{label}: the {what} failed: {status.get('error') or 'no message'}.")
                worker_log(job.log_path(store), label=f"Worker log · {label}", lines=100)
            elif state == "interrupted":
                st.warning(f"{label}: interrupted{': ' + status['error'] if status.get('error') else ''}.")
            job_buttons(store, job, state, name=label, key=key, cancel_help=f"Stop this {what} job; it can be resumed.",
                        resume_help=f"Run this {what} job again in the background.")

    panel()


# ---- the chosen methods' groupings ------------------------------------------------------------
try:
    everything = list_groupings(store, run_id)
except (ValueError, KeyError, TypeError, OSError) as exc:  # a damaged or foreign spec.json
    st.error(f"The run's list of groupings cannot be read: {exc}")
    everything = []
listed = {gid for gid, _ in everything}
saved = {m: ids[m] for m in specs if ids[m] in listed}
if everything:
    with st.expander(f"All groupings of this run ({len(everything)})"):
        st.dataframe(pd.DataFrame([{
            "grouping": gid, "method": grouping_label(g.method), "k": g.n_clusters, "seed": g.seed,
            "state": jobs.read_status(store, jobs.Job(run_id, grouping_id=gid)).get("state"),
            "params": json.dumps(g.resolved_params(), sort_keys=True)} for gid, g in everything]), hide_index=True,
            key="all_groupings")
        st.caption("The page shows the groupings of the methods, k, seed and parameters chosen above; pick "
                   "those settings to see another one.")
if not saved:
    st.info(f"No grouping of this run with k = {k} and seed {seed} yet: pick the methods above and **Launch**.")
    st.stop()

st.subheader("Grouping jobs")
job_panel([(m, grouping_label(m), jobs.Job(run_id, grouping_id=gid)) for m, gid in saved.items()], "grouping")
results = {}
for method, gid in saved.items():
    try:
        result = read_grouping(store, run_id, gid)
    except (ValueError, TypeError, KeyError, OSError) as exc:
        st.error(f"The stored {grouping_label(method)} grouping {gid} cannot be read: {exc}")
        continue
    if result is not None:
        results[method] = result
st.caption(" · ".join(f"{grouping_label(m)}: " + ("done" if m in results else "not finished" if m in saved else
                                                  "not launched with these settings") for m in specs))
if not results:
    st.info("The groupings appear here side by side as soon as their jobs have finished.")
    st.stop()

# ---- memberships, tasks in one order -----------------------------------------------------------
reference = "stg" if "stg" in results else next(iter(results))
ref_memberships = results[reference].memberships
order = cluster_order(ref_memberships)
shown = {m: r.memberships if m == reference else match_clusters(r.memberships, ref_memberships)
         for m, r in results.items()}
st.subheader("Groupings side by side")
st.caption(f"Tasks in the same order in every heatmap ({grouping_label(reference)}'s clusters); cluster numbers "
           f"matched to {grouping_label(reference)}'s, so the same column holds the same group where methods agree.")
per_row = 3
methods_done = list(results)
for start in range(0, len(methods_done), per_row):
    cols = st.columns(per_row)
    for col, method in zip(cols, methods_done[start:start + per_row]):
        show(col, membership_heatmap(shown[method], names, order=order, title=grouping_label(method)),
             f"heatmap_{method}")

st.subheader("Warnings and notes: collapse, fallbacks, early settling, deviations")
for method, result in results.items():
    if not result.notes and not result.warnings:
        st.caption(f"**{grouping_label(method)}**: no deviation, fallback or collapse to report.")
    for warning in result.warnings:
        st.warning(f"**{grouping_label(method)}**: {warning}")
    for note in result.notes:
        st.caption(f"**{grouping_label(method)}**: {note}")

labels = {m: shown[m].argmax(1) for m in results}
if len(results) < 2:
    st.caption("Agreement between methods: no other method to compare with yet.")
else:
    st.subheader("Agreement between methods")
    ari = pairwise_ari(labels)
    left, right = st.columns(2)
    left.plotly_chart(agreement_heatmap(ari, methods_done), key="agreement_heatmap")
    ari_table = pd.DataFrame(ari, index=[grouping_label(m) for m in methods_done],
                             columns=[grouping_label(m) for m in methods_done])
    right.dataframe(ari_table, key="agreement",
                    column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ari_table.columns})
    right.caption("Adjusted Rand index of the hard groupings (each task in its largest-membership cluster): 1 for "
                  "identical groupings, about 0 for unrelated ones.")

with_affinity = {m: r.affinity for m, r in results.items() if r.affinity is not None}
if with_affinity:
    st.subheader("Task affinity")
    cols = st.columns(min(len(with_affinity), 2))
    for i, (method, affinity) in enumerate(with_affinity.items()):
        cols[i % len(cols)].plotly_chart(
            affinity_heatmap(affinity, names, order, title=f"{grouping_label(method)}: task affinity"),
            key=f"affinity_{method}")
    st.caption("Entry (i, j): how much task i helps task j, in each method's own units (TAG: relative drop of "
               "task j's loss after a step on task i; Grad-TAE: standardised score). Tasks in the order above.")
else:
    st.caption("None of these methods gives an affinity matrix (TAG and Grad-TAE do).")

st.subheader("Cost")
cost = pd.DataFrame([{
    "method": grouping_label(m), "wall s": r.cost.wall_seconds, "models trained": r.cost.models_trained,
    "extra forward passes": r.cost.extra_forward_passes, "extra backward passes": r.cost.extra_backward_passes,
    "compute factor": r.cost.compute_factor, "reused training s": r.cost.reused_training_seconds,
} for m, r in results.items()]).set_index("method")
st.dataframe(cost, key="cost", column_config={
    "wall s": st.column_config.NumberColumn(format="%.2f", help="Wall time of the method's own work."),
    "compute factor": st.column_config.NumberColumn(format="%.2f", help="Cost of one training step relative to "
                                                                         "plain MTL (DMTG's branches)."),
    "reused training s": st.column_config.NumberColumn(format="%.1f", help="The run's training that the method "
                                                                            "builds on without redoing it."),
})
st.caption("Extra passes: minibatch passes through the network beyond those of one plain MTL training of the same "
           "length. Models trained include the run's training when a method builds on it.")


@st.cache_data(max_entries=64, show_spinner=False)
def _alignment(labels: tuple[int, ...], known: tuple[str, ...]) -> dict:
    return alignment_scores(np.asarray(labels), list(known))


groups = run_task_groups(store, run_id)
if len(set(groups.values())) >= 2:
    st.subheader("Alignment with the known groups")
    rows = []
    for method in results:
        scores = _alignment(tuple(int(labels[method][names.index(t)]) for t in groups), tuple(groups.values()))
        rows.append({"method": grouping_label(method),
                     **{f"{label}": scores[m] for m, label in (("ari", "ARI"), ("nmi", "NMI"), ("purity", "purity"))},
                     **{f"{label} chance": scores["chance"][m]["mean"]
                        for m, label in (("ari", "ARI"), ("nmi", "NMI"), ("purity", "purity"))}})
    st.dataframe(pd.DataFrame(rows).set_index("method"), key="alignment",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("ARI", "NMI", "purity", "ARI chance", "NMI chance", "purity chance")})
    st.caption(f"Against the dataset's own groups of classes ({len(groups)} one-vs-rest tasks have one); chance: "
               "the mean over random permutations of each grouping's labels (same cluster sizes).")
else:
    st.caption("This dataset has no known super-groups to compare the groupings with.")

# ---- F1 of each grouping, through the evaluation machinery ------------------------------------
st.subheader("F1 of these groupings")
st.caption("One evaluation per grouping: one specialised model per group, trained on the run's data with the "
           "grouping's memberships as loss weights (soft memberships: STG-MTL soft; one-hot: STG-MTL hard).")
f1_epochs = st.number_input(
    "Training epochs", min_value=1, max_value=1000, value=None, step=1, key="f1_epochs",
    placeholder=f"{run_spec.train.epochs} (the run's)",
    help="Epochs of every specialised model. Empty: as many as the run that the groupings come from.")


def _evaluation_spec(result: Any) -> EvaluationSpec:
    memberships = tuple(tuple(round(float(v), 6) for v in row) for row in result.memberships)
    return EvaluationSpec(run_id, k, methods=("stg-hard",) if result.is_hard else ("stg",), memberships=memberships,
                          epochs=int(f1_epochs) if f1_epochs is not None else None)


evaluations = {m: _evaluation_spec(r) for m, r in results.items()}
if st.button("Evaluate F1 of these groupings", key="evaluate_f1",
             help="Save one evaluation per finished grouping and run them as background jobs (one at a time); a "
                  "grouping already evaluated with these epochs is reused."):
    submit_all({m: (lambda spec=spec: jobs.Job(run_id, save_evaluation_spec(spec, store)))
                for m, spec in evaluations.items()}, "Evaluations", "Could not evaluate")

eval_ids = {m: s.evaluation_id() for m, s in evaluations.items()}
launched = {m: e for m, e in eval_ids.items() if (evaluation_dir(store, run_id, e) / "spec.json").exists()}
if launched:
    job_panel([(f"eval_{m}", f"F1 of {grouping_label(m)}", jobs.Job(run_id, e)) for m, e in launched.items()],
              "evaluation")
    rows = []
    for method, eid in launched.items():
        scores = read_results(store, run_id, eid)
        evaluated = evaluations[method].methods[0]
        row: dict[str, Any] = {"method": grouping_label(method),
                               "evaluated as": "soft" if evaluated == "stg" else "hard", "evaluation": eid}
        if scores is not None:
            s = scores["methods"][evaluated]
            row.update({"mean test F1": s["mean_f1"]["test"][-1], "mean train F1": s["mean_f1"]["train"][-1],
                        "models trained": s["models_trained"]})
        else:
            row["state"] = jobs.read_status(store, jobs.Job(run_id, eid)).get("state", "missing")
        rows.append(row)
    table = pd.DataFrame(rows).set_index("method")
    st.dataframe(table, key="f1", column_config={c: st.column_config.NumberColumn(format="%.3f")
                                                 for c in ("mean test F1", "mean train F1") if c in table})
    st.caption("Mean F1 over tasks after the last epoch (threshold 0.5). Compare with MTL and STL on the "
               "**Evaluation** page.")
else:
    st.caption("Not evaluated yet with these epochs: **Evaluate F1 of these groupings** trains the specialised "
               "models in the background.")

# ---- downloads -------------------------------------------------------------------------------
side = pd.DataFrame(index=pd.Index([names[i] for i in order], name="task"))
for method in results:
    side[f"{method} cluster"] = labels[method][order]
for method in results:
    for j in range(k):
        side[f"{method} membership {j}"] = shown[method][order, j].round(6)
payload = {"run": run_id, "k": k, "seed": seed, "tasks": names, "reference_order": [names[i] for i in order],
           "groupings": {m: {"grouping_id": saved[m], **r.to_json()} for m, r in results.items()}}
if len(results) >= 2:
    payload["agreement_ari"] = {"methods": methods_done, "matrix": pairwise_ari(labels).round(6).tolist()}
d1, d2 = st.columns(2)
d1.download_button("Groupings side by side (CSV)", side.to_csv().encode(), f"groupings_{run_id}_k{k}.csv",
                   "text/csv", key="download_groupings_csv",
                   help="One row per task (in the order above): each method's cluster (numbers matched across "
                        "methods) and its memberships.")
d2.download_button("Groupings (JSON)", json.dumps(payload).encode(), f"groupings_{run_id}_k{k}.json",
                   "application/json", key="download_groupings_json",
                   help="Every method's grouping as stored (memberships, labels and cluster numbers as the method "
                        "gave them, affinity, cost, notes, details), plus the pairwise ARI.")
