"""The Experiment page's task builder as pure functions over task rows (``Task.to_json`` dicts),
so renaming, removing and adding tasks are tested without a browser."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from stg_core.tasks import Task, check_unique_names

Row = dict[str, Any]


def describe(row: Mapping[str, Any]) -> str:
    """One-line definition of a task row, e.g. ``classes: 1, 7`` or ``random (seed 3)``."""
    if row["kind"] in ("random", "flipped"):
        return f"{row['kind']} (seed {row.get('seed', 0)})"
    return f"{row['kind']}: {', '.join(row['positives'])}"


def rows_table(rows: Sequence[Row]) -> pd.DataFrame:
    """The editable table: task name (editable), kind and definition (read-only)."""
    return pd.DataFrame({"task": [r["name"] for r in rows], "kind": [r["kind"] for r in rows],
                         "definition": [describe(r) for r in rows]}, dtype=object)


def apply_edits(rows: Sequence[Row], editing: Mapping[str, Any] | None) -> list[Row]:
    """Rows after a ``st.data_editor`` editing state (``edited_rows`` renames, ``deleted_rows``)."""
    if not editing:
        return [dict(r) for r in rows]
    deleted = set(editing.get("deleted_rows", []))
    edited = {int(i): change for i, change in editing.get("edited_rows", {}).items()}
    out = []
    for i, row in enumerate(rows):
        if i in deleted:
            continue
        row = dict(row)
        if "task" in edited.get(i, {}):
            row["name"] = str(edited[i]["task"] or "").strip()
        out.append(row)
    return out


def unique_name(stem: str, rows: Sequence[Row]) -> str:
    """``stem``, or ``stem 2``, ``stem 3``… — the first not already used by a row."""
    taken = {r["name"] for r in rows}
    if stem not in taken:
        return stem
    n = 2
    while f"{stem} {n}" in taken:
        n += 1
    return f"{stem} {n}"


def new_task(kind: str, rows: Sequence[Row], positives: Sequence[str] = (), name: str = "") -> Row:
    """A task row to append: class-set / attribute tasks from ``positives``; ``random`` and
    ``flipped`` tasks get the next free seed so two random tasks never share labels."""
    if kind in ("random", "flipped"):
        seed = 1 + max((int(r.get("seed", 0)) for r in rows if r["kind"] == kind), default=-1)
        stem = name.strip() or ("Random" if kind == "random" else "Downside")
        return Task(unique_name(stem, rows), kind, (), seed).to_json()
    if not positives:
        raise ValueError("pick at least one class for the task" if kind == "classes" else "pick an attribute")
    stem = name.strip() or "+".join(positives)
    if name.strip() and stem in {r["name"] for r in rows}:
        raise ValueError(f"a task named {stem!r} already exists")
    return Task(unique_name(stem, rows), kind, tuple(positives)).to_json()


def to_tasks(rows: Sequence[Row]) -> tuple[Task, ...]:
    """The tasks of the rows; a one-line ``ValueError`` naming the task and the field of a bad
    row (a name renamed to nothing, a duplicate name)."""
    tasks = tuple(Task.from_json(r, i) for i, r in enumerate(rows))
    check_unique_names(tasks)
    return tasks
