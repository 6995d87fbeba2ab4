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
    return isinstance(value, (int, float, np.integer, np.floating)) and not is_bool(value) and math.isfinite(value)
