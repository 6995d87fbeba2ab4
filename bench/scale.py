#!/usr/bin/env python
"""The pages at the paper's scale, measured in a real browser: a CIFAR-100 G3-sized run
(100 tasks × 50,000 samples × 50 recorded epochs) served by ``streamlit run app/main.py`` and
opened in headless Chromium.

    python bench/scale.py            # 100 tasks x 50,000 samples x 50 epochs (~10 min on 2 cores, most of it writing the run)
    python bench/scale.py --quick    # 100 tasks x 5,000 samples x 5 epochs, 5 changes each (~2 min)
    python bench/scale.py --store DIR  # keep the run in DIR and reuse it next time (same sizes): ~2 min

The run is written by ``stg_core.synthetic.write_synthetic_run``: synthetic p_true with the 20
superclasses planted, through the same recorder and store code as training (p_true and Gram
statistics per epoch, samples, dataset.json, metrics, status). Then, each page from a fresh
server (no cache) unless said otherwise, timed browser-side from the navigation start to the
page's figures drawn and its script finished:

1. Clustering, first render; again with the pattern representation and with an epoch
   selection (both uncached, through the URL); then cached (a reload on the same server).
2. Training with the data map of one task: time and the bytes the websocket received.
3. A k change and an F change on Clustering (keyboard on the slider), 10 each: from the key
   event to the membership heatmap redrawn with new values and the script finished (median,
   p90).
4. The server's RSS after both pages.

Targets are printed beside the figures; nothing asserts. The machine's load is printed at the
start and the end: compare figures from one run only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from app_server import headless_browser, serve_app  # noqa: E402
from common import cpu_model, load_average, usable_cores, verdict  # noqa: E402
from stg_core.store import ArtifactStore  # noqa: E402
from stg_core.synthetic import write_synthetic_run  # noqa: E402

TARGETS = {"first": 2.0, "cached": 1.5, "training": 3.0, "training_mb": 3.0, "change_p90": 0.300, "rss_gb": 1.0}
TIMEOUT_MS = 600_000

# True once the app's script has finished and at least ``want`` Plotly charts hold drawn data.
DRAWN_JS = """([want, table]) => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    if (app.getAttribute('data-test-connection-state') !== 'CONNECTED') return false;
    const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
    if (plots.length < want || !plots.every(p => p._fullData && p._fullData.length)) return false;
    return !table || document.querySelector('[data-testid="stTable"]') !== null;
}"""
# The membership heatmap's values as drawn (the first heatmap on the page).
HEATMAP_JS = """() => {
    for (const plot of document.querySelectorAll('.js-plotly-plot')) {
        const t = (plot._fullData || []).find(d => d.type === 'heatmap');
        if (t && t.z) return JSON.stringify(Array.from(t.z, r => Array.from(r)));
    }
    return null;
}"""
# Arms a frame-by-frame watch: the time of the next key event, and of the first frame where the
# heatmap differs from now and the script has finished.
ARM_JS = """(heatmapJs) => {
    const heatmap = eval(heatmapJs);
    window.__t0 = null; window.__t1 = null;
    const before = heatmap();
    document.addEventListener('keydown', () => { window.__t0 = performance.now(); }, {once: true, capture: true});
    const app = document.querySelector('[data-testid="stApp"]');
    const loop = () => {
        const now = heatmap();
        if (window.__t0 !== null && now !== null && now !== before
                && app.getAttribute('data-test-script-state') === 'notRunning') {
            window.__t1 = performance.now();
            return;
        }
        requestAnimationFrame(loop);
    };
    requestAnimationFrame(loop);
}"""


def fmt(seconds: float, target: float, unit: str = "s") -> str:
    return f"{seconds:7.2f} {unit}   target <= {target:g} {unit}   {verdict(seconds <= target)}"


def open_page(browser, url: str, want: int, table: bool = False) -> tuple[float, int]:
    """Open ``url`` in a new tab; seconds from navigation start to drawn, websocket bytes received."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    received = [0]

    def on_socket(ws) -> None:
        ws.on("framereceived", lambda payload: received.__setitem__(0, received[0] + len(payload)))

    page.on("websocket", on_socket)
    page.goto(url)
    page.wait_for_function(DRAWN_JS, arg=[want, table], polling="raf", timeout=TIMEOUT_MS)
    seconds = page.evaluate("performance.now()") / 1000
    exceptions = page.locator('[data-testid="stException"]')
    if exceptions.count():
        raise SystemExit(f"{url}: the app shows an exception:\n{exceptions.first.inner_text()}")
    context.close()
    return seconds, received[0]


def slider_changes(browser, url: str, label: str, n: int) -> list[float]:
    """``n`` key presses on slider ``label`` (right, then left at its end): seconds from each key
    event to the heatmap redrawn with new values."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.wait_for_function(DRAWN_JS, arg=[3, True], polling="raf", timeout=TIMEOUT_MS)
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text=label).locator('input[type="range"]')
    times = []
    key = "ArrowRight"
    for _ in range(n + 1):  # the first change warms up (imports, first re-clustering): not counted
        if thumb.input_value() == thumb.get_attribute("aria-valuemax"):
            key = "ArrowLeft"
        page.evaluate(ARM_JS, HEATMAP_JS)
        thumb.focus()
        thumb.press(key)
        page.wait_for_function("window.__t1 !== null", polling="raf", timeout=TIMEOUT_MS)
        times.append(page.evaluate("(window.__t1 - window.__t0) / 1000"))
        page.wait_for_timeout(300)
    context.close()
    return times[1:]


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
    args = parser.parse_args()
    n_samples = args.samples or (5_000 if args.quick else 50_000)
    n_epochs = args.epochs or (5 if args.quick else 50)
    n_changes = 5 if args.quick else 10
    import psutil
    import streamlit

    print(f"cpu: {cpu_model()}; usable cores={usable_cores()}; load average {load_average()}")
    print(f"streamlit {streamlit.__version__}; run: cifar100-g3, 100 tasks x {n_samples:,} samples x {n_epochs} "
          f"epochs (synthetic p_true, 20 superclasses planted)")
    with tempfile.TemporaryDirectory(prefix="stg_scale_") as tmp:
        store = ArtifactStore(args.store or Path(tmp) / "store")
        run_id = reusable_run(store, n_samples, n_epochs) if args.store else None
        t = time.perf_counter()
        if run_id is None:
            run_id = write_synthetic_run(store, "cifar100-g3", n_samples=n_samples, n_epochs=n_epochs)
        size = sum(p.stat().st_size for p in store.run_dir(run_id).rglob("*") if p.is_file())
        print(f"run {run_id} {'written' if time.perf_counter() - t > 1 else 'reused'} in "
              f"{time.perf_counter() - t:.0f} s ({size / 2**20:,.0f} MiB)")
        clustering = f"/clustering?run={run_id}"
        task = store.load_spec(run_id).task_names[0]
        selection = ",".join(str(e) for e in range(1, n_epochs + 1, 2))
        log = Path(tmp) / "server.log"
        print()
        with headless_browser() as browser:
            results = {}
            for name, path, want, table in (
                    ("Clustering, first render (raw, every epoch)", clustering, 3, True),
                    ("Clustering, first render (pattern)", clustering + "&rep=pattern", 3, True),
                    (f"Clustering, first render (epochs {selection[:20]}…)", clustering + f"&ep={selection}", 3, True),
                    (f"Training, data map of task {task!r}", f"/training?run={run_id}&task={task}", 2, False)):
                with serve_app(store.root, log) as (url, server):
                    results[name] = open_page(browser, url + path, want, table)
                    if name.startswith("Clustering, first render (raw"):
                        results["Clustering, cached (reload)"] = open_page(browser, url + clustering, 3, True)
            with serve_app(store.root, log) as (url, server):
                open_page(browser, url + clustering, 3, True)
                k_times = slider_changes(browser, url + clustering, "Clusters k", n_changes)
                f_times = slider_changes(browser, url + clustering, "Fuzziness F", n_changes)
                open_page(browser, url + f"/training?run={run_id}&task={task}", 2, False)
                rss = psutil.Process(server.pid).memory_info().rss / 2**30
        for name, (seconds, received) in results.items():
            target = TARGETS["cached"] if "cached" in name else TARGETS["training"] if "Training" in name \
                else TARGETS["first"]
            print(f"{name:<58} {fmt(seconds, target)}   websocket {received / 2**20:6.2f} MB")
        training = next(v for k, v in results.items() if k.startswith("Training"))
        print(f"{'Training, websocket bytes':<58} {fmt(training[1] / 2**20, TARGETS['training_mb'], 'MB')}")
        for name, times in (("k change", k_times), ("F change", f_times)):
            p90 = float(np.percentile(times, 90))
            print(f"{name + ' (browser: key event -> heatmap redrawn)':<58} median {statistics.median(times):.3f} s, "
                  f"p90 {fmt(p90, TARGETS['change_p90'])}   each: {json.dumps([round(t, 3) for t in times])}")
        print(f"{'Streamlit server RSS after both pages':<58} {fmt(rss, TARGETS['rss_gb'], 'GB')}")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
