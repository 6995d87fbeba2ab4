"""Reading the ECharts figures (``app.cluster_charts``) back in tests: the option a page drew
under a key, and the matrix a heatmap option draws."""

from __future__ import annotations

import json

import numpy as np


def chart_option(at, key: str) -> dict:
    """The option of the one ``st.echarts_chart`` drawn under ``key`` in AppTest ``at``."""
    charts = [c for c in at.get("echarts_chart") if c.proto.id.endswith(f"-{key}")]
    assert len(charts) == 1, f"no single ECharts chart with key {key!r}"
    return json.loads(charts[0].proto.spec)


def chart_keys(at) -> list[str]:
    """The keys of the page's ECharts charts, in page order."""
    return [c.proto.id.rsplit("-", 1)[-1] for c in at.get("echarts_chart")]


def heatmap_matrix(option: dict, series: int = 0) -> np.ndarray:
    """The ``(rows, columns)`` values a heatmap series draws (its data items are ``[column, row,
    value]``; a cell it leaves out is 0), rows and columns as its axes list them."""
    s = option["series"][series]
    x = option["xAxis"][s.get("xAxisIndex", 0)] if isinstance(option["xAxis"], list) else option["xAxis"]
    y = option["yAxis"][s.get("yAxisIndex", 0)] if isinstance(option["yAxis"], list) else option["yAxis"]
    z = np.zeros((len(y["data"]), len(x["data"])))
    for item in s["data"]:
        c, r, v = item["value"] if isinstance(item, dict) else item
        z[r, c] = v
    return z
