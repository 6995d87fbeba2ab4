"""ECharts option builders for the Training page: a task's data map animated over the epochs and
the training curves (arrays in, option dicts out; :func:`app.cluster_charts.show` draws them).

ECharts rather than Plotly: the page then loads no Plotly bundle, whose script is several times
larger than ECharts' (which the Clustering page loads anyway), so a task's data map draws
markedly sooner at the paper's size (before / after figures: bench/README.md, ``scale.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.charts import DATAMAP_REGIONS, DENSITY_BINS, PALETTE, label_px
from app.cluster_charts import chart_title, rounded

#: Red (0) → yellow → green (1), ColorBrewer's RdYlGn, as Plotly's "RdYlGn" colour scale.
RD_YL_GN = ("#a50026", "#d73027", "#f46d43", "#fdae61", "#fee08b", "#ffffbf", "#d9ef8b", "#a6d96a", "#66bd63",
            "#1a9850", "#006837")


def _groups(labels: np.ndarray) -> list[str]:
    """The distinct labels: positive, negative, then the others by length and name."""
    return sorted(set(labels.tolist()), key=lambda s: ({"positive": 0, "negative": 1}.get(s, 2), len(s), s))


def datamap_timeline(confidence: np.ndarray, variability: np.ndarray, epochs: Sequence[int], color: np.ndarray,
                     color_title: str, *, categorical: bool, title: str = "", start: int | None = None,
                     hover: Sequence[str] | None = None, density: np.ndarray | None = None) -> dict:
    """Data map of one task, animated over ``epochs`` (an ECharts timeline: a slider with a play
    button steps through the epochs).

    ``confidence`` / ``variability`` ``(n_epochs, n_points)`` (points already subsampled);
    ``color`` ``(n_points,)``: labels such as "positive" / "negative" when ``categorical`` (one
    series per label, named in the legend), else numbers in [0, 1] such as correctness (a
    red-yellow-green scale); ``hover`` ``(n_points,)`` extra text per point (e.g. its class),
    shown on hover. ``density`` ``(n_epochs, 50, 50)`` (:func:`app.charts.datamap_density` of all
    samples) is drawn under the points as grey cells. ``start``: the epoch shown first (default
    the last).

    Every value is sent once: each series reads a dataset whose rows are its points (or the
    density's cells) and whose columns are the epochs, and an epoch's option only says which
    columns to draw (``encode``). The payload is therefore about 12 bytes per point and epoch
    plus 4 per density cell and epoch, and the hover text is not repeated per epoch.
    """
    epochs = [int(e) for e in epochs]
    conf = np.asarray(confidence, dtype=np.float64)
    var = np.asarray(variability, dtype=np.float64)
    n_epochs, n_points = conf.shape
    if var.shape != conf.shape or len(epochs) != n_epochs or len(color) != n_points:
        raise ValueError(f"confidence {conf.shape}, variability {var.shape}, {len(epochs)} epochs and "
                         f"{len(color)} colours do not match")
    first = epochs.index(start) if start in epochs else n_epochs - 1
    if categorical:
        labels = np.array([str(c) for c in color])
        groups = _groups(labels)
        members = [np.flatnonzero(labels == g) for g in groups]
    else:
        groups, members = [color_title], [np.arange(n_points)]
    # a point's row: [(its colour value), (its hover text), variability and confidence at each epoch]
    extra = ([] if categorical else [color_title]) + ([] if hover is None else ["class"])
    dimensions = extra + [f"{name} (epoch {e})" for e in epochs for name in ("variability", "confidence")]
    columns = ([] if categorical else [rounded(np.asarray(color, dtype=np.float64), 3)]) \
        + ([] if hover is None else [[str(h) for h in hover]])
    xy = np.empty((n_points, 2 * n_epochs))
    xy[:, 0::2], xy[:, 1::2] = var.T, conf.T
    xy = rounded(xy, 3)
    datasets = [{"dimensions": dimensions,
                 "source": [[*(c[i] for c in columns), *xy[i]] for i in m]} for m in members]
    offset = 0
    series: list[dict] = []
    visual_maps = []
    if density is not None:
        d = np.asarray(density).reshape(n_epochs, -1).T  # (cells, epochs)
        rows, cols = np.divmod(np.arange(d.shape[0]), density.shape[2])
        used = d.any(axis=1)  # cells empty at every epoch are left out
        datasets.insert(0, {"dimensions": ["variability bin", "confidence bin", *(f"density {e}" for e in epochs)],
                            "source": np.column_stack([cols[used], rows[used], d[used]]).tolist()})
        series.append({"type": "heatmap", "name": "all samples", "datasetIndex": 0, "xAxisIndex": 1,
                       "yAxisIndex": 1, "silent": True, "tooltip": {"show": False},
                       "encode": {"x": 0, "y": 1, "value": 2 + first}})
        # an empty cell (0) is out of range, drawn transparent; 1..255 go from faint to dark grey
        visual_maps.append({"type": "continuous", "show": False, "min": 1, "max": 255, "seriesIndex": 0,
                            "dimension": 2 + first,
                            "inRange": {"color": ["rgba(90,90,90,0.10)", "rgba(30,30,30,0.65)"]},
                            "outOfRange": {"color": "rgba(0,0,0,0)"}})
        offset = 1
    tooltip = list(range(len(extra)))

    def encode(i: int) -> dict:
        x = len(extra) + 2 * i
        return {"x": x, "y": x + 1, "tooltip": [x, x + 1, *tooltip]}

    for j, g in enumerate(groups):
        series.append({
            "type": "scatter", "name": g, "symbolSize": 4, "datasetIndex": offset + j, "encode": encode(first),
            **({"itemStyle": {"color": PALETTE[j % len(PALETTE)]}} if categorical else {}),
        })
    # the regions of the data map (Swayamdipta et al.), under the points of the first series
    series[offset]["markArea"] = {
        "silent": True, "label": {"color": "gray", "fontSize": 11},
        "data": [[{"name": name, "xAxis": r["x"][0], "yAxis": r["y"][0], "itemStyle": {"color": r["color"]},
                   "label": {"position": "insideBottom" if name == "hard-to-learn" else "insideTop"}},
                  {"xAxis": r["x"][1], "yAxis": r["y"][1]}] for name, r in DATAMAP_REGIONS.items()]}
    if not categorical:
        visual_maps.append({"type": "continuous", "min": 0, "max": 1, "dimension": 0, "seriesIndex": offset,
                            "text": [color_title, ""], "right": 0, "top": 60, "itemHeight": 200, "calculable": False,
                            "inRange": {"color": list(RD_YL_GN)}})
    bins = [len(DENSITY_BINS[0]) - 1, len(DENSITY_BINS[1]) - 1]
    hidden = {"show": False}
    right = label_px([color_title, *groups]) + 50 if categorical else 110
    base = {
        "animation": False,
        "title": chart_title(title),
        "tooltip": {"confine": True},
        "dataset": datasets,
        "timeline": {"axisType": "category", "data": [str(e) for e in epochs], "currentIndex": first,
                     "autoPlay": False, "playInterval": 400, "loop": False, "left": 40, "right": 20, "bottom": 0,
                     "tooltip": {"formatter": "epoch {b}"}},
        "grid": {"left": 60, "right": right, "top": 40, "bottom": 95},
        "xAxis": [{"type": "value", "name": "variability", "min": 0, "max": 0.5, "nameLocation": "middle",
                   "nameGap": 25, "splitLine": {"show": False}},
                  {"type": "category", "data": list(range(bins[0])), **hidden}],
        "yAxis": [{"type": "value", "name": "confidence", "min": 0, "max": 1, "nameLocation": "middle",
                   "nameGap": 35, "splitLine": {"show": False}},
                  {"type": "category", "data": list(range(bins[1])), **hidden}],
        "series": series,
        **({"legend": {"orient": "vertical", "right": 0, "top": 40, "data": groups}} if categorical else {}),
        **({"visualMap": visual_maps} if visual_maps else {}),
    }
    frames = [{"title": chart_title(f"{title} · epoch {e}" if title else f"epoch {e}"),
               "series": ([{"encode": {"x": 0, "y": 1, "value": 2 + i}}] if density is not None else [])
               + [{"encode": encode(i)} for _ in members],
               **({"visualMap": [{"dimension": 2 + i}]} if density is not None else {})}
              for i, e in enumerate(epochs)]
    return {"height": 480, "baseOption": base, "options": frames}


def training_curves(metrics: Sequence[dict]) -> dict:
    """Loss and mean F1 per epoch (train dashed, test solid) from a run's ``metrics.json`` rows,
    side by side."""
    epochs = [int(r["epoch"]) for r in metrics]

    def line(name: str, values: list, axis: int, dashed: bool, j: int) -> dict:
        return {"type": "line", "name": name, "xAxisIndex": axis, "yAxisIndex": axis, "symbolSize": 5,
                "data": [[e, None if v is None else round(float(v), 4)] for e, v in zip(epochs, values)],
                "itemStyle": {"color": PALETTE[j]}, "lineStyle": {"type": "dashed" if dashed else "solid"}}

    series = []  # one colour per split: train dashed, test solid
    for j, (split, dashed) in enumerate((("train", True), ("test", False))):
        series.append(line(f"{split} loss", [r.get(f"{split}_loss") for r in metrics], 0, dashed, j))
        series.append(line(f"{split} F1", [float(np.mean(r[split]["f1"])) if split in r else None for r in metrics],
                           1, dashed, j))
    axis = {"type": "value", "name": "epoch", "nameLocation": "middle", "nameGap": 25, "minInterval": 1,
            "splitLine": {"show": False}}
    legend = [s["name"] for s in series]
    return {
        "height": 320,
        "animation": False,
        "tooltip": {"trigger": "axis", "confine": True},
        "legend": {"orient": "vertical", "right": 0, "top": 40, "data": legend},
        "title": [chart_title("loss (weighted BCE)") | {"left": "4%"},
                  chart_title("mean F1 over tasks") | {"left": "46%"}],
        "grid": [{"left": 50, "right": "58%", "top": 40, "bottom": 45},
                 {"left": "50%", "right": label_px(legend) + 50, "top": 40, "bottom": 45}],
        "xAxis": [dict(axis, gridIndex=0), dict(axis, gridIndex=1)],
        "yAxis": [{"type": "value", "gridIndex": 0, "scale": True}, {"type": "value", "gridIndex": 1, "scale": True}],
        "series": series,
    }
