"""The paper-claims panel shared by the Overview and Clustering pages (verdicts come from
:mod:`stg_core.claims`; this only draws them)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from stg_core import jobs
from stg_core.claims import FAILS, HOLDS, NOT_APPLICABLE, Claim, GroupingSettings

_ICONS = {HOLDS: "✓ holds", FAILS: "✗ does not hold", NOT_APPLICABLE: "— not applicable"}


def claims_table(claims: Sequence[Claim]) -> pd.DataFrame:
    """One row per claim: verdict, its numbers, the settings it was computed on and how it could fail."""
    return pd.DataFrame({"claim": [c.title for c in claims], "verdict": [_ICONS[c.verdict] for c in claims],
                         "numbers": [c.detail for c in claims], "computed on": [c.settings for c in claims],
                         "does not hold when": [c.how_it_could_fail for c in claims],
                         "paper": [c.source for c in claims]})


def claims_panel(claims: Sequence[Claim], grouping: GroupingSettings | None = None, *, store=None,
                 run_id: str | None = None, caption: str = "") -> None:
    """A table of the paper's claims on the active run, one row per claim; where the F1 claim
    lacks an evaluation of this very grouping, a button launches one (given ``store``, ``run_id``
    and ``grouping``)."""
    st.subheader("The paper's claims on this run")
    if caption:
        st.caption(caption)
    # A static table, not a data grid: every sentence is shown whole (and is text in the page).
    st.table(claims_table(claims).set_index("claim"))
    f1 = next((c for c in claims if c.key == "f1"), None)
    if f1 is None or f1.verdict != NOT_APPLICABLE or store is None or grouping is None:
        return
    if st.button("Evaluate this grouping", key="claims_evaluate",
                 help=f"Launch an evaluation (MTL, STL, STG-MTL, random grouping) of exactly this grouping "
                      f"({grouping.describe()}) in the background; the F1 claim then reads it."):
        from stg_core.evaluation import evaluation_spec_for, save_evaluation_spec

        try:
            spec = evaluation_spec_for(run_id, grouping, store.recorded_epochs(run_id))
            eid = save_evaluation_spec(spec, store)
            state = jobs.submit(store, jobs.Job(run_id, eid))
        except (ValueError, OSError) as exc:
            st.error(f"Could not launch the evaluation: {exc}")
        else:
            st.success(f"Evaluation {eid}: {state}. Follow it on the Evaluation page.")
