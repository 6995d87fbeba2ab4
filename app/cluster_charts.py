"""ECharts option builders for the groupings' figures: arrays in, option dicts out (no Streamlit,
no store access). Each option carries the figure's height in px under ``"height"``, which
``st.echarts_chart`` takes as its own argument; :func:`show` draws one.

Why ECharts here (and for the Training page, :mod:`app.training_charts`) while the other pages
keep Plotly: a k or F change redraws these figures from new memberships. ``st.plotly_chart``
gives a chart a new identity whenever its figure changes, so each change unmounts and mounts
every Plotly figure again (and draws it twice), while a keyed ``st.echarts_chart`` keeps its
chart and updates it in place, which makes a k or F change at 100 tasks markedly faster in the
browser (before / after figures: bench/README.md, ``scale.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.charts import cluster_color, cluster_order, label_px

#: Plotly's "Blues" colour scale (ColorBrewer), light to dark, as in the Plotly heatmaps.
BLUES = ("#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b")

#: Height of a heatmap row: 22 px up to 40 tasks, then 14 px with 10 px names (100 tasks: 1,400 px).
_ROW_PX, _ROW_PX_MANY = 22, 14


#: A grid that ECharts shrinks until its axis labels and names fit in the chart (the legend or the
#: colour scale goes in the right margin).
_GRID = {"left": 8, "right": 8, "top": 45, "bottom": 8, "outerBoundsMode": "same"}


def show(container, option: dict, key: str) -> None:
    """Draw ``option`` in ``container`` (``st`` or a column) under a fixed ``key``: a rerun then
    updates the chart in place instead of mounting a new one."""
    spec = dict(option)
    container.echarts_chart(spec, height=spec.pop("height"), key=key)


def rounded(values: np.ndarray, digits: int = 4) -> list:
    """JSON-ready nested lists of rounded floats (numpy scalars are not JSON)."""
    return np.round(np.asarray(values, dtype=np.float64), digits).tolist()


def chart_title(text: str | None) -> dict:
    return {"text": text, "left": 0, "textStyle": {"fontSize": 14, "fontWeight": "normal"}} if text else {"show": False}


def membership_heatmap(memberships: np.ndarray, task_names: Sequence[str], order: Sequence[int] | None = None,
                       title: str | None = None, bands: Sequence[str] | None = None,
                       band_title: str = "known group") -> dict:
    """Heatmap of memberships ``(n_tasks, k)``: tasks (rows, ordered by cluster) × clusters.

    ``order``: the task order (row indices of ``memberships``, top to bottom) instead of this
    grouping's own :func:`cluster_order` — e.g. one order shared by several groupings drawn side
    by side. ``ValueError`` when it is not a permutation of the tasks. ``bands``: a label per
    task (in the rows' order of ``memberships``, e.g. its known group; ``""`` for none), drawn
    as a coloured band left of the heatmap, named on hover.
    """
    w = np.asarray(memberships, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != len(task_names):
        raise ValueError(f"memberships of shape {w.shape} do not match {len(task_names)} task names")
    if order is None:
        order = cluster_order(w)
    else:
        order = np.asarray(order, dtype=np.int64)
        if sorted(order.tolist()) != list(range(len(w))):
            raise ValueError(f"order must be a permutation of the {len(w)} tasks")
    n, k = len(order), w.shape[1]
    rows = [str(task_names[i]) for i in order]
    clusters = [f"cluster {j}" for j in range(k)]
    font = 12 if n <= 40 else 10
    left = label_px(rows, font) + 16
    band = 0 if bands is None else 28
    bottom = 30 if k <= 8 else 60
    if bands is not None:
        bottom = max(bottom, int(0.87 * label_px([band_title])) + 20)  # its label turned by 60°
    z = rounded(w[order], 4)
    top = 40 if title else 12
    option = {
        "height": max(300, (_ROW_PX if n <= 40 else _ROW_PX_MANY) * n + top + bottom + 20),
        "animation": False,
        "title": chart_title(title),
        "tooltip": {"confine": True},
        # the band's grid and the heatmap's share their rows, so both are placed to the pixel: the
        # margins leave room for the labels, and ECharts does not shrink a grid to hold them
        "grid": [{"left": left + band, "right": 80, "top": top, "bottom": bottom, "outerBoundsMode": "none"}],
        "xAxis": [{"type": "category", "data": clusters, "gridIndex": 0, "splitArea": {"show": False},
                   "axisLabel": {"rotate": 0 if k <= 8 else 60, "interval": 0}}],
        "yAxis": [{"type": "category", "data": rows, "inverse": True, "gridIndex": 0,
                   "axisLabel": {"fontSize": font, "interval": 0, "show": bands is None}}],
        "visualMap": [{"type": "continuous", "min": 0, "max": 1, "seriesIndex": 0, "calculable": False,
                       "orient": "vertical", "right": 0, "top": top, "itemHeight": 160,  # beside the first rows
                       "text": ["membership 1", "0"], "inRange": {"color": list(BLUES)}}],
        "series": [{"type": "heatmap", "name": "membership", "xAxisIndex": 0, "yAxisIndex": 0,
                    "data": [{"value": [j, i, z[i][j]], "name": f"{rows[i]} · {clusters[j]}"}
                             for i in range(n) for j in range(k)],
                    "tooltip": {"formatter": "{b}: {@[2]}"},
                    "emphasis": {"itemStyle": {"borderColor": "#333", "borderWidth": 1}}}],
    }
    if bands is not None:
        labels = [str(bands[i]) for i in order]
        known = sorted({b for b in labels if b})
        option["grid"].append({"left": left, "width": band - 4, "top": top, "bottom": bottom,
                               "outerBoundsMode": "none"})
        option["xAxis"].append({"type": "category", "data": [band_title], "gridIndex": 1,
                                "axisLabel": {"rotate": 60, "interval": 0}})
        option["yAxis"].append({"type": "category", "data": rows, "inverse": True, "gridIndex": 1,
                                "axisLabel": {"fontSize": font, "interval": 0}})
        option["visualMap"].append({"type": "piecewise", "show": False, "seriesIndex": 1, "dimension": 2,
                                    "pieces": [{"value": j, "color": cluster_color(j)} for j in range(len(known))],
                                    "outOfRange": {"color": "rgba(0,0,0,0)"}})
        option["series"].append({"type": "heatmap", "name": band_title, "xAxisIndex": 1, "yAxisIndex": 1,
                                 "data": [{"value": [0, i, known.index(b) if b else -1],
                                           "name": f"{rows[i]}: {b or '—'}"} for i, b in enumerate(labels)],
                                 "tooltip": {"formatter": band_title + " of {b}"}})
    return option


def contingency_heatmap(table: np.ndarray, groups: Sequence[str], clusters: Sequence[int], matched: int) -> dict:
    """Known groups (rows) × clusters (columns) of a :class:`stg_core.alignment.Contingency`:
    task counts written in the cells, the ``matched`` pairs on the diagonal first (joined by a
    dotted line)."""
    t = np.asarray(table, dtype=np.int64)
    if t.shape != (len(groups), len(clusters)):
        raise ValueError(f"table of shape {t.shape} does not match {len(groups)} groups × {len(clusters)} clusters")
    x = [f"cluster {j}" for j in clusters]
    y = [str(g) for g in groups]
    series = {"type": "heatmap", "name": "tasks",
              "data": [{"value": [c, r, int(t[r, c])], "name": f"{y[r]} in {x[c]}"}
                       for r in range(len(y)) for c in range(len(x)) if t[r, c]],
              "label": {"show": True, "fontSize": 11}, "tooltip": {"formatter": "{b}: {@[2]} task(s)"}}
    if matched:
        series["markLine"] = {"silent": True, "symbol": "none", "animation": False,
                              "lineStyle": {"color": "rgba(214,39,40,0.5)", "type": "dotted", "width": 1},
                              "data": [[{"coord": [0, 0]}, {"coord": [matched - 1, matched - 1]}]]}
    bottom = int(0.71 * label_px(x)) + 20  # the rotated cluster names
    return {
        "height": max(300, 24 * len(y) + 60 + bottom),
        "animation": False,
        "title": chart_title("Known groups × clusters (matched pairs on the diagonal)"),
        "tooltip": {"confine": True},
        "grid": _GRID | {"right": 80},
        "xAxis": {"type": "category", "data": x, "axisLabel": {"rotate": 45, "interval": 0}},
        "yAxis": {"type": "category", "data": y, "inverse": True, "axisLabel": {"interval": 0}},
        "visualMap": {"type": "continuous", "min": 0, "max": max(int(t.max(initial=0)), 1), "calculable": False,
                      "orient": "vertical", "right": 0, "top": "middle", "itemHeight": 120, "text": ["tasks", "0"],
                      "inRange": {"color": list(BLUES)}},
        "series": [series],
    }


def group_membership_bars(memberships: np.ndarray, task_names: Sequence[str], groups: dict[str, str],
                          group: str) -> dict:
    """Grouped bars of the paper's Figures 5 and 8–11: for each task of the known ``group``, its
    membership in each cluster (one bar per cluster, cluster colours as in :func:`task_map`).

    ``memberships`` ``(n_tasks, k)`` rows in the order of ``task_names``; ``groups`` maps a task
    name to its known group (as ``stg_core.clustering.task_groups`` returns). Tasks are drawn in
    the order of ``task_names``. ``ValueError`` when no task belongs to ``group``.
    """
    w = np.asarray(memberships, dtype=np.float64)
    names = [str(t) for t in task_names]
    if w.ndim != 2 or w.shape[0] != len(names):
        raise ValueError(f"memberships of shape {w.shape} do not match {len(names)} task names")
    rows = [i for i, t in enumerate(names) if groups.get(t) == group]
    if not rows:
        raise ValueError(f"no task belongs to the known group {group!r}")
    x = [names[i] for i in rows]
    turned = len(x) * (label_px(x) + 10) >= 400
    values = rounded(w[rows], 3)
    return {
        "height": 360 + (label_px(x) if turned else 0),
        "animation": False,
        "title": chart_title(f"Known group “{group}”")
        | {"subtext": "each task's memberships, one bar per cluster"},
        "tooltip": {"trigger": "axis", "confine": True},
        "legend": {"type": "scroll", "orient": "vertical", "right": 0, "top": 40},
        "grid": _GRID | {"right": label_px([f"cluster {w.shape[1] - 1}"]) + 50, "top": 80},
        "xAxis": {"type": "category", "data": x, "axisLabel": {"interval": 0, "rotate": 60 if turned else 0}},
        "yAxis": {"type": "value", "min": 0, "max": 1, "name": "membership"},
        "series": [{"type": "bar", "name": f"cluster {j}", "data": [v[j] for v in values],
                    "itemStyle": {"color": cluster_color(j)}} for j in range(w.shape[1])],
    }


def task_map(reduced: np.ndarray, task_names: Sequence[str], memberships: np.ndarray,
             labels: np.ndarray | None = None, *, centers: np.ndarray | None = None,
             show_names: bool | None = None) -> dict:
    """2-D map of the tasks coloured by cluster.

    ``reduced`` ``(n_tasks, r)``: the exact reduction of the task vectors
    (``stg_core.clustering.reduce_task_vectors``), whose columns are already the principal axes
    of the centred task vectors in decreasing order of variance (``V·sqrt(λ)`` of the Gram
    matrix's eigendecomposition). Its first two columns are therefore the tasks' first two
    principal-component scores, so no separate PCA is run; a reduction with a single column
    (all tasks on a line) is drawn at 0 on the second axis. The axis names give each axis's
    share of the total variance.

    ``memberships`` ``(n_tasks, k)``; ``labels`` ``(n_tasks,)`` cluster of each task (default:
    argmax of the memberships). Marker size and opacity grow with a task's largest membership
    (a faint, small marker: a task shared between clusters). ``centers`` ``(k, r)``: cluster
    centroids in the same space, drawn as crosses. ``show_names``: task names beside the
    markers (default: when there are at most 40 tasks; hover shows them always).
    """
    y = np.asarray(reduced, dtype=np.float64)
    w = np.asarray(memberships, dtype=np.float64)
    names = [str(t) for t in task_names]
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
    named = n <= 40 if show_names is None else show_names
    xy_plain, size, opacity = rounded(xy), rounded(7 + 13 * certainty, 1), rounded(0.4 + 0.6 * certainty, 2)
    series = []
    for j in range(k):
        m = np.flatnonzero(labels == j)
        if not len(m):
            continue
        series.append({
            "type": "scatter", "name": f"cluster {j} ({len(m)})",
            "itemStyle": {"color": cluster_color(j), "borderColor": "white", "borderWidth": 0.5},
            "label": {"show": named, "position": "top", "formatter": "{b}", "fontSize": 10, "color": "#444"},
            "tooltip": {"formatter": "{b}<br/>" + f"cluster {j}" + ", membership {@[2]}"},
            "data": [{"name": names[i], "value": [*xy_plain[i], round(float(top[i]), 3)], "symbolSize": size[i],
                      "itemStyle": {"opacity": opacity[i]}} for i in m]})
    if centers is not None:
        c = np.asarray(centers, dtype=np.float64)
        cxy = np.zeros((len(c), 2))
        cxy[:, :min(2, c.shape[1])] = c[:, :2]
        series.append({
            "type": "scatter", "name": "centroids", "symbol": _CROSS, "symbolSize": 14,
            "tooltip": {"formatter": "centroid of {b}"},
            "data": [{"name": f"cluster {j}", "value": p, "itemStyle": {"color": cluster_color(j)}}
                     for j, p in enumerate(rounded(cxy))]})
    legend = [s["name"] for s in series]
    return {
        "height": 460,
        "animation": False,
        "title": chart_title("Tasks by cluster"),
        "tooltip": {"confine": True},
        "legend": {"type": "scroll", "orient": "vertical", "right": 0, "top": 40, "data": legend},
        "grid": _GRID | {"right": label_px(legend) + 50},
        "xAxis": {"type": "value", "scale": True, "name": f"principal axis 1 ({share[0]:.0%} of the variance)",
                  "nameLocation": "middle", "nameGap": 28, "splitLine": {"show": False}},
        "yAxis": {"type": "value", "scale": True, "name": f"principal axis 2 ({share[1]:.0%} of the variance)",
                  "nameLocation": "middle", "nameGap": 45, "splitLine": {"show": False}},
        "series": series,
    }


#: A thin "x" (two crossed bars) for the centroids, as an SVG path ECharts scales to the symbol size.
_CROSS = "path://M1,0L5,4L9,0L10,1L6,5L10,9L9,10L5,6L1,10L0,9L4,5L0,1Z"
