"""Training: every run with its state; the active run's progress, curves, log and data maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.charts import datamap_density, subsample
from app.cluster_charts import show
from app.job_panel import eta_text, job_buttons, progress_bar, worker_log
from app.state import (PAGE_FILES, active_run, flash, glossary, run_label, run_problems_or_stop, show_flash, to_url,
                       url_default)
from app.training_charts import datamap_timeline, training_curves
from stg_core import jobs, locks
from stg_core.datamaps import data_maps_at
from stg_core.store import ArtifactStore, format_bytes

st.title("Training")
st.caption("One multi-task model trains on all tasks; every epoch records each task's p_true for every "
           "training sample — its data map.")
glossary()
show_flash()
store = ArtifactStore()
runs = store.list_runs(disk_usage=True)
if not runs:
    st.info("No training run yet. Launch one from the Experiment page (the digits presets train in seconds).")
    st.page_link(PAGE_FILES["experiment"], label="Experiment →")
    st.stop()

with st.expander(f"All runs ({len(runs)})", expanded=len(runs) > 1):
    table = pd.DataFrame(runs)
    table["disk"] = table.pop("disk_bytes").map(format_bytes)
    st.dataframe(table, hide_index=True, width="stretch", key="runs")

run_id = active_run()
spec = store.load_spec(run_id)
job = jobs.Job(run_id)
initial_state = store.read_status(run_id).get("state")


@st.fragment(run_every=2 if initial_state in jobs.ACTIVE else None)
def progress_panel() -> None:
    """Re-runs alone every 2 s while the job is active: heading, progress, buttons, curves."""
    status = store.read_status(run_id)
    state = status.get("state", "missing")
    st.subheader(run_label({**next(r for r in runs if r["id"] == run_id), "state": state,
                            "epochs_done": status.get("epochs_done", 0)}))
    if initial_state in jobs.ACTIVE and state not in jobs.ACTIVE:
        st.rerun()  # finished or stopped: redraw the whole page once (data maps, buttons), stop polling
    done, total = status.get("epochs_done", 0), spec.train.epochs
    fraction = status.get("progress") if state == "running" else None
    if not isinstance(fraction, (int, float)):  # not yet reported (or a status written by an older worker)
        fraction = done / total
    label = f"{state} · epoch {done}/{total}"
    if state == "running":
        label += f" · ETA {eta_text(status.get('eta_seconds'))}"
    progress_bar(fraction, label)
    if state == "failed":
        st.error(f"Training failed: {status.get('error') or 'no message'}. See the worker log below.")
    elif state == "interrupted" and status.get("error"):
        st.warning(f"Interrupted: {status['error']}. Resume continues from the last finished epoch.")
    writer = jobs.writer_pid(store, job) if state == "running" else None
    if writer and not locks.is_worker(writer):
        st.info(f"Run {run_id} is being trained by process {writer}, started outside the app (the command line, "
                "say): progress shows here; stop it where it runs.")
    job_buttons(store, job, state, name=run_id, cancel_help="Stop the worker; the run stays resumable.",
                resume_help="Continue training from the last finished epoch.", start_label="Resume")
    metrics = store.read_metrics(run_id)
    if metrics:
        show(st, training_curves(metrics), "curves")


progress_panel()
worker_log(job.log_path(store), placeholder="(no log yet)")


def delete_panel() -> None:
    """The run's disk usage, and deleting its derived results or the whole run (after a
    confirmation; refused while one of its jobs is being written)."""
    st.caption(f"{format_bytes(store.disk_usage(run_id))} on disk: data maps, checkpoint, evaluations and "
               "groupings.")
    confirm = st.checkbox("I want to delete: this cannot be undone", key="confirm_delete",
                          help="Unlocks the two Delete buttons; a deleted run has to be trained again.")
    b1, b2 = st.columns(2)
    derived = b1.button("Delete evaluations and groupings", key="delete_derived", disabled=not confirm,
                        help="Keep the run and its data maps; remove what was computed from them.")
    whole = b2.button("Delete this run", key="delete_run", disabled=not confirm, type="primary",
                      help="Remove the run's folder: data maps, checkpoint, evaluations, groupings.")
    if not (derived or whole):
        return
    try:
        freed = jobs.delete(store, run_id, derived_only=derived)
    except ValueError as exc:  # locks.JobBusyError: a job of the run is being written
        st.error(f"Not deleted: {exc}.")
        return
    what = f"evaluations and groupings of run {run_id}" if derived else f"run {run_id}"
    flash("success", f"Deleted the {what} ({format_bytes(freed)} freed).")
    st.rerun()


with st.expander("Disk usage and deletion"):
    delete_panel()

# ---- data maps ---------------------------------------------------------------------------
st.subheader("Data maps")
recorded = store.recorded_epochs(run_id)
if not recorded:
    st.info("No epoch recorded yet: the data maps appear after the first epoch.")
    st.stop()
run_problems_or_stop(store, run_id)
names = list(spec.task_names)
info = store.read_dataset_info(run_id)
class_names = info.get("class_names", [])
colourings = ["task label", "correctness"] + (["class"] if info.get("kind") == "classes" and len(class_names) <= 20
                                              else [])
c1, c2, c3 = st.columns(3)
task = c1.selectbox("Task", names, index=names.index(url_default("task", names[0], str, names.__contains__)),
                    key="task", help="Whose data map to draw: each point is a training sample.")
other = c2.selectbox("Compare with", ["(none)", *names], key="task2", help="A second task, drawn beside the first.")
color_by = c3.radio("Colour by", colourings, key="color_by", horizontal=True,
                    help="task label: the sample's label for this task (positive / negative); correctness: the "
                         "fraction of epochs with p_true > 0.5; class: the sample's original class (offered up to "
                         "20 classes — the class is always on hover).")
to_url(task=task)
POINTS = 2_000  # points drawn: 2,000 over 50 epochs stay under 2 MB sent to the browser


@st.cache_data(max_entries=16, show_spinner="Computing the data map…")
def _task_maps(root: str, run: str, task_index: int, epochs: tuple[int, ...]) -> dict[str, np.ndarray]:
    """One task's data map at every epoch, from one p_true row per epoch (running sums): the
    drawn points' confidence / variability ``(n_epochs, n_points)`` and correctness, their
    indices, and the density of all samples ``(n_epochs, 50, 50)`` when they are too many to draw."""
    s = ArtifactStore(root)
    p = s.load_task_p_true(run, task_index, list(range(1, epochs[-1] + 1)))
    labels = s.read_array(run, "samples/labels")[:, task_index]
    keep = subsample(p.shape[1], POINTS, labels=labels)
    maps = data_maps_at(iter(p[:, None, :]), epochs)  # each epoch's p_true as (1, N)
    confidence = np.stack([m.confidence[0] for m in maps])
    variability = np.stack([m.variability[0] for m in maps])
    out = {"keep": keep, "confidence": confidence[:, keep], "variability": variability[:, keep],
           "correctness": maps[-1].correctness[0][keep], "labels": labels[keep]}
    if p.shape[1] > len(keep):
        out["density"] = datamap_density(confidence, variability)
    return out


classes = store.read_array(run_id, "samples/classes")
shown = [task] if other in ("(none)", task) else [task, other]
columns = st.columns(len(shown))
for col, name in zip(columns, shown):
    maps = _task_maps(str(store.root), run_id, names.index(name), tuple(recorded))
    keep = maps["keep"]
    hover = [class_names[c] if 0 <= c < len(class_names) else "" for c in classes[keep]] if class_names else None
    if color_by == "task label":
        color, title, categorical = np.where(maps["labels"] > 0, "positive", "negative"), "label", True
    elif color_by == "class":
        color, title, categorical = np.array(hover), "class", True
    else:
        color, title, categorical = maps["correctness"], "correctness", False
    show(col, datamap_timeline(maps["confidence"], maps["variability"], recorded, color, title,
                               categorical=categorical, title=f"data map of {name}",
                               hover=None if color_by == "class" else hover, density=maps.get("density")),
         f"datamap_{name}")
n_samples = len(classes)
if n_samples > POINTS:
    st.caption(f"Points: a seeded sample of {POINTS:,} of the {n_samples:,} training samples (the task's positives "
               f"get up to half of them); grey shading: the density of all {n_samples:,}, epoch by epoch.")
