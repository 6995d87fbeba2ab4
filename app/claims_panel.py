"""The paper-claims panel shared by the Overview and Clustering pages (verdicts come from
:mod:`stg_core.claims`; this only draws them)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from stg_core.claims import FAILS, HOLDS, Claim

_ICONS = {HOLDS: "✓ holds", FAILS: "✗ does not hold"}


def claims_table(claims: Sequence[Claim]) -> pd.DataFrame:
    return pd.DataFrame({"claim": [c.title for c in claims], "verdict": [_ICONS.get(c.verdict, "— not applicable")
                                                                      for c in claims],
                         "numbers": [c.detail for c in claims], "paper": [c.source for c in claims]})


def claims_panel(claims: Sequence[Claim], *, caption: str = "") -> None:
    """A table of the paper's claims on the active run, one row per claim."""
    st.subheader("The paper's claims on this run")
    if caption:
        st.caption(caption)
    st.dataframe(claims_table(claims), hide_index=True, width="stretch", key="claims",
                 column_config={"numbers": st.column_config.TextColumn(width="large")})


def run_claims(store, run_id: str, memberships, reduced, n_features: int, fuzziness: float) -> list[Claim]:
    """The claims on ``run_id`` for the grouping ``memberships`` ``(n_tasks, k)``, with the
    newest finished evaluation of the run that has STG-MTL, MTL and STL (if any)."""
    from stg_core.claims import check_claims
    from stg_core.evaluation import read_results

    spec = store.load_spec(run_id)
    info = store.read_dataset_info(run_id)
    folder = store.run_dir(run_id) / "evaluations"
    evaluation = None
    finished = sorted(folder.glob("*/results.json"), key=lambda p: p.stat().st_mtime) if folder.exists() else []
    for path in reversed(finished):  # newest first
        results = read_results(store, run_id, path.parent.name)
        if results and {"stg", "mtl", "stl"} <= set(results["methods"]):
            evaluation = results
            break
    return check_claims(memberships, reduced, spec.task_names, spec.tasks, info.get("class_names", []),
                        info.get("super_groups"), fuzziness=fuzziness, evaluation=evaluation, n_features=n_features)
