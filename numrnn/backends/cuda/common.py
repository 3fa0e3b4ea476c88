"""What every CUDA kernel module shares: the declaration of kernel parameters and the time index.

Each kernel's parameters are declared once, as a string ``"name:kind name:kind ..."``
read by :func:`params`.  From that one declaration come both

* the launch: :func:`arguments` puts keyword values in the declared order, so a
  launch names its arguments (``kernel[grid, threads](*arguments(PARAMS, x=..., ...))``);
* the PTX check: :func:`argtypes` turns the kinds into Numba types for
  ``numba.cuda.compile_ptx`` (see :func:`numrnn.backends.cuda.kernel_signatures`).

Kinds: ``C1`` ``C2`` ``C3`` (C-contiguous arrays of the float dtype), ``A1`` ``A2``
``A3`` (any layout: the strided views the backend passes), ``F64A3`` (float64, any
layout), ``L`` (int64 1-D, sequence lengths), ``N32`` (int32 1-D, a counter),
``I`` (int64 scalar), ``B`` (boolean) and ``F`` (a float scalar of the dtype).
"""

from __future__ import annotations

import collections

import numba
import numpy as np

from numrnn._jit import cuda_device
from numrnn.cells import sequence

#: one declared kernel parameter
Param = collections.namedtuple("Param", "name kind")

time_index = cuda_device(sequence.time_index)


def params(declaration):
    """Parse ``"name:kind ..."`` into a tuple of :class:`Param` (kinds checked here, once)."""
    out = []
    for item in declaration.split():
        name, kind = item.split(":")
        if kind not in _KINDS:
            raise ValueError(f"unknown parameter kind {kind!r} in {declaration!r}")
        out.append(Param(name, kind))
    return tuple(out)


def arguments(declared, **values):
    """The launch arguments in declared order; a missing or unexpected name raises ``TypeError``."""
    names = [p.name for p in declared]
    unexpected = set(values) - set(names)
    missing = [n for n in names if n not in values]
    if unexpected or missing:
        raise TypeError(f"kernel arguments: missing {missing}, unexpected {sorted(unexpected)}")
    return tuple(values[n] for n in names)


def argtypes(declared, dtype):
    """The Numba argument types of a declaration for float ``dtype`` (for ``compile_ptx``)."""
    return tuple(_KINDS[p.kind](numba.from_dtype(np.dtype(dtype))) for p in declared)


def _array(ndim, layout, of=None):
    from numba import types

    return lambda f: types.Array(of(types) if of else f, ndim, layout)


def _scalar(of):
    from numba import types

    return lambda f: of(types) if of else f


_KINDS = {
    "C1": _array(1, "C"),
    "C2": _array(2, "C"),
    "C3": _array(3, "C"),
    "A1": _array(1, "A"),
    "A2": _array(2, "A"),
    "A3": _array(3, "A"),
    "F64A3": _array(3, "A", lambda t: t.float64),
    "L": _array(1, "C", lambda t: t.int64),
    "N32": _array(1, "C", lambda t: t.int32),
    "I": _scalar(lambda t: t.int64),
    "B": _scalar(lambda t: t.boolean),
    "F": _scalar(None),
}
