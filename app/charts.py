"""Pure Plotly figure builders: arrays in, figures out (no Streamlit, no store access)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go


def _label_px(labels: Sequence, size: float = 12) -> int:
    """Rough width in px of the longest of ``labels`` at font ``size`` (0.6 em a character)."""
    return int(0.6 * size * max((len(str(s)) for s in labels), default=0))


def _margins(**px: int) -> dict:
    """``layout.margin`` wide enough for what the figure puts there (tick labels, axis titles,
    colour bar, legend), from rough text widths.

    Plotly's automatic margins (on by default) still widen a margin that is too narrow, but
    each widening redraws the whole figure, so a figure that reserves its margins is drawn
    once (bench/README.md, ``scale.py``)."""
    return {"l": 10, "r": 10, "t": 30, "b": 10, **px}


def cluster_order(memberships: np.ndarray) -> np.ndarray:
    """Task order for display: by cluster (argmax), then by decreasing membership in it."""
    labels = memberships.argmax(1)
    return np.lexsort((-memberships[np.arange(len(labels)), labels], labels))


def membership_heatmap(memberships: np.ndarray, task_names: Sequence[str], order: Sequence[int] | None = None,
                       title: str | None = None, bands: Sequence[str] | None = None,
                       band_title: str = "known group") -> go.Figure:
    """Heatmap of memberships ``(n_tasks, k)``: tasks (rows, ordered by cluster) × clusters.

    ``order``: the task order (row indices of ``memberships``, top to bottom) instead of this
    grouping's own :func:`cluster_order` — e.g. one order shared by several groupings drawn side
    by side. ``ValueError`` when it is not a permutation of the tasks. ``bands``: a label per
    task (in the rows' order of ``memberships``, e.g. its known group; ``""`` for none), drawn
    as a coloured band left of the heatmap, named on hover.
    """
    from plotly.subplots import make_subplots

    memberships = np.asarray(memberships, dtype=np.float64)
    if order is None:
        order = cluster_order(memberships)
    else:
        order = np.asarray(order, dtype=np.int64)
        if sorted(order.tolist()) != list(range(len(memberships))):
            raise ValueError(f"order must be a permutation of the {len(memberships)} tasks")
    k, n = memberships.shape[1], len(order)
    rows = [task_names[i] for i in order]
    heat = go.Heatmap(z=memberships[order], x=[f"cluster {j}" for j in range(k)], y=rows, zmin=0, zmax=1,
                      colorscale="Blues", colorbar={"title": "membership"},
                      hovertemplate="%{y}<br>%{x}: %{z:.3f}<extra></extra>")
    row_height = 22 if n <= 40 else 14  # 100 tasks: 1,400 px, names still legible at 10 px
    # left: the task names; right: the colour bar; bottom: "cluster j", turned when many
    margin = _margins(l=_label_px(rows, 12 if n <= 40 else 10) + 16, r=122, b=48 if k <= 8 else 90)
    if bands is not None:
        margin["b"] = max(margin["b"], int(0.87 * _label_px([band_title])) + 20)  # its label at -60°
    layout = {"height": max(300, row_height * n + 120), "margin": margin}
    if bands is None:
        fig = go.Figure(heat)
        fig.update_layout(**layout, yaxis={"type": "category", "autorange": "reversed"})  # names like "3" stay labels
    else:
        labels = [str(bands[i]) for i in order]
        known = sorted({b for b in labels if b})
        codes = np.array([[known.index(b) if b else np.nan] for b in labels], dtype=np.float64)
        steps = max(len(known), 1)
        scale = [[v, cluster_color(j)] for j in range(steps) for v in (j / steps, (j + 1) / steps)]
        fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.05, 0.95], horizontal_spacing=0.004)
        fig.add_trace(go.Heatmap(z=codes, x=[band_title], y=rows, zmin=-0.5, zmax=steps - 0.5, colorscale=scale,
                                 showscale=False, customdata=[[b] for b in labels],
                                 hovertemplate="%{y}<br>" + band_title + ": %{customdata[0]}<extra></extra>"),
                      row=1, col=1)
        fig.add_trace(heat, row=1, col=2)
        fig.update_layout(**layout)
        fig.update_yaxes(type="category", autorange="reversed")
        fig.update_xaxes(tickangle=-60, row=1, col=1)
    if n > 40:
        fig.update_yaxes(tickfont={"size": 10})
    if title is not None:
        fig.update_layout(title=title, margin={"t": 40})  # update_layout merges: the other sides stay
    return fig


def contingency_heatmap(table: np.ndarray, groups: Sequence[str], clusters: Sequence[int], matched: int) -> go.Figure:
    """Known groups (rows) × clusters (columns) of a :class:`stg_core.alignment.Contingency`:
    task counts written in the cells, the ``matched`` pairs on the diagonal first."""
    t = np.asarray(table)
    x = [f"cluster {j}" for j in clusters]
    fig = go.Figure(go.Heatmap(
        z=t, x=x, y=list(groups), colorscale="Blues", zmin=0, colorbar={"title": "tasks"},
        text=[[str(v) if v else "" for v in row] for row in t], texttemplate="%{text}",
        hovertemplate="%{y} in %{x}: %{z} task(s)<extra></extra>"))
    if matched:
        fig.add_shape(type="line", x0=-0.5, y0=-0.5, x1=matched - 0.5, y1=matched - 0.5,
                      line={"color": "rgba(214,39,40,0.5)", "width": 1, "dash": "dot"})
    fig.update_layout(height=max(300, 24 * len(groups) + 150),
                      margin=_margins(l=_label_px(groups) + 16, r=90, t=40, b=int(0.71 * _label_px(x)) + 30),
                      title="Known groups × clusters (matched pairs on the diagonal)",
                      xaxis={"type": "category", "tickangle": -45}, yaxis={"type": "category", "autorange": "reversed"})
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
    fig.update_layout(height=320, margin=_margins(l=50, r=_label_px(["train loss"]) + 60, t=40, b=70))
    return fig


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


def datamap_animation(confidence: np.ndarray, variability: np.ndarray, epochs: Sequence[int],
                      color: np.ndarray, color_title: str, *, categorical: bool, title: str = "",
                      start: int | None = None, hover: Sequence[str] | None = None,
                      density: np.ndarray | None = None) -> go.Figure:
    """Data map of one task, animated over ``epochs``: ``confidence`` / ``variability`` are
    ``(n_epochs, n_points)`` (points already subsampled), ``color`` ``(n_points,)`` (labels such
    as "positive" / "negative" when ``categorical``, else numbers such as correctness); ``hover``
    ``(n_points,)`` extra text per point (e.g. its class). ``density`` ``(n_epochs, 50, 50)``
    (:func:`datamap_density` of all samples) is drawn under the points. WebGL scatter; a slider
    and a play button step through the epochs; ``start`` is the epoch shown first (default
    last). Frames carry only the coordinates (and the density): colours and hover text are
    sent once."""
    epochs = list(epochs)
    first = epochs.index(start) if start in epochs else len(epochs) - 1
    conf = np.asarray(confidence, dtype=np.float32)
    var = np.asarray(variability, dtype=np.float32)
    text = None if hover is None else np.asarray([str(h) for h in hover])
    hovertemplate = ("variability %{x:.3f}<br>confidence %{y:.3f}<br>" + color_title + ": %{meta}"
                     + ("<br>%{text}" if text is not None else "") + "<extra></extra>")
    traces: list = []
    if density is not None:
        centres = [(b[:-1] + b[1:]) / 2 for b in DENSITY_BINS]
        traces.append(go.Heatmap(x=centres[0], y=centres[1], z=density[first], zmin=0, zmax=255, showscale=False,
                                 colorscale=[[0, "rgba(0,0,0,0)"], [0.02, "rgba(90,90,90,0.10)"],
                                             [1, "rgba(30,30,30,0.65)"]], hoverinfo="skip", name="all samples"))
    if categorical:  # one trace per colour, so the legend names them (and toggles them)
        labels = np.array([str(c) for c in color])
        groups = sorted(set(labels.tolist()), key=lambda s: ({"positive": 0, "negative": 1}.get(s, 2), len(s), s))
        members = [np.flatnonzero(labels == g) for g in groups]
        for j, (g, m) in enumerate(zip(groups, members)):
            traces.append(go.Scattergl(
                x=var[first, m], y=conf[first, m], mode="markers", name=g,
                marker={"size": 4, "color": _PALETTE[j % len(_PALETTE)]},
                text=None if text is None else text[m], hovertemplate=hovertemplate.replace("%{meta}", g)))
    else:
        members = [np.arange(conf.shape[1])]
        values = np.asarray(color, dtype=np.float32)
        traces.append(go.Scattergl(
            x=var[first], y=conf[first], mode="markers", showlegend=False, text=text,
            customdata=values, marker={"size": 4, "color": values, "colorscale": "RdYlGn", "cmin": 0, "cmax": 1,
                                       "colorbar": {"title": color_title}},
            hovertemplate=hovertemplate.replace("%{meta}", "%{customdata:.2f}")))
    offset = 1 if density is not None else 0

    def frame(i: int, e: int) -> go.Frame:
        data = [go.Heatmap(z=density[i])] if density is not None else []
        data += [go.Scattergl(x=var[i, m], y=conf[i, m]) for m in members]
        return go.Frame(data=data, traces=list(range(offset + len(members))), name=str(e))

    fig = go.Figure(data=traces, frames=[frame(i, e) for i, e in enumerate(epochs)])
    for name, region in DATAMAP_REGIONS.items():
        fig.add_shape(type="rect", x0=region["x"][0], x1=region["x"][1], y0=region["y"][0], y1=region["y"][1],
                      fillcolor=region["color"], line={"width": 0}, layer="below")
        fig.add_annotation(x=sum(region["x"]) / 2, y=region["y"][1] if name != "hard-to-learn" else region["y"][0],
                           text=name, showarrow=False, font={"size": 11, "color": "gray"},
                           bgcolor="rgba(255,255,255,0.7)",
                           yanchor="top" if name != "hard-to-learn" else "bottom")
    step = {"frame": {"duration": 400, "redraw": True}, "mode": "immediate", "transition": {"duration": 0}}
    right = _label_px([color_title, *groups]) + 60 if categorical else 120  # the legend, or the colour bar
    fig.update_layout(
        title=title, height=460, margin=_margins(l=80, r=right, t=40, b=125),  # bottom: play buttons, epoch slider
        xaxis={"title": "variability", "range": [0, 0.5]}, yaxis={"title": "confidence", "range": [0, 1]},
        legend={"title": color_title} if categorical else None,
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


# ---- clustering: known groups and the task map ---------------------------------------------

#: Lighter companions of ``_PALETTE`` (D3's category20), so up to 20 clusters get distinct colours.
_PALETTE_LIGHT = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
                  "#dbdb8d", "#9edae5")


def cluster_color(j: int) -> str:
    """Colour of cluster ``j``, the same in every clustering figure (20 distinct, then repeating)."""
    j %= len(_PALETTE) + len(_PALETTE_LIGHT)
    return _PALETTE[j] if j < len(_PALETTE) else _PALETTE_LIGHT[j - len(_PALETTE)]


def group_membership_bars(memberships: np.ndarray, task_names: Sequence[str], groups: dict[str, str],
                          group: str) -> go.Figure:
    """Grouped bars of the paper's Figures 5 and 8–11: for each task of the known ``group``, its
    membership in each cluster (one bar per cluster, cluster colours as in :func:`task_map`).

    ``memberships`` ``(n_tasks, k)`` rows in the order of ``task_names``; ``groups`` maps a task
    name to its known group (as ``stg_core.clustering.task_groups`` returns). Tasks are drawn in
    the order of ``task_names``. ``ValueError`` when no task belongs to ``group``.
    """
    w = np.asarray(memberships, dtype=np.float64)
    names = list(task_names)
    if w.ndim != 2 or w.shape[0] != len(names):
        raise ValueError(f"memberships of shape {w.shape} do not match {len(names)} task names")
    rows = [i for i, t in enumerate(names) if groups.get(t) == group]
    if not rows:
        raise ValueError(f"no task belongs to the known group {group!r}")
    x = [names[i] for i in rows]
    fig = go.Figure([go.Bar(name=f"cluster {j}", x=x, y=w[rows, j], marker_color=cluster_color(j),
                            hovertemplate="%{x}<br>" + f"cluster {j}" + ": %{y:.3f}<extra></extra>")
                     for j in range(w.shape[1])])
    fig.update_layout(barmode="group", height=340,
                      margin=_margins(l=80, r=_label_px([f"cluster {w.shape[1] - 1}"]) + 60, t=40,
                                      b=58 if len(x) * (_label_px(x) + 10) < 500 else _label_px(x) + 30),
                      title=f"Memberships of the tasks of the known group “{group}”",
                      yaxis={"title": "membership", "range": [0, 1]},
                      xaxis={"type": "category"}, legend={"title": "cluster"})  # names like "3" stay labels
    return fig


def task_map(reduced: np.ndarray, task_names: Sequence[str], memberships: np.ndarray,
             labels: np.ndarray | None = None, *, centers: np.ndarray | None = None,
             show_names: bool | None = None) -> go.Figure:
    """2-D map of the tasks coloured by cluster.

    ``reduced`` ``(n_tasks, r)``: the exact reduction of the task vectors
    (``stg_core.clustering.reduce_task_vectors``), whose columns are already the principal axes
    of the centred task vectors in decreasing order of variance (``V·sqrt(λ)`` of the Gram
    matrix's eigendecomposition). Its first two columns are therefore the tasks' first two
    principal-component scores, so no separate PCA is run; a reduction with a single column
    (all tasks on a line) is drawn at 0 on the second axis. The axis titles give each axis's
    share of the total variance.

    ``memberships`` ``(n_tasks, k)``; ``labels`` ``(n_tasks,)`` cluster of each task (default:
    argmax of the memberships). Marker size and opacity grow with a task's largest membership
    (a faint, small marker: a task shared between clusters). ``centers`` ``(k, r)``: cluster
    centroids in the same space, drawn as crosses. ``show_names``: task names beside the
    markers (default: when there are at most 40 tasks; hover shows them always).
    """
    y = np.asarray(reduced, dtype=np.float64)
    w = np.asarray(memberships, dtype=np.float64)
    names = list(task_names)
    n = len(names)
    if y.ndim != 2 or y.shape[0] != n or w.ndim != 2 or w.shape[0] != n:
        raise ValueError(f"reduced {y.shape} and memberships {w.shape} must have one row per task ({n})")
    labels = w.argmax(axis=1) if labels is None else np.asarray(labels)
    xy = np.zeros((n, 2))
    xy[:, :min(2, y.shape[1])] = y[:, :2]
    total = float((y * y).sum())
    share = [float((xy[:, a] ** 2).sum()) / total if total > 0 else 0.0 for a in range(2)]
    k = w.shape[1]
    top = w.max(axis=1)
    # 0 = a task spread evenly over all clusters (1/k each), 1 = a task entirely in one cluster;
    # the square root spreads out the low end, where soft memberships (F = 2) usually lie
    certainty = np.sqrt(np.clip((top - 1.0 / k) / (1.0 - 1.0 / k), 0.0, 1.0)) if k > 1 else np.ones(n)
    show = n <= 40 if show_names is None else show_names
    fig = go.Figure()
    for j in range(k):
        m = np.flatnonzero(labels == j)
        if not len(m):
            continue
        fig.add_trace(go.Scatter(
            x=xy[m, 0], y=xy[m, 1], mode="markers+text" if show else "markers", name=f"cluster {j} ({len(m)})",
            text=[names[i] for i in m], textposition="top center", customdata=top[m],
            marker={"color": cluster_color(j), "size": 7 + 13 * certainty[m], "opacity": 0.4 + 0.6 * certainty[m],
                    "line": {"width": 0.5, "color": "white"}},
            hovertemplate="%{text}<br>" + f"cluster {j}" + ", membership %{customdata:.3f}<extra></extra>"))
    if centers is not None:
        c = np.asarray(centers, dtype=np.float64)
        cxy = np.zeros((len(c), 2))
        cxy[:, :min(2, c.shape[1])] = c[:, :2]
        fig.add_trace(go.Scatter(
            x=cxy[:, 0], y=cxy[:, 1], mode="markers", name="centroids", text=[f"cluster {j}" for j in range(len(c))],
            marker={"symbol": "x-thin", "size": 14,
                    "line": {"width": 2, "color": [cluster_color(j) for j in range(len(c))]}},
            hovertemplate="centroid of %{text}<extra></extra>"))
    legend = [f"cluster {j} ({n})" for j in range(k)] + (["centroids"] if centers is not None else [])
    fig.update_layout(height=460, margin=_margins(l=85, r=_label_px(legend) + 60, t=40, b=70), title="Tasks by cluster",
                      xaxis={"title": f"principal axis 1 ({share[0]:.0%} of the variance)", "zeroline": False},
                      yaxis={"title": f"principal axis 2 ({share[1]:.0%} of the variance)", "zeroline": False},
                      legend={"title": "cluster (tasks)"})
    return fig


# ---- evaluation: F1 of the grouping methods ------------------------------------------------

#: Display names of the evaluated methods (``stg_core.evaluation.METHODS``); the order fixes
#: each method's colour, so a method looks the same whichever methods an evaluation compares.
METHOD_LABELS = {"mtl": "MTL", "stl": "STL", "stg": "STG-MTL soft", "stg-hard": "STG-MTL hard",
                 "random": "random grouping"}


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def method_color(method: str) -> str:
    known = list(METHOD_LABELS)
    return _PALETTE[known.index(method) if method in known else len(known) + sum(map(ord, method)) % 5]


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
