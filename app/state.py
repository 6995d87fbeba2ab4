"""What every page shares: the store, the active run (sidebar) and settings kept in the URL.

The active run lives in the query parameter ``run`` (so a link reproduces the view) and in
session state (so it survives a page switch, which clears the query parameters). Page
settings bound with :func:`url_default` / :func:`to_url` work the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from stg_core.jobs import refresh
from stg_core.store import ArtifactStore

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
#: The Streamlit script (navigation and sidebar) that ``app/main.py`` serves and tests run.
APP_SCRIPT = str(ROOT / "app" / "studio.py")
#: Page scripts by name, as registered with ``st.navigation`` (``st.page_link`` takes these).
PAGE_FILES = {name: str(ROOT / "pages" / f"{name}.py")
              for name in ("overview", "experiment", "training", "clustering", "evaluation", "methods", "stability")}
DEMO_STEPS = ("training", "clustering", "evaluation")

GLOSSARY = """
- **Task**: one binary classification problem on the dataset (e.g. "is it a 3?", "is it round?").
- **p_true**: the probability the model gives to a sample's true label for a task, at one epoch.
- **Data map**: for each training sample and one task, **confidence** (mean p_true over the
  epochs so far) and **variability** (its standard deviation). Easy samples sit top-left,
  hard-to-learn ones bottom-left, ambiguous ones to the right.
- **Cluster**: a group of tasks whose data maps are close; one specialised model is trained
  per cluster.
- **Memberships**: how much each task belongs to each cluster (rows sum to 1); used as loss
  weights for the specialised models.
- **Fuzziness F** (> 1): near 1 memberships are almost hard (0/1), larger F spreads them out.
"""


def store() -> ArtifactStore:
    """The artifact store (``STG_STORE`` or ``cache/``); jobs whose worker died are marked
    interrupted and queued jobs started on the way."""
    s = ArtifactStore()
    refresh(s)
    return s


def run_label(run: dict[str, Any]) -> str:
    return (f"{run['id']} · {run['preset'] or run['dataset']} · {run['n_tasks']} tasks · "
            f"{run['epochs_done']}/{run['epochs']} epochs · {run['state']}")


def active_run_selector(s: ArtifactStore) -> str | None:
    """Sidebar select box of the store's runs; returns the active run id (``None`` without runs).

    The active run is kept in session state under ``_active_run``, not only as the widget's
    value: the options' labels change as runs progress, and Streamlit resets a widget whose
    options change. The first visit takes the run from the URL."""
    runs = s.list_runs()
    if not runs:
        st.sidebar.caption("No run yet: launch one from **Experiment**.")
        st.session_state.pop("_active_run", None)
        return None
    ids = [r["id"] for r in runs]
    current = st.session_state.pop("_pending_run", None)
    if current not in ids:
        current = st.session_state.get("_active_run")
    if current not in ids:
        wanted = st.query_params.get("run")
        current = wanted if wanted in ids else ids[0]
    st.session_state["_active_run"] = current
    st.session_state["active_run"] = current  # the widget shows it (set before the widget exists)
    labels = {r["id"]: run_label(r) for r in runs}
    st.sidebar.selectbox("Active run", ids, format_func=labels.get, key="active_run", on_change=_run_chosen,
                         help="The training run that every page shows.")
    st.query_params["run"] = current
    return current


def _run_chosen() -> None:
    st.session_state["_active_run"] = st.session_state["active_run"]


def active_run() -> str | None:
    """The active run id chosen in the sidebar (``None`` when the store has no run)."""
    return st.session_state.get("_active_run")


def set_active_run(run_id: str) -> None:
    """Make ``run_id`` the active run from the next rerun on (e.g. right after a launch)."""
    st.session_state["_pending_run"] = run_id


def url_default(name: str, default: T, cast: Callable[[str], T], allowed: Callable[[T], bool] = lambda v: True) -> T:
    """Initial value of a setting: the URL's ``name`` when present and valid, else ``default``."""
    raw = st.query_params.get(name)
    if raw is None:
        return default
    try:
        value = cast(raw)
    except (TypeError, ValueError):
        return default
    return value if allowed(value) else default


def to_url(**settings: Any) -> None:
    """Write page settings into the URL's query parameters."""
    for name, value in settings.items():
        st.query_params[name] = str(value)


def flash(kind: str, message: str) -> None:
    """A message for the next rerun (e.g. after ``st.rerun()``); ``kind``: success, info, error."""
    st.session_state["_flash"] = (kind, message)


def show_flash() -> None:
    kind, message = st.session_state.pop("_flash", (None, None))
    if kind:
        getattr(st, kind)(message)


def start_demo(s: ArtifactStore, name: str) -> str:
    """Launch demo ``name`` (see :mod:`stg_core.demo`) and make its run the active one."""
    from stg_core.demo import DEMOS
    from stg_core.jobs import Job, submit
    from stg_core.training import save_run_spec

    demo = DEMOS[name]
    run_id = save_run_spec(s, demo.spec)
    state = submit(s, Job(run_id))
    set_active_run(run_id)
    st.session_state["demo"] = (name, run_id)
    return state


def demo_guide(page: str) -> None:
    """While the active run is a demo's: the sentence saying what to look at on ``page`` and a
    link to the next step (drawn in the sidebar, so pages need no demo code)."""
    from stg_core.demo import DEMOS

    name, run_id = st.session_state.get("demo", (None, None))
    if name is None or run_id != active_run() or page not in DEMO_STEPS:
        return
    step = DEMO_STEPS.index(page)
    box = st.sidebar.container(border=True)
    box.markdown(f"**Demo · step {step + 1} of {len(DEMO_STEPS)}**  \n{DEMOS[name].guide[page]}")
    if step + 1 < len(DEMO_STEPS):
        nxt = DEMO_STEPS[step + 1]
        # The demo's k (and its run) travel in the link: the Clustering and Evaluation pages read k from the URL.
        box.page_link(PAGE_FILES[nxt], label=f"Next: {nxt.title()} →",
                      query_params={"run": run_id, "k": str(DEMOS[name].k)})


def completed_run_or_stop(s: ArtifactStore, then: str, needs: str) -> str:
    """The active run when it has finished training. Otherwise an explanation and a link (to
    **Experiment** without a run — "..., let it train, then ``then``" —, to **Training** while it
    trains — "Run X is <state>: ``needs``"), then ``st.stop()``."""
    run_id = active_run()
    if run_id is None:
        st.info(f"No run yet. Launch one from **Experiment** (e.g. the `digits-g2` preset), let it train, then {then}.")
        st.page_link(PAGE_FILES["experiment"], label="Experiment →")
        st.stop()
    state = s.read_status(run_id).get("state", "missing")
    if state != "completed":
        st.info(f"Run {run_id} is **{state}**: {needs}. Come back once training has completed (follow it on "
                "**Training**).")
        st.page_link(PAGE_FILES["training"], label="Training →")
        st.stop()
    return run_id


def glossary() -> None:
    with st.expander("Glossary"):
        st.markdown(GLOSSARY)


def epochs_to_url(epochs: list[int], recorded: list[int]) -> str:
    """A selection of epochs for the URL: ``"all"``, or ranges such as ``"1-10,20"``."""
    from stg_core.run_vectors import epoch_ranges

    return "all" if list(epochs) == list(recorded) else epoch_ranges(epochs, sep=",")


def epochs_from_url(text: str | None, recorded: list[int]) -> list[int]:
    """The inverse of :func:`epochs_to_url`, keeping recorded epochs only; every recorded epoch
    when ``text`` is absent, ``"all"`` or names none of them."""
    if not text or text == "all":
        return list(recorded)
    wanted: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            if int(hi or lo) - int(lo) > 100_000:
                return list(recorded)
            wanted.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        return list(recorded)
    return [e for e in recorded if e in wanted] or list(recorded)


def run_problems_or_stop(s: ArtifactStore, run_id: str) -> None:
    """Stop the page with what is missing or damaged in the run's artifacts, and how to recover
    (instead of a traceback from the first unreadable file)."""
    problems = s.check_run(run_id)
    if not problems:
        return
    st.error(f"Run {run_id} cannot be shown: " + "; ".join(problems) + ".")
    st.info("To recover, train the run again: launch the same settings from **Experiment** (or "
            "`python -m stg_core train ...`) after removing the run's folder "
            f"`{s.run_dir(run_id)}`. Other runs are not affected.")
    st.stop()


def statistics_or_stop(s: ArtifactStore, run_id: str) -> None:
    """Compute the Gram statistics of a run recorded before they existed (once, with a progress
    bar) so that the Clustering page never reads p_true."""
    from stg_core.run_vectors import has_statistics

    if has_statistics(s, run_id):
        return
    from stg_core.recording import record_statistics  # imports torch (seconds on a fresh server): only when needed

    bar = st.progress(0.0, text="This run was recorded before the clustering statistics existed: computing them "
                                "once from its data maps…")
    try:
        record_statistics(s, run_id, progress=lambda done, total: bar.progress(
            done / total, text=f"Computing the clustering statistics once: epoch {done} of {total}"))
    except (OSError, ValueError) as exc:
        st.error(f"Cannot compute the clustering statistics of run {run_id}: {exc}")
        st.stop()
    bar.empty()
