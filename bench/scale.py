#!/usr/bin/env python
"""The pages at the paper's scale, measured in a real browser: a CIFAR-100 G3-sized run
(100 tasks × 50,000 samples × 50 recorded epochs) served by ``streamlit run app/main.py`` and
opened in headless Chromium.

    python bench/scale.py            # 100 tasks x 50,000 samples x 50 epochs (~10 min on 2 cores, most of it writing the run)
    python bench/scale.py --quick    # 100 tasks x 5,000 samples x 5 epochs, 5 changes each (~2 min)
    python bench/scale.py --store DIR  # keep the run in DIR and reuse it next time (same sizes): ~2 min
    python bench/scale.py --busy 1   # the same with one process spinning on a core beside it (a loaded machine)

The run is written by ``stg_core.synthetic.write_synthetic_run``: synthetic p_true with the 20
superclasses planted, through the same recorder and store code as training (p_true and Gram
statistics per epoch, samples, dataset.json, metrics, status). Times are browser-side, from the
navigation start (or the key event) to the page's figures drawn and its script finished: every
figure holds its data, and the last canvas draw call is done (none follows for 300 ms).

1. First visit: each page from a fresh server (no reduction cached) in a new browser profile
   (nothing cached; Chromium itself already running, as a user's is), once the server has
   imported the pages' modules as it does when it starts (``app/preload.py``; the time from
   ``streamlit run`` to then is printed): Clustering with the raw representation, the pattern
   representation and an epoch selection (through the URL), and Training with the data map of
   one task. Then Clustering visited the moment the server answers, its imports still running:
   what a visitor who is that quick meets.
2. In one tab, as a user clicks through, on one server (its start-up imports done): Clustering
   (not counted: it fills the cache), a reload of it (cached), then the pattern representation
   and the epoch selection (reductions not cached) and Training (data map not cached) opened in
   the same tab; the bytes the websocket received for Training; 10 k and 10 F changes on
   Clustering's Memberships tab (keyboard on the slider: from the key event to the membership
   heatmap holding new values, the script finished and the last canvas draw call done; median,
   p90); the Known groups tab opened by a link (cached) and 10 k and 10 F changes on it (to its
   charts holding new values); the server's RSS.
3. The framework's share, measured the same way on ``bench/floor_app.py`` (a title, the k
   slider and the same membership heatmap, nothing else): its first visit and its k changes.

Targets are printed beside the figures; nothing asserts. The machine's load is printed at the
start and the end: compare figures from one run only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from app.preload import PRELOADED  # noqa: E402
from common import cpu_model, load_average, usable_cores, verdict  # noqa: E402
from stg_core.store import ArtifactStore  # noqa: E402
from stg_core.synthetic import write_synthetic_run  # noqa: E402
from tests.app_server import headless_browser, serve_app  # noqa: E402
from tests.echarts_options import MEMBERSHIP_SPEC_JS  # noqa: E402

TARGETS = {"first": 2.0, "cached": 1.5, "training": 3.0, "training_mb": 3.0, "change_p90": 0.300, "rss_gb": 1.0}
TIMEOUT_MS = 600_000

# Every 2-D canvas draw call stamps window.__lastDraw (ECharts, Plotly's heatmaps and Streamlit's
# tables draw on canvases), so a figure counts as drawn only once its last draw call is done.
CANVAS_JS = """() => {
    window.__lastDraw = 0;
    for (const name of ['fillRect', 'fill', 'stroke', 'drawImage', 'putImageData', 'fillText']) {
        const draw = CanvasRenderingContext2D.prototype[name];
        CanvasRenderingContext2D.prototype[name] = function (...args) {
            window.__lastDraw = performance.now();
            return draw.apply(this, args);
        };
    }
}"""
# The time (ms since navigation start) at which the page was drawn, or null: the app's script
# has finished, at least ``want`` charts hold their figures (a Plotly chart its drawn data, an
# ECharts chart an applied option, which ECharts then describes in its aria-label), and no canvas
# was drawn on for 300 ms. The time is when all that first held or the last draw call, whichever
# is later.
DRAWN_JS = """(want) => {
    const app = document.querySelector('[data-testid="stApp"]');
    const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
    const charts = Array.from(document.querySelectorAll('[data-testid="stEChartsChart"]'));
    const ready = app && app.getAttribute('data-test-script-state') === 'notRunning'
        && app.getAttribute('data-test-connection-state') === 'CONNECTED'
        && plots.filter(p => p._fullData && p._fullData.length).length
           + charts.filter(c => c.getAttribute('aria-label')).length >= want;
    if (!ready) { window.__met = null; return null; }
    window.__met = window.__met || performance.now();
    if (performance.now() - window.__lastDraw < 300) return null;
    return Math.max(window.__met, window.__lastDraw);
}"""
# Every ECharts chart's description of the option it applied (its aria-label), or null while one
# has none: what the Known groups view's k / F changes are watched by.
CHARTS_JS = """() => {
    const labels = Array.from(document.querySelectorAll('[data-testid="stEChartsChart"]'),
                              c => c.getAttribute('aria-label'));
    return labels.length && labels.every(l => l) ? labels.join('|') : null;
}"""
# Arms a frame-by-frame watch of the next key event: window.__t1 is set once the figures (what
# ``drawnJs`` returns: the membership heatmap's option, or every chart's) hold a new option, the
# script has finished and no canvas was drawn on for 300 ms, to the later of the first two and
# the last draw call.
ARM_JS = """(drawnJs) => {
    const drawnNow = eval(drawnJs);
    window.__t0 = null; window.__t1 = null;
    const before = drawnNow();
    let changed = null;
    document.addEventListener('keydown', () => { window.__t0 = performance.now(); }, {once: true, capture: true});
    const app = document.querySelector('[data-testid="stApp"]');
    const loop = () => {
        const now = performance.now();
        if (window.__t0 !== null && changed === null) {
            const drawn = drawnNow();
            if (drawn !== null && drawn !== before && app.getAttribute('data-test-script-state') === 'notRunning') {
                changed = now;
            }
        }
        if (changed !== null && now - window.__lastDraw >= 300) {
            window.__t1 = Math.max(changed, window.__lastDraw);
            return;
        }
        requestAnimationFrame(loop);
    };
    requestAnimationFrame(loop);
}"""


def fmt(seconds: float, target: float, unit: str = "s") -> str:
    return f"{seconds:7.2f} {unit}   target <= {target:g} {unit}   {verdict(seconds <= target)}"


class Tab:
    """One browser tab (its own profile) that counts the bytes its websockets receive."""

    def __init__(self, browser) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.page.add_init_script(f"({CANVAS_JS})()")
        self.received = 0
        self.page.on("websocket", lambda ws: ws.on("framereceived", self._count))

    def __enter__(self) -> "Tab":
        return self

    def __exit__(self, *exc) -> None:
        self.context.close()

    def _count(self, payload) -> None:
        self.received += len(payload)

    def open(self, url: str | None, want: int) -> tuple[float, int]:
        """Go to ``url`` (``None``: reload): seconds from navigation start to drawn, websocket
        bytes received."""
        self.received = 0
        if url is None:
            self.page.reload()
        else:
            self.page.goto(url)
        seconds = self.page.wait_for_function(DRAWN_JS, arg=want, polling="raf",
                                              timeout=TIMEOUT_MS).json_value() / 1000
        exceptions = self.page.locator('[data-testid="stException"]')
        if exceptions.count():
            raise SystemExit(f"{url}: the app shows an exception:\n{exceptions.first.inner_text()}")
        return seconds, self.received

    def slider_changes(self, label: str, n: int, drawn_js: str = MEMBERSHIP_SPEC_JS) -> list[float]:
        """``n`` key presses on slider ``label`` (right, then left at its end): seconds from each
        key event to the figures holding new values (``drawn_js`` returns what they hold: the
        membership heatmap's option by default), the script finished and every canvas drawn."""
        thumb = self.page.locator('[data-testid="stSlider"]').filter(has_text=label).locator('input[type="range"]')
        times = []
        key = "ArrowRight"
        for _ in range(n + 1):  # the first change warms up (imports, first re-clustering): not counted
            if thumb.input_value() == thumb.get_attribute("aria-valuemax"):
                key = "ArrowLeft"
            self.page.evaluate(ARM_JS, drawn_js)
            thumb.focus()
            thumb.press(key)
            self.page.wait_for_function("window.__t1 !== null", polling="raf", timeout=TIMEOUT_MS)
            times.append(self.page.evaluate("(window.__t1 - window.__t0) / 1000"))
            self.page.wait_for_timeout(300)
        return times[1:]


def start_renderer(browser) -> None:
    """One blank page in a throwaway profile: the first page of a just-launched Chromium also
    pays for starting its renderer, which a user's running browser has done long before."""
    context = browser.new_context()
    context.new_page().set_content("<canvas></canvas>")
    context.close()


def first_visit(browser, url: str, want: int) -> tuple[float, int]:
    """``url`` in a new browser profile: seconds to drawn, websocket bytes."""
    with Tab(browser) as tab:
        return tab.open(url, want)


def figure_line(name: str, value: float, target: str | None = None, received: int | None = None) -> str:
    """One printed figure: ``value`` seconds (megabytes for ``training_mb``, gigabytes for
    ``rss_gb``) beside its ``TARGETS[target]`` when it has one, and the websocket bytes."""
    unit = {"training_mb": "MB", "rss_gb": "GB"}.get(target, "s")
    shown = fmt(value, TARGETS[target], unit) if target else f"{value:7.2f} {unit}"
    return f"  {name:<64} {shown}" + ("" if received is None else f"   websocket {received / 2**20:6.2f} MB")


def changes_line(name: str, times: list[float]) -> str:
    p90 = float(np.percentile(times, 90))
    return (f"  {name:<64} median {statistics.median(times):.3f} s, p90 {fmt(p90, TARGETS['change_p90'])}   "
            f"each: {json.dumps([round(t, 3) for t in times])}")


def reusable_run(store: ArtifactStore, n_samples: int, n_epochs: int) -> str | None:
    """A finished synthetic cifar100-g3 run in ``store`` with ``n_samples`` samples and
    ``n_epochs`` recorded epochs, or None."""
    for run in store.list_runs():
        try:
            spec = store.load_spec(run["id"])
            if (spec.dataset.startswith("cifar100") and len(spec.task_names) == 100
                    and store.read_status(run["id"]).get("state") == "completed"
                    and store.recorded_epochs(run["id"]) == list(range(1, n_epochs + 1))
                    and len(store.read_array(run["id"], "samples/classes")) == n_samples):
                return run["id"]
        except (OSError, ValueError, KeyError):
            continue
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5,000 samples, 5 epochs, 5 changes of k and F")
    parser.add_argument("--samples", type=int, help="training samples N (default 50,000; --quick 5,000)")
    parser.add_argument("--epochs", type=int, help="recorded epochs (default 50; --quick 5)")
    parser.add_argument("--store", type=Path, help="store folder kept between runs: a synthetic run of the same "
                                                   "sizes found there is reused instead of written again")
    parser.add_argument("--busy", type=int, default=0, help="processes spinning beside the measurement, each on a "
                                                              "core (the machine's load goes up by as many)")
    args = parser.parse_args()
    n_samples = args.samples or (5_000 if args.quick else 50_000)
    n_epochs = args.epochs or (5 if args.quick else 50)
    n_changes = 5 if args.quick else 10
    import streamlit

    print(f"cpu: {cpu_model()}; usable cores={usable_cores()}; load average {load_average()}")
    print(f"streamlit {streamlit.__version__}; run: cifar100-g3, 100 tasks x {n_samples:,} samples x {n_epochs} "
          f"epochs (synthetic p_true, 20 superclasses planted)")
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    if busy:
        print(f"{len(busy)} spinning process(es) beside the measurement")
    try:
        measure(args, n_samples, n_epochs, n_changes)
    finally:
        for process in busy:
            process.kill()
    print(f"load average at the end: {load_average()}")


def measure(args: argparse.Namespace, n_samples: int, n_epochs: int, n_changes: int) -> None:
    """Write (or reuse) the run, measure the pages and print the figures."""
    import psutil

    with tempfile.TemporaryDirectory(prefix="stg_scale_") as tmp:
        store = ArtifactStore(args.store or Path(tmp) / "store")
        run_id = reusable_run(store, n_samples, n_epochs) if args.store else None
        t = time.perf_counter()
        reused = run_id is not None
        if run_id is None:
            run_id = write_synthetic_run(store, "cifar100-g3", n_samples=n_samples, n_epochs=n_epochs)
        size = sum(p.stat().st_size for p in store.run_dir(run_id).rglob("*") if p.is_file())
        print(f"run {run_id} {'reused' if reused else 'written'} in {time.perf_counter() - t:.0f} s "
              f"({size / 2**20:,.0f} MiB)")
        clustering = f"/clustering?run={run_id}"
        task = store.load_spec(run_id).task_names[0]
        selection = ",".join(str(e) for e in range(1, n_epochs + 1, 2))
        # Clustering opens on its Memberships tab: the heatmap and the task map.
        pages = (("Clustering (raw, every epoch)", clustering, 2, "first"),
                 ("Clustering (pattern)", clustering + "&rep=pattern", 2, "first"),
                 (f"Clustering (epochs {selection[:12]}…)", clustering + f"&ep={selection}", 2, "first"),
                 (f"Training, data map of task {task!r}", f"/training?run={run_id}&task={task}", 2, "training"))
        log = Path(tmp) / "server.log"
        lines = []
        with headless_browser() as browser:
            start_renderer(browser)
            lines.append("First visit: a fresh server with the pages' modules imported, a new browser profile")
            for name, path, want, target in pages:
                started = time.perf_counter()
                with serve_app(store.root, log, ready_line=PRELOADED) as (url, server):
                    ready = time.perf_counter() - started
                    seconds, received = first_visit(browser, url + path, want)
                lines.append(figure_line(name, seconds, target, received))
            preloaded = next(line for line in log.read_text().splitlines() if line.startswith(PRELOADED))
            lines.append(f"  (server ready {ready:.1f} s after `streamlit run`; its log: {preloaded!r})")
            with serve_app(store.root, log) as (url, server):
                seconds, received = first_visit(browser, url + clustering, 2)
            lines.append(figure_line("Clustering (raw), the moment the server answers", seconds, "first", received))
            lines.append("In one tab on one server (Clustering opened first, not counted)")
            with serve_app(store.root, log, ready_line=PRELOADED) as (url, server), Tab(browser) as tab:
                tab.open(url + clustering, 2)
                lines.append(figure_line("Clustering, cached (reload)", tab.open(None, 2)[0], "cached"))
                for name, path, want, target in pages[1:]:
                    seconds, received = tab.open(url + path, want)
                    lines.append(figure_line(name + ", not cached", seconds, target, received))
                lines.append(figure_line("Training, websocket bytes", received / 2**20, "training_mb"))
                tab.open(url + clustering, 2)
                for name, label in (("k change", "Clusters k"), ("F change", "Fuzziness F")):
                    lines.append(changes_line(f"{name}, Memberships tab (key event -> tab redrawn)",
                                              tab.slider_changes(label, n_changes)))
                seconds = tab.open(url + clustering + "&view=Known+groups", 2)[0]
                lines.append(figure_line("Clustering, Known groups tab (link), cached", seconds, "cached"))
                for name, label in (("k change", "Clusters k"), ("F change", "Fuzziness F")):
                    lines.append(changes_line(f"{name}, Known groups tab (key event -> tab redrawn)",
                                              tab.slider_changes(label, n_changes, CHARTS_JS)))
                rss = psutil.Process(server.pid).memory_info().rss / 2**30
                lines.append(figure_line("Streamlit server RSS after both pages", rss, "rss_gb"))
            lines.append("The framework's share (bench/floor_app.py: the k slider and the same heatmap, nothing else)")
            with serve_app(store.root, log, "bench/floor_app.py") as (url, server):
                lines.append(figure_line("first visit (title, slider, heatmap)", first_visit(browser, url, 1)[0]))
                with Tab(browser) as tab:
                    tab.open(url, 1)
                    lines.append(changes_line("k change, one heatmap of 100 tasks",
                                              tab.slider_changes("Clusters k", n_changes)))
        print()
        print("\n".join(lines))


if __name__ == "__main__":
    main()
