#!/usr/bin/env python
"""Clustering page latency: server-side time from a k or F slider change to the new figures.

    python bench/slider_latency.py            # 100 tasks x 50,000 samples x 5 epochs (~1 min on 2 cores)
    python bench/slider_latency.py --quick    # 100 tasks x 5,000 samples x 3 epochs, fewer changes (~20 s)

Writes a synthetic run into a temporary store through the recorder and store code training uses
(``stg_core.synthetic.write_synthetic_run``): the CIFAR-100 G3 preset (100 one-vs-rest tasks)
with CIFAR-100's 20 superclasses planted, so the alignment scores and the per-group membership
bars are drawn too. Then, after one page load that computes and caches the exact
reduction, two measurements per slider change (k and F alternating over ~10 values each):

1. the page itself, through ``streamlit.testing.v1.AppTest``: ``slider.set_value(v).run()``
   reruns the entry script (sidebar, active run) and the Clustering page — re-clustering and
   the open tab: the membership heatmap and the task map on the Memberships tab, the alignment
   scores, contingency and group bars on the Known groups tab — and serialises every element,
   once for each of these two tabs. Target:
   p90 <= 300 ms (median, p90, max and each change printed, with the time Python's garbage
   collector took: an occasional full collection is the slowest rerun).
2. the pure compute path, outside Streamlit: ``cluster_tasks`` + ``alignment_scores`` (not
   cached here) + the three figure builders + ``json.dumps`` of their options — the part of (1) that grows
   with the number of tasks, timed step by step.

Nothing here asserts. The machine may be shared: compare figures within one run only.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
import streamlit  # noqa: E402

from app.state import APP_SCRIPT  # noqa: E402
from stg_core.store import ArtifactStore  # noqa: E402
from stg_core.synthetic import write_synthetic_run  # noqa: E402
from common import cpu_model, load_average, usable_cores, verdict  # noqa: E402
from tests.echarts_options import chart_keys, chart_option, heatmap_matrix, open_tab  # noqa: E402

TARGET_S = 0.300

def conditions(n_tasks: int, n_samples: int, n_epochs: int) -> None:
    import torch

    print("== conditions")
    print(f"cpu: {cpu_model()}; usable cores={usable_cores()}; load average {load_average()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
          f"scikit-learn {sklearn.__version__}, streamlit {streamlit.__version__}")
    print(f"run: {n_tasks} tasks x {n_samples:,} samples x {n_epochs} epochs of p_true (float16); task vectors "
          f"{n_tasks} x {n_epochs * n_samples * 2:,}; CIFAR-100 G3 tasks with the 20 superclasses as known groups")
    print()


class _GcTimer:
    """``gc.callbacks`` entry: time spent in collections (a full one walks every live object:
    the occasional slow rerun)."""

    def __init__(self) -> None:
        self.total, self.full, self.longest_full, self._start = 0.0, 0, 0.0, 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
            return
        dt = time.perf_counter() - self._start
        self.total += dt
        if info["generation"] == 2:
            self.full += 1
            self.longest_full = max(self.longest_full, dt)


def summary(times: list[float]) -> str:
    ms = sorted(t * 1e3 for t in times)
    p90 = float(np.percentile(ms, 90))
    return f"median {statistics.median(ms):.0f} ms, p90 {p90:.0f} ms, min {ms[0]:.0f}, max {ms[-1]:.0f} (n={len(ms)})"


def p90_verdict(times: list[float]) -> str:
    """PASS when the 90th percentile of ``times`` meets the target."""
    return verdict(float(np.percentile(times, 90)) <= TARGET_S)


#: The Clustering tabs measured: the chart that shows a change to k clusters was drawn, and its
#: number of clusters (the membership heatmap has a column per cluster, the group bars a series).
VIEWS = {"Memberships": ("heatmap", lambda option: heatmap_matrix(option).shape[1]),
         "Known groups": ("group_bars", lambda option: len(option["series"]))}


def bench_page(store_root: Path, view: str, k_values: list[int], f_values: list[float]) -> None:
    from streamlit.testing.v1 import AppTest

    # AppTest runs the script without a server: silence the "missing ScriptRunContext" notice
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(logging.ERROR)
    os.environ["STG_STORE"] = str(store_root)
    t = time.perf_counter()
    at = AppTest.from_file(APP_SCRIPT, default_timeout=600).run()
    at = open_tab(at.switch_page("../pages/clustering.py").run(), view)
    first = time.perf_counter() - t
    if at.exception or at.error:
        raise SystemExit(f"the page failed: {[e.value for e in at.exception] or [e.value for e in at.error]}")
    print(f"== 1. the page's {view} tab (AppTest), after a first load of {first:.1f} s")
    print(f"   drawn: figures {', '.join(chart_keys(at))}; {len(at.metric)} alignment metrics")
    at.slider(key="k").set_value(k_values[0]).run()  # one untimed change: first re-clustering, imports
    k_times, f_times = [], []
    collections = _GcTimer()
    gc.callbacks.append(collections)
    try:
        for k, f in zip(k_values[1:], f_values):
            t = time.perf_counter()
            at.slider(key="k").set_value(k).run()
            k_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            at.slider(key="fuzziness").set_value(f).run()
            f_times.append(time.perf_counter() - t)
            chart, n_clusters = VIEWS[view]
            if at.exception or n_clusters(chart_option(at, chart)) != k:
                raise SystemExit(f"the page failed at k={k}, F={f}: {[e.value for e in at.exception]}")
    finally:
        gc.callbacks.remove(collections)
    every = k_times + f_times
    print("   each change (ms): " + ", ".join(f"k={k} {a * 1e3:.0f} / F={f:g} {b * 1e3:.0f}"
                                         for k, f, a, b in zip(k_values[1:], f_values, k_times, f_times)))
    print(f"   k changes ({', '.join(map(str, k_values[1:]))}): {summary(k_times)}")
    print(f"   F changes ({', '.join(f'{v:g}' for v in f_values)}): {summary(f_times)}")
    print(f"   all changes: {summary(every)}  target p90 <= {TARGET_S * 1e3:.0f} ms: {p90_verdict(every)}")
    print(f"   Python's garbage collector during these changes: {collections.full} full (generation 2) "
          f"collection(s), longest {collections.longest_full * 1e3:.0f} ms; "
          f"all collections {collections.total * 1e3:.0f} ms")
    print()


def bench_compute(store: ArtifactStore, run_id: str, k_values: list[int], f_values: list[float]) -> None:
    from app.cluster_charts import group_membership_bars, membership_heatmap, task_map
    from stg_core.clustering import alignment_scores, cluster_tasks, task_groups
    from stg_core.run_vectors import load_reduced_task_vectors

    spec = store.load_spec(run_id)
    names = list(spec.task_names)
    reduced, n_features = load_reduced_task_vectors(store, run_id, None)  # cached on disk by the page's first load
    groups = task_groups(names, spec.tasks, store.read_dataset_info(run_id)["super_groups"])
    largest = max(set(groups.values()))
    steps: dict[str, list[float]] = {s: [] for s in ("cluster_tasks", "alignment_scores", "membership_heatmap",
                                                     "task_map", "group_membership_bars", "json (3 figures)")}
    totals = []
    settings = [(k, 2.0) for k in k_values] + [(k_values[-1], f) for f in f_values]
    for i, (k, f) in enumerate(settings):
        t0 = time.perf_counter()
        result = cluster_tasks(reduced, k, f, random_state=0, n_features=n_features)
        t1 = time.perf_counter()
        alignment_scores(result.labels[[names.index(t) for t in groups]], list(groups.values()))
        t2 = time.perf_counter()
        figs = [membership_heatmap(result.memberships, names)]
        t3 = time.perf_counter()
        figs.append(task_map(reduced, names, result.memberships, result.labels, centers=result.cluster_centers))
        t4 = time.perf_counter()
        figs.append(group_membership_bars(result.memberships, names, groups, largest))
        t5 = time.perf_counter()
        for option in figs:
            json.dumps(option)
        t6 = time.perf_counter()
        if i == 0:
            continue  # warm-up
        for name, dt in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
            steps[name].append(dt)
        totals.append(t6 - t0)
    print(f"== 2. pure compute path ({len(totals)} settings: k over {k_values}, "
          f"then F over {f_values} at k={k_values[-1]})")
    for name, times in steps.items():
        print(f"   {name:<24} median {statistics.median(times) * 1e3:6.1f} ms")
    print(f"   total: {summary(totals)}  target p90 <= {TARGET_S * 1e3:.0f} ms: {p90_verdict(totals)}")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5,000 samples, 3 epochs, 5 changes of k and F")
    ap.add_argument("--samples", type=int, help="number of samples N (default 50,000; --quick 5,000)")
    ap.add_argument("--epochs", type=int, help="recorded epochs (default 5; --quick 3)")
    args = ap.parse_args()
    n_samples = args.samples or (5_000 if args.quick else 50_000)
    n_epochs = args.epochs or (3 if args.quick else 5)
    k_values = [3, 5, 8, 12, 20, 15, 10, 6, 4, 2, 7] if not args.quick else [3, 5, 12, 20, 8, 4]
    f_values = [1.5, 3.0, 1.1, 2.5, 4.0, 1.3, 2.0, 5.0, 1.8, 3.5] if not args.quick else [1.5, 3.0, 1.1, 2.5, 4.0]
    conditions(100, n_samples, n_epochs)

    root = Path(tempfile.mkdtemp(prefix="stg_slider_bench_"))
    try:
        store = ArtifactStore(root)
        t = time.perf_counter()
        run_id = write_synthetic_run(store, "cifar100-g3", n_samples=n_samples, n_epochs=n_epochs)
        print(f"synthetic run {run_id} written in {time.perf_counter() - t:.1f} s\n")
        for view in VIEWS:
            bench_page(root, view, k_values, f_values)
        bench_compute(store, run_id, k_values, f_values)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if hasattr(os, "getloadavg"):
        print(f"load average at the end: {tuple(round(v, 2) for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
