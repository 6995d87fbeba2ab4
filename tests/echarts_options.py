"""Reading the ECharts figures (``app.cluster_charts``, ``app.training_charts``) back in tests and
benchmarks: the option a page drew under a key (a Plotly figure too), the matrix a heatmap
option draws, and the membership heatmap as a browser drew it; and opening the tab of a page
that draws its figures in tabs."""

from __future__ import annotations

import json

import numpy as np


# The spec (a JSON string) of the membership heatmap as ECharts applied it in a browser page, or
# null: the option its chart element holds (React's props of the element; React keeps two
# versions of a component, the current one is either), once the chart's aria-label, which
# ECharts writes from the applied option, describes that option's first cell. For Playwright's
# ``page.evaluate`` (tests/test_browser.py, bench/scale.py).
MEMBERSHIP_SPEC_JS = """() => {
    for (const el of document.querySelectorAll('[data-testid="stEChartsChart"]')) {
        const label = el.getAttribute('aria-label') || '';
        if (!label.includes('named membership')) continue;
        let f = el[Object.keys(el).find(k => k.startsWith('__reactFiber'))];
        while (f && !(f.memoizedProps && f.memoizedProps.element && f.memoizedProps.element.spec)) f = f.return;
        for (const fiber of f ? [f, f.alternate] : []) {
            const spec = fiber && fiber.memoizedProps.element && fiber.memoizedProps.element.spec;
            const first = spec && JSON.parse(spec).series[0].data[0];
            if (first && label.includes(`the data for ${first.name} is ${first.value.join(', ')}`)) return spec;
        }
        return null;
    }
    return null;
}"""


def open_tab(at, name: str, key: str = "view"):
    """Open tab ``name`` of the tabs under ``key`` (the Clustering page's Memberships, Known
    groups, Paper's claims, Table) in AppTest ``at``, as a click on it does: the tab's state and
    the URL's query parameter. Returns ``at`` after the rerun."""
    at.session_state[key] = name
    at.query_params[key] = name
    at.run()
    assert not at.exception, at.exception
    return at


def chart_option(at, key: str, element: str = "echarts_chart") -> dict:
    """The option of the one ``st.echarts_chart`` drawn under ``key`` in AppTest ``at`` (with
    ``element="plotly_chart"``: the figure of the one ``st.plotly_chart``)."""
    charts = [c for c in at.get(element) if c.proto.id.endswith(f"-{key}")]
    assert len(charts) == 1, f"no single {element} with key {key!r}"
    return json.loads(charts[0].proto.spec)


def chart_keys(at, element: str = "echarts_chart") -> list[str]:
    """The keys of the page's ECharts charts (or ``element``s), in page order."""
    return [c.proto.id.rsplit("-", 1)[-1] for c in at.get(element)]


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
