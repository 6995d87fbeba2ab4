"""The pieces of a background job's panel, shared by the Training, Evaluation and Methods
pages: progress bar (fraction clamped to [0, 1]), ETA, Cancel / Resume buttons, worker-log tail."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import streamlit as st

from stg_core import jobs
from stg_core.store import ArtifactStore


def eta_text(seconds: float | None) -> str:
    """``42`` → ``"42 s"``, ``600`` → ``"10.0 min"`` (minutes from 90 s on), None → ``"—"``."""
    if seconds is None:
        return "—"
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def eta_from_start(status: dict[str, Any]) -> float | None:
    """Seconds left, extrapolated from the job's start time and fraction done (None before any progress)."""
    done, started = float(status.get("progress") or 0), status.get("started")
    if not started or done <= 0:
        return None
    return (time.time() - float(started)) / done * (1 - done)


def clamp_fraction(fraction: Any) -> float:
    """A reported fraction done as a number in [0, 1] (nothing reported: 0)."""
    value = float(fraction) if isinstance(fraction, (int, float)) else 0.0
    return min(max(value, 0.0), 1.0)


def progress_bar(fraction: Any, text: str) -> None:
    """``st.progress`` of ``fraction`` clamped to [0, 1] (a status may report a little over 1)."""
    st.progress(clamp_fraction(fraction), text=text)


def job_buttons(store: ArtifactStore, job: jobs.Job, state: str, *, name: str, key: str = "",
                cancel_help: str, resume_help: str, start_label: str = "Start") -> None:
    """Cancel (while queued or running) and Start / Resume (when created, interrupted or failed);
    the answer goes to a toast titled ``name``. ``key`` tells apart several jobs on one page."""
    suffix = f"_{key}" if key else ""
    b1, b2, _ = st.columns([1, 1, 4])
    if state in jobs.ACTIVE and b1.button("Cancel", key=f"cancel{suffix}", help=cancel_help):
        st.toast(f"{name}: {jobs.cancel(store, job)}")
    if state in ("interrupted", "failed", "created") and b2.button(
            start_label if state == "created" else "Resume", key=f"resume{suffix}", help=resume_help):
        st.toast(f"{name}: {jobs.submit(store, job)}")
        st.rerun()


def log_tail(path: Path, lines: int = 200) -> str | None:
    """The last ``lines`` lines of a worker log, or None when there is no log."""
    if not path.exists():
        return None
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def worker_log(path: Path, *, label: str = "Worker log", lines: int = 200, placeholder: str | None = None) -> None:
    """An expander with the log's tail; without a log, the ``placeholder`` text (or nothing)."""
    text = log_tail(path, lines)
    if text is None and placeholder is None:
        return
    with st.expander(label):
        if text is None:  # plain text: a code block would load the browser's syntax highlighter (~0.5 s) for nothing
            st.caption(placeholder)
        else:
            st.code(text, language=None)
