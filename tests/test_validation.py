import math

import numpy as np
import pytest

from stg_core.validation import is_bool, is_integer, is_number


@pytest.mark.parametrize("value", [0, -3, 7, np.int64(2), np.int8(-1)])
def test_integers(value):
    assert is_integer(value)


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 2.0, "3", None, [1], np.float32(1)])
def test_not_integers(value):
    assert not is_integer(value)


@pytest.mark.parametrize("value", [True, False, np.bool_(True), np.bool_(False)])
def test_bools(value):
    assert is_bool(value)


@pytest.mark.parametrize("value", [0, 1, np.int64(1), 1.0, "true", None, [True]])
def test_not_bools(value):
    assert not is_bool(value)


@pytest.mark.parametrize("value", [0, 1, -2.5, 1e-9, np.float32(0.5), np.int64(4), np.float64(3)])
def test_numbers(value):
    assert is_number(value)


@pytest.mark.parametrize("value", [True, np.bool_(False), math.nan, math.inf, -math.inf, np.float64("nan"),
                                   "1.0", None, [1.0], complex(1, 0)])
def test_not_numbers(value):
    assert not is_number(value)
