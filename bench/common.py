"""What the scripts in ``bench/`` share: the machine they ran on (its CPU, cores and load: the
figures they print mean little without it), the PASS/FAIL verdict of a figure against its
target, and timing helpers."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


# ---------------------------------------------------------------------------------- host

def cpu_model() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (its affinity), else every logical CPU."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, ``"0.52, 0.31, 0.20"``; ``"n/a"`` where unknown."""
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


# ------------------------------------------------------------------------------- verdict

def verdict(ok: bool) -> str:
    """``"PASS"`` when the figure meets its target, else ``"FAIL"``."""
    return "PASS" if ok else "FAIL"


# -------------------------------------------------------------------------------- timing

def timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Call ``fn`` ``repeats`` times: the seconds of each call and the last call's result."""
    out, times = None, []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def interleaved(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Call each timing function once per round, the order rotating from round to round (so
    every variant runs early and late in a round equally often); collect the seconds.
    Short rounds + medians keep bursts of load from other processes out of the comparison."""
    names = list(fns)
    out: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in order:
            out[k].append(fns[k]())
    return out


def paired(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Median, min and max of the per-round ratios a_i / b_i."""
    r = sorted(x / y for x, y in zip(a, b))
    return statistics.median(r), r[0], r[-1]


def fmt_ms(seconds: float) -> str:
    """``0.0123`` -> ``"12.3 ms"``."""
    return f"{seconds * 1e3:.1f} ms"
