"""Type tests shared by the engine's parameter checks.

Parameters reach the engine from Python, from the command line and from JSON (the Methods
page, stored specs), where ``true`` is a bool that Python also counts as the integer 1 and
``NaN``/``Infinity`` are floats. Each check keeps its own message; these say only whether a
value is of the kind it needs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def is_integer(value: Any) -> bool:
    """Whether ``value`` is a Python or NumPy integer, and not a bool (``True`` is not 1 here)."""
    return isinstance(value, (int, np.integer)) and not is_bool(value)


def is_bool(value: Any) -> bool:
    """Whether ``value`` is a Python or NumPy bool (JSON ``true``/``false``), not an integer 0 or 1."""
    return isinstance(value, (bool, np.bool_))


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite real number (integer or float, Python or NumPy), not a bool."""
    if is_integer(value):  # every integer is finite (and math.isfinite overflows on huge ones)
        return True
    return isinstance(value, (float, np.floating)) and math.isfinite(value)


#: Largest seed accepted anywhere (training, data subsets, random and flipped tasks): the
#: trainer derives per-epoch seeds as ``seed * 1_000_003 + epoch``, which must fit torch's 64 bits.
MAX_SEED = 2**32 - 1


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters (messages quote user input)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int past Python's digit limit, a deeply nested list
        text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."



# ---- checks shared by the grouping methods and the clustering ------------------------------
# Each raises a one-line ValueError that names the parameter and its value.

def check_n_clusters(value: Any, n_tasks: int, name: str = "k") -> int:
    """``value`` as an int in ``2..n_tasks`` (a grouping needs two clusters, each with a task)."""
    if not is_integer(value):
        raise ValueError(f"{name}={value!r} must be an integer")
    if not 2 <= value <= n_tasks:
        raise ValueError(f"{name}={value} must be between 2 and the number of tasks ({n_tasks})")
    return int(value)


def check_fuzziness(value: Any) -> float:
    """``value`` as the float F > 1 of eq. 2: finite (F = inf gives uniform memberships, the limit
    that a large finite F already shows) and not a string or bool."""
    if not is_number(value) or not value > 1.0:
        raise ValueError(f"fuzziness F={value!r} must be a finite number greater than 1")
    return float(value)


def check_integer(name: str, value: Any, low: int, high: int | None = None, *, none_means: str | None = None,
                  owner: str = "") -> int | None:
    """``value`` as an int in ``low..high`` (no upper bound when ``high`` is None), or None when
    ``none_means`` says what None stands for; else a one-line ValueError starting with ``owner``."""
    if none_means is not None and value is None:
        return None
    if not is_integer(value) or value < low or (high is not None and value > high):
        kind = ("a positive integer" if low == 1 and high is None else
                f"an integer at least {low}" if high is None else f"an integer between {low} and {high}")
        raise ValueError(f"{owner}{name}={show(value)} must be {kind}" + _or_none(none_means))
    return int(value)


def check_positive(name: str, value: Any, *, zero_ok: bool = False, none_means: str | None = None) -> None:
    """``value`` a finite number above 0 (at least 0 with ``zero_ok``), or None when ``none_means``
    says what None stands for."""
    if none_means is not None and value is None:
        return
    if not is_number(value) or value < 0 or (value == 0 and not zero_ok):
        kind = "a non-negative" if zero_ok else "a positive"
        raise ValueError(f"{name}={value!r} must be {kind} finite number" + _or_none(none_means))


def _or_none(none_means: str | None) -> str:
    return "" if none_means is None else f" or None ({none_means})"


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """``value`` one of ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; use {', '.join(choices)}")


def check_number(field: str, value: Any, low: float, high: float, *, low_inclusive: bool = True,
                 owner: str = "") -> float:
    """``value`` as a ``float`` if it is a finite number in ``[low, high]`` (``(low, high]`` unless
    ``low_inclusive``); else a one-line ``ValueError`` naming ``field``."""
    above = is_number(value) and (value >= low if low_inclusive else value > low)
    if not above or not value <= high:
        bracket = "[" if low_inclusive else "("
        raise ValueError(f"{owner}{field}={show(value)} must be a finite number in {bracket}{low:g}, {high:g}]")
    return float(value)
