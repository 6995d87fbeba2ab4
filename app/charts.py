"""Pure Plotly figure builders: arrays in, figures out (no Streamlit, no store access)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go


def cluster_order(memberships: np.ndarray) -> np.ndarray:
    """Task order for display: by cluster (argmax), then by decreasing membership in it."""
    labels = memberships.argmax(1)
    return np.lexsort((-memberships[np.arange(len(labels)), labels], labels))


def membership_heatmap(memberships: np.ndarray, task_names: Sequence[str]) -> go.Figure:
    """Heatmap of memberships ``(n_tasks, k)``: tasks (rows, ordered by cluster) × clusters."""
    order = cluster_order(memberships)
    k = memberships.shape[1]
    fig = go.Figure(go.Heatmap(
        z=memberships[order], x=[f"cluster {j}" for j in range(k)], y=[task_names[i] for i in order],
        zmin=0, zmax=1, colorscale="Blues", colorbar={"title": "membership"},
        hovertemplate="%{y}<br>%{x}: %{z:.3f}<extra></extra>",
    ))
    fig.update_layout(height=max(300, 22 * len(order) + 120), margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      yaxis={"type": "category", "autorange": "reversed"})  # names like "3" stay labels
    return fig
