"""Argument checks shared by the modules of :mod:`numrnn.nn`."""

from __future__ import annotations

import math
import numbers

import numpy as np

from numrnn import _validation as check

def _as_float(value, name, dtype):
    """:func:`numrnn._validation.as_float_array` that keeps a 0-d input 0-d (it returns 1-d)."""
    arr = check.as_float_array(value, name, dtype)
    return arr.reshape(()) if np.ndim(value) == 0 else arr


def _float_input(x, name):
    """``x`` as a C-contiguous float array: float32 and float64 keep their dtype, anything else
    (integers, bools, lists of numbers) becomes float64; NaN/inf and non-real data are refused."""
    dtype = getattr(x, "dtype", None)
    if not (isinstance(dtype, np.dtype) and dtype in check.FLOAT_DTYPES):
        dtype = np.float64
    return _as_float(x, name, dtype)


def _fresh(arr, x):
    """``arr`` (the checked ``x``), copied if it is the caller's array or a view of one."""
    return arr.copy() if arr is x or not arr.flags.owndata else arr


def _check_real(value, name, ok, wanted):
    """A real number (bools refused) for which ``ok(float(value))`` holds; ``wanted`` says which."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {wanted}, got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not (math.isfinite(value) and ok(value)):
        raise ValueError(f"{name} must be {wanted}, got {value}")
    return value
