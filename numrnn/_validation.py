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


def check_state_dict(state_dict, expected, owner):
    """Validate a ``state_dict`` for ``load_state_dict``: ``{name: cast array}``, nothing stored.

    ``expected`` maps each name to ``(shape, dtype)``; entries are cast with
    :func:`as_float_array` (real and finite) and shape-checked.  ``owner`` finishes the
    message "state_dict does not match ..." (e.g. ``"LSTMCell"`` or ``"the layer"``).
    """
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict of arrays, got {type(state_dict).__name__}")
    missing = [name for name in expected if name not in state_dict]
    unexpected = [name for name in state_dict if name not in expected]
    if missing or unexpected:
        raise ValueError(f"state_dict does not match {owner}: missing {missing}, unexpected {unexpected}")
    loaded = {}
    for name, (shape, dtype) in expected.items():
        array = as_float_array(state_dict[name], f"state_dict[{name!r}]", dtype)
        check_shape(array, shape, f"state_dict[{name!r}]")
        loaded[name] = array
    return loaded


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


def check_int(value, name, low=None, allow_none=False):
    """An integer >= ``low`` (any integer when ``low`` is None; bools rejected); ``None`` passes when
    ``allow_none``."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        expected = "an int" if low is None else f"an int >= {low}"
        raise TypeError(f"{name} must be {expected}, got {value!r} of type {type(value).__name__}")
    if low is not None and value < low:
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


def check_choice(value, name, choices, ignore_case=True):
    """One of the lower-case strings ``choices``, matched case-insensitively (exactly when not
    ``ignore_case``); returns it lower-cased."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {list(choices)}, got {value!r} of type {type(value).__name__}")
    key = value.lower() if ignore_case else value
    if key not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return key


def all_finite_numpy(array):
    """Whether every value of ``array`` is finite (NumPy: nothing to compile)."""
    return bool(np.isfinite(array).all())


def check_params(params, shapes, dtype, owner, all_finite=all_finite_numpy, is_device=None):
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


def check_float(value, name, *, low=None, low_open=False, high=None, high_open=False):
    """A finite real number within optional bounds, as a float (bools rejected).

    Parameters
    ----------
    value : object
        The argument.
    name : str
        Its name, for the messages.
    low, high : float, optional
        Bounds; None means unbounded on that side.
    low_open, high_open : bool, default False
        Whether the bound itself is excluded.

    Returns
    -------
    float

    Raises
    ------
    TypeError
        For anything but a real number.
    ValueError
        For NaN, inf, an integer beyond float range or a value out of bounds, e.g.
        ``lr must be a finite number in (0.0, inf), got 0.0``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond float range
        raise ValueError(f"{name} must be a finite number, got an integer of {len(str(abs(value)))} digits") from None
    ok = math.isfinite(value)
    if low is not None:
        ok = ok and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low}, "
        hi = "inf)" if high is None else f"{high}" + (")" if high_open else "]")
        raise ValueError(f"{name} must be a finite number in {lo or '(-inf, '}{hi}, got {value!r}")
    return value


def check_count(value, name):
    """A count: an int >= 1 (bools rejected), as in ``m must be >= 1, got 0``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def as_real_array(value, name, dtype=None, check_finite=True):
    """``value`` as an array of floats, for losses and metrics.

    Parameters
    ----------
    value : array_like
        Real numbers (bool, integer or float).
    name : str
        The argument's name, for the messages (``pred must be a real numeric array ...``).
    dtype : dtype, optional
        The result's dtype; by default the input's float dtype, or float64 for bool and integer
        input.
    check_finite : bool, default True
        Raise ``ValueError`` for NaN or inf.

    Returns
    -------
    ndarray
        ``value`` itself where it already is an array of ``dtype``, else a converted copy.
    """
    if value is None:
        raise TypeError(f"{name} must be a real numeric array, got None")
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be a real numeric array: {exc}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    if dtype is None:
        dtype = array.dtype if array.dtype.kind == "f" else np.float64
    array = array.astype(dtype, copy=False)
    if check_finite:
        check_finite_array(array, name)
    return array


def check_finite_array(array, name):
    """Raise ``ValueError`` (``{name} contains NaN or inf``) unless every entry of ``array`` is finite."""
    if array.size and not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf")
    return array


def check_weights(value, name, vector):
    """Loss weights: a finite, non-negative, read-only float64 copy of ``value``; None stays None.

    With ``vector``, the weights must be 1-D and non-empty (one per class).
    """
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a real numeric array or None, got {type(value).__name__}")
    array = np.array(as_real_array(value, name), dtype=np.float64)  # a copy: the caller's later changes do not reach us
    if vector and (array.ndim != 1 or array.size == 0):
        raise ValueError(f"{name} must be a 1-D array with one entry per class, got shape {array.shape}")
    if array.size and array.min() < 0:
        raise ValueError(f"{name} must be >= 0, got a minimum of {array.min()!r}")
    array.setflags(write=False)
    return array


_MODULE_INTERFACE = ("params", "grads", "zero_grad", "backward", "state_dict", "load_state_dict")


def check_module(model, name="model"):
    """Raise ``TypeError`` unless ``model`` is callable and has the module interface of :mod:`numrnn.nn`."""
    for attr in _MODULE_INTERFACE:
        if not hasattr(model, attr):
            raise TypeError(f"{name} must have the module interface (missing {attr!r}), got {type(model).__name__}")
    if not callable(model):
        raise TypeError(f"{name} must be callable, got {type(model).__name__}")
    return model


def check_host_arrays(arrays, what):
    """Raise ``TypeError`` unless every value of the dict ``arrays`` is a NumPy array.

    ``what`` names the caller (``flatten needs NumPy arrays, but 'w' is a DeviceNDArray ...``):
    helpers that read or perturb parameters element by element run on the host.
    """
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray):
            raise TypeError(
                f"{what} needs NumPy arrays, but {key!r} is a {type(value).__name__} (GPU parameters?): "
                "set model.device_params = False first"
            )
    return arrays


def check_same_keys(params, other, label):
    """Raise ``ValueError`` unless the dict ``other`` (called ``label``) has the keys of ``params``."""
    if set(params) != set(other):
        missing = sorted(set(params) - set(other))
        extra = sorted(set(other) - set(params))
        raise ValueError(f"{label} must have the same keys as params; missing {missing}, unexpected {extra}")


def check_host_param(key, param):
    """Raise unless ``params[key]`` is a writeable float ndarray (an optimiser updates it in place)."""
    if not isinstance(param, np.ndarray) or param.dtype.kind != "f":
        raise TypeError(f"params[{key!r}] must be a float ndarray, got {type(param).__name__}"
                        + (f" of dtype {param.dtype}" if isinstance(param, np.ndarray) else ""))
    if not param.flags.writeable:
        raise ValueError(f"params[{key!r}] must be writeable (it is updated in place)")


def check_params_grads(params, grads, is_device, check_device_pair):
    """Validate an optimiser's ``params`` and ``grads``: dicts with the same keys, of float arrays of
    one shape, finite gradients.

    Parameters
    ----------
    params, grads : dict of str -> ndarray or device array
        Per key, a parameter and its gradient are both NumPy arrays or both device arrays.
    is_device : callable
        ``is_device(array) -> bool``.
    check_device_pair : callable
        ``check_device_pair(key, param, grad)`` validates a device pair (on the device) and
        returns the gradient as a 1-D contiguous device array of the parameter's dtype.

    Returns
    -------
    dict of str -> device array or None
        What ``check_device_pair`` returned for each device key; None for host keys.
    """
    for name, d in (("params", params), ("grads", grads)):
        if not isinstance(d, dict):
            raise TypeError(f"{name} must be a dict of name -> ndarray, got {type(d).__name__}")
    check_same_keys(params, grads, "grads")
    device = {}
    for key, p in params.items():
        g = grads[key]
        p_on_device, g_on_device = is_device(p), is_device(g)
        if p_on_device != g_on_device:
            raise TypeError(
                f"params[{key!r}] and grads[{key!r}] must both be NumPy arrays or both device arrays, "
                f"got {'a device array' if p_on_device else type(p).__name__} and "
                f"{'a device array' if g_on_device else type(g).__name__}"
            )
        if p_on_device:
            device[key] = check_device_pair(key, p, g)
            continue
        device[key] = None
        check_host_param(key, p)
        if not isinstance(g, np.ndarray) or g.dtype.kind not in "fiu":
            raise TypeError(f"grads[{key!r}] must be a real ndarray, got {type(g).__name__}")
        if g.shape != p.shape:
            raise ValueError(f"grads[{key!r}] must have shape {p.shape} like params, got {g.shape}")
        if not np.all(np.isfinite(g)):
            raise ValueError(f"grads[{key!r}] contains NaN or inf")
    return device


# ---------------------------------------------------------------------------------- forecasting


def is_real_number(value):
    """Whether ``value`` is a Python or NumPy real number (bools excluded)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def as_series(value, name):
    """A finite float64 series of shape (n, k), and whether ``value`` was 1-D.

    Parameters
    ----------
    value : array_like, shape (n,) or (n, k)
        Real numbers, at least one.
    name : str
        The argument's name, for the messages.

    Returns
    -------
    series : ndarray, shape (n, k)
    one_d : bool
    """
    array = as_float_array(value, name, np.float64)
    if array.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (n,) or 2-D (n, k), got {array.ndim}-D with shape {array.shape}")
    if array.shape[0] == 0 or array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    return (array[:, None] if array.ndim == 1 else array), array.ndim == 1


def check_covariates(value, n, name="exog"):
    """Covariates aligned with a series of ``n`` values as a float64 array of shape (n, m).

    Parameters
    ----------
    value : array_like, shape (n,) or (n, m), or None
        None gives an array of shape (n, 0).
    n : int
        The number of rows expected.
    name : str, default "exog"
    """
    if value is None:
        return np.zeros((n, 0))
    array = as_float_array(value, name, np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} must be 1-D (n,) or 2-D (n, m), got {array.ndim}-D with shape {array.shape}")
    if array.shape[0] != n:
        raise ValueError(f"{name} must have {n} rows (one per value of y), got {array.shape[0]}")
    return array


def check_levels(level, name="level"):
    """Sorted unique prediction-interval levels (floats in (0, 100)); ``None`` gives ``[]``."""
    if level is None:
        return []
    if isinstance(level, numbers.Real) and not isinstance(level, bool):
        level = [level]
    if isinstance(level, (str, bytes)) or not hasattr(level, "__iter__"):
        raise TypeError(f"{name} must be a number or a list of numbers in (0, 100), got {level!r}")
    out = []
    for v in level:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise TypeError(f"{name} must hold numbers in (0, 100), got {v!r} of type {type(v).__name__}")
        v = float(v)
        if not (0.0 < v < 100.0):
            raise ValueError(f"{name} must lie strictly between 0 and 100, got {v:g}")
        out.append(v)
    return sorted(set(out))


def expect_array(arrays, name, shape, dtype):
    """``arrays[name]``, which must exist with this ``shape`` and ``dtype`` (a loaded file's entry
    checked against what its config implies); ``ValueError`` naming the entry otherwise."""
    arr = arrays.get(name)
    if arr is None:
        raise ValueError(f"array {name!r} is missing")
    if arr.shape != shape or arr.dtype != dtype:
        raise ValueError(f"array {name!r} is {arr.dtype}{arr.shape}, its config implies {dtype}{shape}")
    return arr
