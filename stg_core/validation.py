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


def check_integer(value: Any, field: str, low: int, high: int, *, owner: str = "") -> int:
    """``value`` as an ``int`` if it is an integer (not a bool, not a float) in ``[low, high]``;
    else a one-line ``ValueError`` starting with ``owner`` and naming ``field``."""
    if not is_integer(value) or not low <= value <= high:
        raise ValueError(f"{owner}{field}={show(value)} must be an integer from {low} to {high}")
    return int(value)


def check_number(value: Any, field: str, low: float, high: float, *, low_inclusive: bool = True,
                 owner: str = "") -> float:
    """``value`` as a ``float`` if it is a finite number in ``[low, high]`` (``(low, high]`` unless
    ``low_inclusive``); else a one-line ``ValueError`` naming ``field``."""
    above = is_number(value) and (value >= low if low_inclusive else value > low)
    if not above or not value <= high:
        bracket = "[" if low_inclusive else "("
        raise ValueError(f"{owner}{field}={show(value)} must be a finite number in {bracket}{low:g}, {high:g}]")
    return float(value)
