"""Pure Plotly figure builders: arrays in, figures out (no Streamlit, no store access).

The figures redrawn on every k or F change (memberships, task map, known groups) are ECharts
options instead, in :mod:`app.cluster_charts`, and so are the Training page's data map and
curves (:mod:`app.training_charts`); the colours, task order, data-map regions and density
here are shared by both."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go


def label_px(labels: Sequence, size: float = 12) -> int:
    """Rough width in px of the longest of ``labels`` at font ``size`` (0.6 em a character)."""
    return int(0.6 * size * max((len(str(s)) for s in labels), default=0))


def cluster_order(memberships: np.ndarray) -> np.ndarray:
    """Task order for display: by cluster (argmax), then by decreasing membership in it."""
    labels = memberships.argmax(1)
    return np.lexsort((-memberships[np.arange(len(labels)), labels], labels))


# ---- training: curves and data maps ----------------------------------------------------

#: Indicative regions of a data map (after Swayamdipta et al., 2020): confidence (y) and
#: variability (x) bounds of the shaded boxes. The paper reads them qualitatively.
DATAMAP_REGIONS = {
    "easy-to-learn": {"x": (0.0, 0.2), "y": (0.75, 1.0), "color": "rgba(44,160,44,0.08)"},
    "ambiguous": {"x": (0.2, 0.5), "y": (0.0, 1.0), "color": "rgba(255,127,14,0.08)"},
    "hard-to-learn": {"x": (0.0, 0.2), "y": (0.0, 0.25), "color": "rgba(214,39,40,0.08)"},
}


def subsample(n: int, limit: int = 10_000, seed: int = 0, labels: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of at most ``limit`` of ``n`` samples, the same on every call (for drawing).
    With 0/1 ``labels`` ``(n,)`` the draw is stratified: the positives (usually the rare class of
    a one-vs-rest task) get up to half of the points, the negatives the rest."""
    if n <= limit:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(n, size=limit, replace=False))
    positive = np.flatnonzero(np.asarray(labels) > 0)
    negative = np.flatnonzero(np.asarray(labels) <= 0)
    n_pos = min(len(positive), limit // 2)
    n_neg = min(len(negative), limit - n_pos)
    return np.sort(np.concatenate([rng.choice(positive, n_pos, replace=False),
                                   rng.choice(negative, n_neg, replace=False)]))


#: Bins of the density layer drawn under a data map's points: variability (x) and confidence (y).
DENSITY_BINS = (np.linspace(0.0, 0.5, 51), np.linspace(0.0, 1.0, 51))


def datamap_density(confidence: np.ndarray, variability: np.ndarray) -> np.ndarray:
    """Per epoch, a 2-D histogram of all samples on :data:`DENSITY_BINS` scaled to uint8 (255 =
    the epoch's fullest bin, on a square-root scale so sparse regions stay visible):
    ``(n_epochs, n_samples)`` confidence and variability → ``(n_epochs, 50, 50)``."""
    out = np.zeros((len(confidence), len(DENSITY_BINS[1]) - 1, len(DENSITY_BINS[0]) - 1), dtype=np.uint8)
    for e, (c, v) in enumerate(zip(confidence, variability)):
        counts, _, _ = np.histogram2d(c, np.clip(v, 0.0, 0.5), bins=(DENSITY_BINS[1], DENSITY_BINS[0]))
        if counts.max() > 0:
            out[e] = np.round(255 * np.sqrt(counts / counts.max())).astype(np.uint8)
    return out


PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
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
        fig.add_shape(type="rect", x0=x0, x1=x0 + width, y0=0, y1=1, line={"color": PALETTE[i], "width": 2},
                      fillcolor=PALETTE[i], opacity=0.12)
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
                            text=[f"{v:.2f}" for v in memberships[:, j]], marker_color=PALETTE[j])
                     for j, c in enumerate("AB")])
    fig.update_layout(barmode="stack", height=200, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      title=f"memberships at F = {fuzziness:.2f}", xaxis={"range": [0, 1]},
                      yaxis={"autorange": "reversed"})
    return fig


# ---- cluster colours (Plotly and ECharts figures alike) ----------------------------------------

#: Lighter companions of ``PALETTE`` (D3's category20), so up to 20 clusters get distinct colours.
_PALETTE_LIGHT = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
                  "#dbdb8d", "#9edae5")


def cluster_color(j: int) -> str:
    """Colour of cluster ``j``, the same in every clustering figure (20 distinct, then repeating)."""
    j %= len(PALETTE) + len(_PALETTE_LIGHT)
    return PALETTE[j] if j < len(PALETTE) else _PALETTE_LIGHT[j - len(PALETTE)]


# ---- evaluation: F1 of the grouping methods ------------------------------------------------

#: Display names of the evaluated methods (``stg_core.evaluation.METHODS``); the order fixes
#: each method's colour, so a method looks the same whichever methods an evaluation compares.
METHOD_LABELS = {"mtl": "MTL", "stl": "STL", "stg": "STG-MTL soft", "stg-hard": "STG-MTL hard",
                 "random": "random grouping"}


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def method_color(method: str) -> str:
    known = list(METHOD_LABELS)
    return PALETTE[known.index(method) if method in known else len(known) + sum(map(ord, method)) % 5]


def f1_curves(mean_f1: dict[str, dict[str, Sequence[float]]], epochs: Sequence[int] | None = None) -> go.Figure:
    """Mean F1 over tasks per epoch, one colour per method: test solid, train dashed.

    ``mean_f1[method] = {"train": [per epoch], "test": [per epoch]}`` (an evaluation's
    ``results["methods"][method]["mean_f1"]``), every list as long as ``epochs`` (default
    1, 2, ...). ``ValueError`` when a method lacks a split or a list has another length.
    """
    if not mean_f1:
        raise ValueError("no method to draw")
    n = len(epochs) if epochs is not None else len(next(iter(mean_f1.values())).get("test", []))
    x = list(epochs) if epochs is not None else list(range(1, n + 1))
    fig = go.Figure()
    for method, curves in mean_f1.items():
        for split, dash in (("test", "solid"), ("train", "dash")):
            if split not in curves or len(curves[split]) != n:
                raise ValueError(f"method {method!r}: {split} F1 needs one value per epoch ({n})")
            fig.add_trace(go.Scatter(
                x=x, y=list(curves[split]), mode="lines+markers", name=f"{method_label(method)} · {split}",
                legendgroup=method, line={"color": method_color(method), "dash": dash},
                marker={"size": 5}, hovertemplate="%{fullData.name}<br>epoch %{x}: F1 %{y:.3f}<extra></extra>"))
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      title="Mean F1 over tasks (test solid, train dashed)",
                      xaxis={"title": "epoch", "dtick": 1 if n <= 20 else None},
                      yaxis={"title": "mean F1"}, legend={"title": "method · split"})
    return fig


# ---- methods: groupings of the same tasks side by side ---------------------------------------

#: Display names of the grouping methods (``stg_core.grouping.GROUPING_METHODS``).
GROUPING_LABELS = {"stg": "STG-MTL", "tag": "TAG", "grad-tae": "Grad-TAE", "dmtg": "DMTG", "random": "random"}


def grouping_label(method: str) -> str:
    return GROUPING_LABELS.get(method, method)


def agreement_heatmap(ari: np.ndarray, methods: Sequence[str]) -> go.Figure:
    """Pairwise agreement ``(m, m)`` (adjusted Rand index) between the groupings of ``methods``,
    values written in the cells. ARI is 1 for identical groupings and about 0 for unrelated ones
    (it can be negative)."""
    return _ari_heatmap(ari, [grouping_label(m) for m in methods], "methods", "Agreement between methods (ARI)",
                        row_px=50)


def _ari_heatmap(ari: np.ndarray, labels: list[str], of: str, title: str, row_px: int) -> go.Figure:
    """The ``(m, m)`` ARI matrix between m groupings named ``labels`` (of ``of``: methods, seeds)."""
    a = np.asarray(ari, dtype=np.float64)
    if a.shape != (len(labels), len(labels)):
        raise ValueError(f"ARI matrix of shape {a.shape} does not match {len(labels)} {of}")
    fig = go.Figure(go.Heatmap(
        z=a, x=labels, y=labels, zmin=-1, zmax=1, colorscale="RdBu", colorbar={"title": "ARI"},
        text=[[f"{v:.2f}" for v in row] for row in a], texttemplate="%{text}",
        hovertemplate="%{y} vs %{x}: ARI %{z:.3f}<extra></extra>"))
    fig.update_layout(height=max(260, row_px * len(labels) + 120), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      title=title,
                      xaxis={"type": "category"}, yaxis={"type": "category", "autorange": "reversed"})
    return fig


def affinity_heatmap(affinity: np.ndarray, task_names: Sequence[str], order: Sequence[int] | None = None,
                     title: str = "Task affinity") -> go.Figure:
    """Heatmap of a task-affinity matrix ``(n_tasks, n_tasks)``: entry ``[i, j]`` (row i, column
    j) is how much task i helps task j, in the method's own units. Rows and columns in ``order``
    (default: as given). The colour scale is diverging around 0 and spans the off-diagonal
    entries (a task's affinity with itself would otherwise flatten the rest); hover shows every
    value."""
    a = np.asarray(affinity, dtype=np.float64)
    names = list(task_names)
    n = len(names)
    if a.shape != (n, n):
        raise ValueError(f"affinity of shape {a.shape} does not match {n} tasks")
    idx = np.arange(n) if order is None else np.asarray(order, dtype=np.int64)
    if sorted(idx.tolist()) != list(range(n)):
        raise ValueError(f"order must be a permutation of the {n} tasks")
    off = a[~np.eye(n, dtype=bool)]
    off = off[np.isfinite(off)]
    span = float(np.abs(off).max()) if off.size and np.abs(off).max() > 0 else 1.0
    labels = [names[i] for i in idx]
    fig = go.Figure(go.Heatmap(
        z=a[np.ix_(idx, idx)], x=labels, y=labels, zmin=-span, zmax=span, colorscale="RdBu",
        colorbar={"title": "affinity"}, hovertemplate="%{y} → %{x}: %{z:.4g}<extra></extra>"))
    fig.update_layout(height=max(320, 22 * n + 140), margin={"l": 10, "r": 10, "t": 40, "b": 10}, title=title,
                      xaxis={"type": "category", "title": "task j (helped)"},
                      yaxis={"type": "category", "autorange": "reversed", "title": "task i (helps)"})
    return fig


def co_association_heatmap(co: np.ndarray, task_names: Sequence[str], order: Sequence[int] | None = None) -> go.Figure:
    """Co-association ``(n_tasks, n_tasks)``: the fraction of seeds in which tasks i and j share
    their argmax cluster, rows and columns in ``order`` (e.g. by consensus group)."""
    c = np.asarray(co, dtype=np.float64)
    n = len(task_names)
    if c.shape != (n, n):
        raise ValueError(f"co-association of shape {c.shape} does not match {n} tasks")
    idx = np.arange(n) if order is None else np.asarray(order, dtype=np.int64)
    labels = [task_names[i] for i in idx]
    fig = go.Figure(go.Heatmap(z=c[np.ix_(idx, idx)], x=labels, y=labels, zmin=0, zmax=1, colorscale="Blues",
                               colorbar={"title": "share of seeds"},
                               hovertemplate="%{y} & %{x}: together in %{z:.0%} of seeds<extra></extra>"))
    fig.update_layout(height=max(320, 22 * n + 140), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      title="Co-association: how often two tasks share a cluster",
                      xaxis={"type": "category"}, yaxis={"type": "category", "autorange": "reversed"})
    return fig


def task_stability_bars(stability: np.ndarray, task_names: Sequence[str], consensus: np.ndarray,
                        order: Sequence[int] | None = None) -> go.Figure:
    """Per-task stability ``(n_tasks,)`` in [0.5, 1], coloured by consensus group ``(n_tasks,)``."""
    idx = np.arange(len(task_names)) if order is None else np.asarray(order, dtype=np.int64)
    fig = go.Figure(go.Bar(x=[task_names[i] for i in idx], y=np.asarray(stability)[idx],
                           marker_color=[cluster_color(int(consensus[i])) for i in idx],
                           customdata=[[int(consensus[i])] for i in idx],
                           hovertemplate="%{x}: stability %{y:.3f}, consensus group %{customdata[0]}<extra></extra>"))
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10}, title="Per-task stability",
                      yaxis={"range": [0.5, 1.0], "title": "stability"}, xaxis={"type": "category"})
    return fig


def seed_agreement_heatmap(ari: np.ndarray, seeds: Sequence[int]) -> go.Figure:
    """Pairwise ARI ``(R, R)`` between the groupings of R seeds."""
    return _ari_heatmap(ari, [f"seed {s}" for s in seeds], "seeds", "Agreement between seeds' groupings (ARI)",
                        row_px=40)
