"""Experiment: pick a dataset and a task set, set the training, see an estimate, launch."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from app.state import PAGE_FILES, flash, glossary, set_active_run, show_flash
from app.task_builder import apply_edits, new_task, rows_table, to_tasks
from stg_core import jobs
from stg_core.config import PRECISIONS, ExperimentSpec, TrainConfig, data_fingerprint
from stg_core.data import (DATASET_NAMES, Dataset, DatasetNotFoundError, check_data_root, dataset_status,
                           load_dataset, subset_dataset)
from stg_core.models import MODEL_NAMES
from stg_core.store import ArtifactStore
from stg_core.tasks import PRESETS, build_labels, tasks_from_text, validate_tasks
from stg_core.training import estimate_run_seconds, save_run_spec, seeded_model

st.title("Experiment")
st.caption("Define binary tasks on a dataset and train one multi-task model on all of them; its data maps "
           "are what the tasks get grouped by.")
glossary()
show_flash()
store = ArtifactStore()


@st.cache_resource(max_entries=3, show_spinner="Loading the dataset…")
def _dataset(name: str, root: str | None) -> Dataset:
    return load_dataset(name, root=root)


@st.cache_data(max_entries=32, show_spinner="Timing a few training steps on this device…")
def _estimate(spec_json: str, image_shape: tuple[int, int, int], n_train: int, n_test: int) -> float:
    return estimate_run_seconds(ExperimentSpec.from_json(json.loads(spec_json)), image_shape, n_train, n_test)


def _validated_upload(content: bytes) -> Path:
    """Check an uploaded .npz in a scratch folder; only a valid file reaches the store."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.npz"
        path.write_bytes(content)
        load_dataset("npz", root=path)  # raises ValueError naming the problem
    return store.save_upload(content, ".npz")


# ---- 1. dataset ----------------------------------------------------------------------
st.subheader("1 · Dataset")
statuses = {n: dataset_status(n) for n in DATASET_NAMES if n != "npz"}
with st.expander("Datasets on this machine"):
    st.dataframe(pd.DataFrame([{"dataset": n, "available": s.available, "where / how to get it": s.location or s.message}
                               for n, s in statuses.items()]), hide_index=True)
dataset_name = st.selectbox(
    "Dataset", DATASET_NAMES, key="dataset",
    format_func=lambda n: "npz (your own file)" if n == "npz" else n + ("" if statuses[n].available else " (not here)"),
    help="The images the tasks are defined on. digits ships with scikit-learn and always works offline.")

data_root: str | None = None
fingerprint = ""
try:
    if dataset_name == "npz":
        upload = st.file_uploader("Your .npz file", type=["npz"], key="npz_upload",
                                  help="Arrays 'x' (uint8 images, (N, H, W[, C])) and 'y' (integer labels) or "
                                       "'attributes' (0/1 matrix); optional 'x_test', 'y_test', 'class_names'. "
                                       "Loaded without pickle.")
        if upload is None:
            st.info("Upload an .npz file to define tasks on your own images.")
            st.stop()
        content = upload.getvalue()
        fingerprint = data_fingerprint(content)
        data_root = str(_validated_upload(content))
    else:
        folder = st.text_input("Data folder (optional)", key="data_root",
                               help="Where to look for the dataset's files first. Must be inside the default data "
                                    "folder or a folder listed in STG_DATA_ROOTS.")
        if folder.strip():
            data_root = str(check_data_root(folder))
        status = dataset_status(dataset_name, data_root)
        if not status.available:
            # A folder the user typed that holds no dataset is bad input (an error); no folder typed
            # is the normal state of a dataset not installed yet (a warning saying how to get it).
            (st.error if data_root else st.warning)(f"**{dataset_name}** is not available here: {status.message}")
            st.stop()
    dataset = _dataset(dataset_name, data_root)
except (ValueError, DatasetNotFoundError) as exc:
    st.error(str(exc))
    st.stop()
st.caption(f"{dataset.source or dataset_name}: {len(dataset.x_train):,} training and {len(dataset.x_test):,} test "
           f"images of {'×'.join(map(str, dataset.image_shape))}, {len(dataset.class_names)} "
           f"{'classes' if dataset.kind == 'classes' else 'attributes'}.")

# ---- 2. tasks --------------------------------------------------------------------------
st.subheader("2 · Tasks")
presets = [p for p in PRESETS.values() if p.dataset == dataset_name]
source = st.radio("Task set", ["Preset", "Custom"] if presets else ["Custom"], key="task_source", horizontal=True,
                  help="A preset of the paper (G1: one task per class; G2: plus complementary, random and flipped "
                       "tasks) or tasks you build yourself.")
custom_all: dict[str, list] = st.session_state.setdefault("custom_tasks", {})
editor_key = f"task_editor_{dataset_name}_{st.session_state.setdefault('task_editor_version', 0)}"


def _commit_editor() -> list[dict]:
    """Fold the table's pending renames / removals into the stored rows and reset the table."""
    rows = apply_edits(custom_all.get(dataset_name, []), st.session_state.get(editor_key))
    st.session_state["task_editor_version"] += 1
    return rows


def _add(kind: str, positives: tuple[str, ...] = (), name: str = "") -> None:
    rows = _commit_editor()
    try:
        rows.append(new_task(kind, rows, positives, name))
    except ValueError as exc:
        st.session_state["task_builder_error"] = str(exc)
    custom_all[dataset_name] = rows


def _add_preset(preset_name: str) -> None:
    rows = _commit_editor()
    taken = {r["name"] for r in rows}
    rows += [t.to_json() for t in PRESETS[preset_name].tasks if t.name not in taken]
    custom_all[dataset_name] = rows


def _add_file() -> None:
    rows = _commit_editor()
    file = st.session_state.get("tasks_file")
    try:
        if file is None:
            raise ValueError("choose a JSON task file first")
        rows += [t.to_json() for t in tasks_from_text(file.getvalue(), repr(file.name))]
    except Exception as exc:  # noqa: BLE001 -- a user's file: whatever the parser raises is a message here
        st.session_state["task_builder_error"] = f"task file: {exc}"
    custom_all[dataset_name] = rows


preset_name = None
if source == "Preset":
    preset_name = st.selectbox("Preset", [p.name for p in presets], key="preset",
                               help="Task sets of the paper (G1–G4) and their counterparts for this dataset.")
    tasks = PRESETS[preset_name].tasks
    st.caption(PRESETS[preset_name].description)
    st.dataframe(rows_table([t.to_json() for t in tasks]), hide_index=True, height=min(400, 36 + 35 * len(tasks)))
else:
    classes = list(dataset.class_names)
    c1, c2, c3 = st.columns([3, 2, 1], vertical_alignment="bottom")
    kind = "classes" if dataset.kind == "classes" else "attribute"
    picked = c1.multiselect("Positive classes" if kind == "classes" else "Attribute", classes, key="new_classes",
                            max_selections=None if kind == "classes" else 1,
                            help="Images of these classes are the task's positives; all others its negatives "
                                 "(one class = one-vs-rest)." if kind == "classes" else
                                 "The attribute column that labels the task.")
    new_name = c2.text_input("Task name", key="new_name", help="Leave empty for a name made from the classes.")
    c3.button("Add task", key="add_classes", on_click=_add, args=(kind, tuple(picked), new_name),
              help="Add this task to the task set below (rename or remove it there).")
    b1, b2, b3 = st.columns(3)
    b1.button("Add random task", key="add_random", on_click=_add, args=("random",),
              help="Seeded Bernoulli(0.5) labels: a task related to nothing — it should end up alone.")
    b2.button("Add flipped task", key="add_flipped", on_click=_add, args=("flipped",),
              help="A seeded half of the images is flipped upside down; the label says which.")
    if presets:
        p1, p2 = st.columns([3, 1], vertical_alignment="bottom")
        copy_from = p1.selectbox("Copy tasks from a preset", [p.name for p in presets], key="copy_preset",
                                 help="Adds the preset's tasks (names already used are skipped).")
        p2.button("Copy", key="add_preset", on_click=_add_preset, args=(copy_from,),
                  help="Append the preset's tasks to your task set.")
    f1, f2 = st.columns([3, 1], vertical_alignment="bottom")
    f1.file_uploader("Task file (JSON)", type=["json"], key="tasks_file",
                     help='A list of tasks, e.g. [{"name": "Round", "classes": ["0", "6", "8", "9"]}, '
                          '{"name": "Noise", "kind": "random", "seed": 1}].')
    f2.button("Add from file", key="add_file", on_click=_add_file, help="Append the file's tasks to your task set.")
    error = st.session_state.pop("task_builder_error", None)
    if error:
        st.error(error)
    rows = custom_all.get(dataset_name, [])
    if not rows:
        st.info("No task yet: add class-set, random or flipped tasks above, or copy a preset's.")
        st.stop()
    st.data_editor(rows_table(rows), key=editor_key, num_rows="delete", hide_index=True,
                            disabled=["kind", "definition"], width="stretch",
                            column_config={"task": st.column_config.TextColumn("task", help="Click to rename")})
    try:
        tasks = to_tasks(apply_edits(rows, st.session_state.get(editor_key)))
    except ValueError as exc:
        st.error(str(exc))
        st.stop()
    if not tasks:
        st.info("Every task was removed: add some above.")
        st.stop()

# ---- 3. training -----------------------------------------------------------------------
st.subheader("3 · Training")
n_train = len(dataset.x_train)
c1, c2, c3, c4 = st.columns(4)
model = c1.selectbox("Model", MODEL_NAMES, key="model",
                     help="auto: a small CNN for images up to 16 px, else the paper's CNN (Table 2).")
epochs = c2.number_input("Epochs", 1, 500, 15, key="epochs",
                         help="Passes over the training subset; every epoch adds one data-map snapshot.")
subset = c3.number_input("Training subset", 2, n_train, min(n_train, 10_000), key="subset",
                         help="Training images used (a seeded choice). Data maps cover every one of them.")
seed = c4.number_input("Seed", 0, 2**31 - 1, 0, key="seed", help="Initial weights, batch order, subset choice.")
is_resnet = model.startswith("resnet")  # ResNet-18 keeps its 512 feature units
with st.expander("More settings"):
    a1, a2, a3, a4 = st.columns(4)
    batch_size = a1.number_input("Batch size", 1, 4096, 256, key="batch_size", help="Images per optimiser step.")
    lr = a2.number_input("Learning rate", 1e-6, 1.0, 1e-3, format="%.5f", key="lr", help="Adam's learning rate.")
    test_subset = a3.number_input("Test subset", 1, len(dataset.x_test), min(len(dataset.x_test), 2_000),
                                  key="test_subset", help="Held-out images for the F1 scores.")
    precision = a4.selectbox("Precision", PRECISIONS, key="precision",
                             help="auto: bf16 autocast on a GPU, and on CPUs with AMX units for colour images of "
                                  "32 px and more (about 2x faster there); fp32 everywhere else.")
    feature_dim = a1.number_input(
        "Feature units", 1, 4096, value=None, step=1, key="feature_dim", placeholder="128 (the paper's)",
        disabled=is_resnet,
        help="Units of the CNN's last fully connected layer: the features every task head reads. Fewer make the "
             "tasks compete for them, so unrelated tasks hurt each other more (ResNet-18 keeps its 512).")

try:  # everything a run needs is checked here, before Launch can write anything to the store
    spec = ExperimentSpec(
        dataset=dataset_name, tasks=tuple(tasks),
        train=TrainConfig(model=model, epochs=int(epochs), batch_size=int(batch_size), lr=float(lr), seed=int(seed),
                          precision=precision,
                          feature_dim=None if feature_dim is None or is_resnet else int(feature_dim)),
        subset=None if subset == n_train else int(subset),
        test_subset=None if test_subset == len(dataset.x_test) else int(test_subset),
        data_seed=int(seed), preset=preset_name, data_fingerprint=fingerprint, data_root=data_root)
    spec.validate()
    validate_tasks(spec.tasks, dataset)
    chosen = subset_dataset(dataset, spec.subset, spec.test_subset, spec.data_seed)
    build_labels(spec.tasks, chosen)  # a task with no positive (or negative) image in the subset fails here
    seeded_model(spec, dataset.image_shape)  # the model must fit the images (e.g. 1x1 is too small)
except ValueError as exc:
    st.error(str(exc))
    st.stop()

run_id = spec.run_id()
status = store.read_status(run_id) if store.exists(run_id) else {"state": "new"}
seconds = _estimate(json.dumps(spec.to_json()), dataset.image_shape, len(chosen.x_train), len(chosen.x_test))
m1, m2, m3 = st.columns(3)
m1.metric("Tasks", len(spec.tasks))
m2.metric("Estimated training time", f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s",
          help="From timing a few real training steps of this model on this device.")
m3.metric("Run id", run_id, help="A hash of everything above: the same settings always give the same run.")

if status["state"] == "completed":
    st.success("An identical run has already finished: it is reused, not trained again.")
elif status["state"] in jobs.ACTIVE:
    st.info(f"This run is already {status['state']}.")
if st.button("Launch", key="launch", type="primary", disabled=status["state"] in jobs.ACTIVE,
             help="Train in a background process; follow it on the Training page."):
    save_run_spec(store, spec)
    state = jobs.submit(store, jobs.Job(run_id))
    set_active_run(run_id)
    flash("success", f"Run {run_id}: {state}. Follow it on the Training page.")
    st.rerun()
st.page_link(PAGE_FILES["training"], label="Training →")
