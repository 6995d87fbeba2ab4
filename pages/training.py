"""Training: every run with its state; the active run's progress, curves, log and data maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.charts import datamap_animation, subsample, training_curves
from app.state import PAGE_FILES, active_run, glossary, run_label, show_flash, to_url, url_default
from stg_core import jobs
from stg_core.datamaps import data_maps_at
from stg_core.store import ArtifactStore

st.title("Training")
st.caption("One multi-task model trains on all tasks; every epoch records each task's p_true for every "
           "training sample — its data map.")
glossary()
show_flash()
store = ArtifactStore()
runs = store.list_runs()
if not runs:
    st.info("No training run yet. Launch one from the Experiment page (the digits presets train in seconds).")
    st.page_link(PAGE_FILES["experiment"], label="Experiment →")
    st.stop()

with st.expander(f"All runs ({len(runs)})", expanded=len(runs) > 1):
    st.dataframe(pd.DataFrame(runs), hide_index=True, width="stretch", key="runs")

run_id = active_run()
spec = store.load_spec(run_id)
job = jobs.Job(run_id)
initial_state = store.read_status(run_id).get("state")


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


@st.fragment(run_every=2 if initial_state in jobs.ACTIVE else None)
def progress_panel() -> None:
    """Re-runs alone every 2 s while the job is active: progress, buttons, curves."""
    status = store.read_status(run_id)
    state = status.get("state", "missing")
    if initial_state in jobs.ACTIVE and state not in jobs.ACTIVE:
        st.rerun()  # finished or stopped: redraw the whole page once (data maps, buttons), stop polling
    done, total = status.get("epochs_done", 0), spec.train.epochs
    fraction = status.get("progress", done / total) if state == "running" else done / total
    label = f"{state} · epoch {done}/{total}"
    if state == "running":
        label += f" · ETA {_eta(status.get('eta_seconds'))}"
    st.progress(min(max(float(fraction), 0.0), 1.0), text=label)
    if state == "failed":
        st.error(f"Training failed: {status.get('error') or 'no message'}. See the worker log below.")
    elif state == "interrupted" and status.get("error"):
        st.warning(f"Interrupted: {status['error']}. Resume continues from the last finished epoch.")
    b1, b2, _ = st.columns([1, 1, 4])
    if state in jobs.ACTIVE and b1.button("Cancel", key="cancel", help="Stop the worker; the run stays resumable."):
        st.toast(f"{run_id}: {jobs.cancel(store, job)}")
    if state in ("interrupted", "failed", "created") and b2.button(
            "Resume", key="resume", help="Continue training from the last finished epoch."):
        st.toast(f"{run_id}: {jobs.submit(store, job)}")
        st.rerun()
    metrics = store.read_metrics(run_id)
    if metrics:
        st.plotly_chart(training_curves(metrics), key="curves")


st.subheader(run_label(next(r for r in runs if r["id"] == run_id)))
progress_panel()
log = job.log_path(store)
with st.expander("Worker log"):
    st.code("\n".join(log.read_text(errors="replace").splitlines()[-200:]) if log.exists() else "(no log yet)",
            language=None)

# ---- data maps ---------------------------------------------------------------------------
st.subheader("Data maps")
recorded = store.recorded_epochs(run_id)
if not recorded:
    st.info("No epoch recorded yet: the data maps appear after the first epoch.")
    st.stop()
names = list(spec.task_names)
info = store.read_dataset_info(run_id)
c1, c2, c3 = st.columns(3)
task = c1.selectbox("Task", names, index=names.index(url_default("task", names[0], str, names.__contains__)),
                    key="task", help="Whose data map to draw: each point is a training sample.")
other = c2.selectbox("Compare with", ["(none)", *names], key="task2", help="A second task, drawn beside the first.")
color_by = c3.radio("Colour by", ["class", "correctness"], key="color_by", horizontal=True,
                    help="class: the sample's original class; correctness: fraction of epochs where p_true > 0.5.")
to_url(task=task)


@st.cache_data(max_entries=32, show_spinner="Computing data maps…")
def _task_maps(root: str, run: str, task_index: int, epochs: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Confidence, variability and correctness ``(n_epochs, n_points)`` of one task on the drawn subsample."""
    p = ArtifactStore(root).load_task_p_true(run, task_index, list(range(1, epochs[-1] + 1)))
    keep = subsample(p.shape[1])
    maps = data_maps_at(iter(p[:, None, keep]), epochs)  # each epoch's p_true as (1, n_points)
    return tuple(np.stack([getattr(m, f)[0] for m in maps]) for f in ("confidence", "variability", "correctness"))


classes = store.read_array(run_id, "samples/classes")
class_names = info.get("class_names", [])
shown = [task] if other in ("(none)", task) else [task, other]
columns = st.columns(len(shown))
for col, name in zip(columns, shown):
    confidence, variability, correctness = _task_maps(str(store.root), run_id, names.index(name), tuple(recorded))
    keep = subsample(len(classes))
    if color_by == "class" and info.get("kind") == "classes":
        color, categorical = np.array([class_names[c] for c in classes[keep]]), True
    else:
        color, categorical = correctness[-1], False
    col.plotly_chart(datamap_animation(confidence, variability, recorded, color,
                                       "class" if categorical else "correctness", categorical=categorical,
                                       title=f"data map of {name}"), key=f"datamap_{name}")
if len(classes) > 10_000:
    st.caption(f"Drawing a fixed subsample of 10,000 of the {len(classes):,} training samples.")
