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


# ---- training: curves and data maps ----------------------------------------------------

#: Indicative regions of a data map (after Swayamdipta et al., 2020): confidence (y) and
#: variability (x) bounds of the shaded boxes. The paper reads them qualitatively.
DATAMAP_REGIONS = {
    "easy-to-learn": {"x": (0.0, 0.2), "y": (0.75, 1.0), "color": "rgba(44,160,44,0.08)"},
    "ambiguous": {"x": (0.2, 0.5), "y": (0.0, 1.0), "color": "rgba(255,127,14,0.08)"},
    "hard-to-learn": {"x": (0.0, 0.2), "y": (0.0, 0.25), "color": "rgba(214,39,40,0.08)"},
}


def training_curves(metrics: Sequence[dict]) -> go.Figure:
    """Loss and mean F1 per epoch (train dashed, test solid) from a run's ``metrics.json`` rows."""
    from plotly.subplots import make_subplots

    epochs = [r["epoch"] for r in metrics]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss (weighted BCE)", "mean F1 over tasks"))
    for split, dash in (("train", "dash"), ("test", "solid")):
        fig.add_trace(go.Scatter(x=epochs, y=[r.get(f"{split}_loss") for r in metrics], name=f"{split} loss",
                                 mode="lines+markers", line={"dash": dash}), row=1, col=1)
        fig.add_trace(go.Scatter(x=epochs, y=[float(np.mean(r[split]["f1"])) if split in r else None for r in metrics],
                                 name=f"{split} F1", mode="lines+markers", line={"dash": dash}), row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def subsample(n: int, limit: int = 10_000, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``limit`` of ``n`` samples, the same on every call (for drawing)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def datamap_animation(confidence: np.ndarray, variability: np.ndarray, epochs: Sequence[int],
                      color: np.ndarray, color_title: str, *, categorical: bool, title: str = "",
                      start: int | None = None) -> go.Figure:
    """Data map of one task, animated over ``epochs``: ``confidence`` / ``variability`` are
    ``(n_epochs, n_points)`` (points already subsampled), ``color`` ``(n_points,)`` (class
    names when ``categorical``, else numbers such as correctness). WebGL scatter; a slider and
    a play button step through the epochs; ``start`` is the epoch shown first (default last)."""
    epochs = list(epochs)
    first = epochs.index(start) if start in epochs else len(epochs) - 1
    hover = "variability %{x:.3f}<br>confidence %{y:.3f}<br>" + color_title + ": %{text}<extra></extra>"
    if categorical:  # one trace per class, so the legend names the colours (and toggles classes)
        labels = np.array([str(c) for c in color])
        groups = sorted(set(labels.tolist()), key=lambda s: (len(s), s))
        members = [np.flatnonzero(labels == g) for g in groups]

        def traces(i: int) -> list[go.Scattergl]:
            return [go.Scattergl(x=variability[i, m], y=confidence[i, m], mode="markers", name=g,
                                 marker={"size": 4, "color": _PALETTE[j % len(_PALETTE)]}, text=labels[m],
                                 hovertemplate=hover) for j, (g, m) in enumerate(zip(groups, members))]
    else:
        marker = {"size": 4, "color": color, "colorscale": "RdYlGn", "cmin": 0, "cmax": 1,
                  "colorbar": {"title": color_title}}
        text = [f"{c:.2f}" for c in color]

        def traces(i: int) -> list[go.Scattergl]:
            return [go.Scattergl(x=variability[i], y=confidence[i], mode="markers", marker=marker, text=text,
                                 hovertemplate=hover, showlegend=False)]

    fig = go.Figure(data=traces(first), frames=[go.Frame(data=traces(i), name=str(e)) for i, e in enumerate(epochs)])
    for name, region in DATAMAP_REGIONS.items():
        fig.add_shape(type="rect", x0=region["x"][0], x1=region["x"][1], y0=region["y"][0], y1=region["y"][1],
                      fillcolor=region["color"], line={"width": 0}, layer="below")
        fig.add_annotation(x=sum(region["x"]) / 2, y=region["y"][1] if name != "hard-to-learn" else region["y"][0],
                           text=name, showarrow=False, font={"size": 11, "color": "gray"},
                           yanchor="top" if name != "hard-to-learn" else "bottom")
    step = {"frame": {"duration": 400, "redraw": True}, "mode": "immediate", "transition": {"duration": 0}}
    fig.update_layout(
        title=title, height=460, margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis={"title": "variability", "range": [0, 0.5]}, yaxis={"title": "confidence", "range": [0, 1]},
        updatemenus=[{"type": "buttons", "showactive": False, "x": 0.0, "y": -0.12, "xanchor": "left",
                      "buttons": [{"label": "▶ play", "method": "animate", "args": [None, {**step, "fromcurrent": True}]},
                                  {"label": "❚❚", "method": "animate", "args": [[None], step]}]}],
        sliders=[{"active": first, "currentvalue": {"prefix": "epoch "}, "x": 0.15, "len": 0.85, "y": -0.05,
                  "steps": [{"label": str(e), "method": "animate", "args": [[str(e)], step]} for e in epochs]}],
    )
    return fig


_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")


# ---- overview ------------------------------------------------------------------------------

PIPELINE_STEPS = (
    ("1 · One MTL model", "all tasks at once:<br>shared trunk, one head per task"),
    ("2 · Data maps", "per task and sample:<br>confidence & variability of p_true"),
    ("3 · Soft clustering", "k-means on the data maps,<br>memberships with fuzziness F"),
    ("4 · Specialised models", "one model per cluster,<br>memberships as loss weights"),
)


def pipeline_figure() -> go.Figure:
    """The method in four steps (the paper's Figure 1) as boxes and arrows."""
    fig = go.Figure()
    width, gap = 1.0, 0.35
    for i, (title, text) in enumerate(PIPELINE_STEPS):
        x0 = i * (width + gap)
        fig.add_shape(type="rect", x0=x0, x1=x0 + width, y0=0, y1=1, line={"color": _PALETTE[i], "width": 2},
                      fillcolor=_PALETTE[i], opacity=0.12)
        fig.add_annotation(x=x0 + width / 2, y=0.72, text=f"<b>{title}</b>", showarrow=False, font={"size": 14})
        fig.add_annotation(x=x0 + width / 2, y=0.35, text=text, showarrow=False, font={"size": 11})
        if i:
            fig.add_annotation(x=x0 - 0.03, y=0.5, ax=x0 - gap + 0.03, ay=0.5, xref="x", yref="y", axref="x",
                               ayref="y", text="", showarrow=True, arrowhead=2, arrowsize=1.5, arrowwidth=2)
    span = len(PIPELINE_STEPS) * (width + gap) - gap
    fig.update_layout(height=170, margin={"l": 5, "r": 5, "t": 5, "b": 5}, plot_bgcolor="rgba(0,0,0,0)",
                      xaxis={"visible": False, "range": [-0.05, span + 0.05]},
                      yaxis={"visible": False, "range": [-0.05, 1.05]})
    return fig


def fuzziness_example(memberships: np.ndarray, names: Sequence[str], fuzziness: float) -> go.Figure:
    """Stacked bars: memberships ``(n_points, 2)`` of a few points in clusters A and B."""
    fig = go.Figure([go.Bar(name=f"cluster {c}", y=list(names), x=memberships[:, j], orientation="h",
                            text=[f"{v:.2f}" for v in memberships[:, j]], marker_color=_PALETTE[j])
                     for j, c in enumerate("AB")])
    fig.update_layout(barmode="stack", height=200, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      title=f"memberships at F = {fuzziness:.2f}", xaxis={"range": [0, 1]},
                      yaxis={"autorange": "reversed"})
    return fig
