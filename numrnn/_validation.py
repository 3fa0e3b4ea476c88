"""Checks at the API border: every public entry point validates here, kernels trust.

All functions raise ``TypeError`` (wrong kind of object or dtype) or
``ValueError`` (wrong shape or value) with a message that names the argument,
what was expected and what was given.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype, name="dtype"):
    """Return ``np.dtype(dtype)``, which must be float32 or float64."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from exc
    if resolved not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {resolved}")
    return resolved


def check_positive_int(value, name):
    """An integer >= 1 (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= 1, got {value!r} of type {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value}")
    return int(value)


def check_bool(value, name):
    """A Python or NumPy bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r} of type {type(value).__name__}")
    return bool(value)


def as_float_array(value, name, dtype, allow_nonfinite=False):
    """Convert ``value`` (array-like of real numbers) to a C-contiguous array of ``dtype``.

    Rejects complex, string and object data and masked arrays (whose mask would be
    silently dropped) with ``TypeError``, and NaN/inf with ``ValueError``.  Integer,
    bool and other float dtypes are cast.
    """
    if value is None:
        raise TypeError(f"{name} must be an array of real numbers, got None")
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a masked array, and numrnn would ignore its mask: pass np.ma.filled({name}, value) "
            f"(and, for padded sequences, their lengths)"
        )
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be converted to an array: {exc}") from exc
    kind = array.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must hold real numbers, got complex dtype {array.dtype}")
    if kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=dtype)
    if not allow_nonfinite and not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf")
    return array


def check_shape(array, expected, name):
    """Check ``array.shape == expected`` (``None`` entries match anything)."""
    ok = array.ndim == len(expected) and all(e is None or e == a for e, a in zip(expected, array.shape))
    if not ok:
        shown = tuple("*" if e is None else e for e in expected)
        raise ValueError(f"{name} must have shape {shown}, got {array.shape}")
    return array


def check_lengths(lengths, batch, steps, name="lengths"):
    """Sequence lengths: ``batch`` integers in ``[1, steps]``; ``None`` means all ``steps``."""
    if lengths is None:
        return np.full(batch, steps, dtype=np.int64)
    array = np.asarray(lengths)
    if array.dtype.kind == "f" and array.size and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        array = array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got dtype {array.dtype}")
    if array.ndim != 1 or array.shape[0] != batch:
        raise ValueError(f"{name} must have shape ({batch},) (one length per sequence), got {array.shape}")
    if array.size and (array.min() < 1 or array.max() > steps):
        raise ValueError(f"{name} must lie in [1, {steps}] (the sequence length), got min {array.min()}, max {array.max()}")
    return np.ascontiguousarray(array, dtype=np.int64)


def check_seed(seed, name="seed"):
    """The one seed rule: an integer in ``[0, 2**63)``, or ``None`` to draw one.

    Returns the seed as a Python ``int``.  ``None`` draws fresh entropy and returns
    the seed drawn, so that the caller can record it (a saved config then
    reproduces the same initial weights).

    Raises ``TypeError`` for anything but an integer or ``None`` (bools included)
    and ``ValueError`` for a negative or too large integer, naming ``name``.
    """
    if seed is None:
        return int(np.random.SeedSequence().entropy % (2**63))
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an integer in [0, 2**63) or None, got {seed!r} of type {type(seed).__name__}")
    if not 0 <= int(seed) < 2**63:
        raise ValueError(f"{name} must be an integer in [0, 2**63) or None, got {seed}")
    return int(seed)


def is_finite_number(value):
    """``math.isfinite`` of a real number; False for an int too large for a float (no OverflowError)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_int(value, name, low, allow_none=False):
    """An integer >= ``low`` (bools rejected); ``None`` passes when ``allow_none``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= {low}, got {value!r} of type {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}")
    return int(value)


def check_positive_float(value, name, allow_none=False):
    """A finite real number > 0, as a float (bools rejected); ``None`` passes when ``allow_none``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a positive float, got {value!r} of type {type(value).__name__}")
    if not (is_finite_number(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite float, got {value}")
    return float(value)


def check_choice(value, name, choices):
    """One of the lower-case strings ``choices``, matched case-insensitively; returns it lower-cased."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {list(choices)}, got {value!r} of type {type(value).__name__}")
    if value.lower() not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value.lower()


def _all_finite_numpy(array):
    return bool(np.isfinite(array).all())


def check_params(params, shapes, dtype, owner, all_finite=_all_finite_numpy, is_device=None):
    """Raise unless ``params`` holds, for each ``name: shape`` of ``shapes``, what the kernels take.

    Each entry must be present, a NumPy array of ``dtype`` and its shape, C-contiguous and
    finite (``all_finite(array)``, e.g. a compiled scan).  Where ``is_device(value)`` is true
    (device arrays), only the dtype and shape are checked.  Errors name the entry, e.g.
    ``params['weight_hh_l0']``, and ``owner`` ("layer", "cell") in the expected dtype.
    The fast test, one chain of comparisons per entry, runs on every call that reads weights.
    """
    if type(params) is not dict:
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    for name, shape in shapes.items():
        value = params.get(name)
        if (
            type(value) is np.ndarray
            and value.dtype is dtype
            and value.shape == shape
            and value.flags.c_contiguous
            and all_finite(value)
        ):
            continue
        label = f"params[{name!r}]"
        if value is None:
            raise ValueError(f"params has no entry {name!r}: the {owner} needs {sorted(shapes)}")
        on_host = type(value) is np.ndarray
        if not on_host and not (is_device is not None and is_device(value)):
            raise TypeError(f"{label} must be a NumPy array, got {type(value).__name__}")
        if value.dtype != dtype:
            raise TypeError(f"{label} must have the {owner}'s dtype {dtype}, got {value.dtype}")
        if tuple(value.shape) != shape:
            raise ValueError(f"{label} must have shape {shape}, got {tuple(value.shape)}")
        if on_host:
            if not value.flags.c_contiguous:
                raise ValueError(
                    f"{label} must be C-contiguous, got a strided array (pass np.ascontiguousarray(...), "
                    f"or assign in place: params[name][...] = new)"
                )
            if not np.isfinite(value).all():
                raise ValueError(f"{label} contains NaN or inf (a diverged update?)")
