"""The one place where Numba decorator options live.

Every CPU kernel in numrnn is compiled through :func:`cpu_kernel` (drivers) or
:func:`cpu_function` (scalar cell math called from drivers), so that caching,
fast-math flags and the error model are chosen here and nowhere else.  The CUDA
backend compiles the very same scalar functions with :func:`cuda_device`, without
fast-math: numba-cuda would lower float32 ``tanh`` to ``tanh.approx.f32`` (relative
error about 2**-11), too coarse for equality with the CPU to 1e-4.

Fast-math: we allow the flags that only re-associate or contract arithmetic
(``contract``, ``reassoc``, ``nsz``, ``arcp``, ``afn``) but never ``nnan`` or
``ninf``, because the stable sigmoid/tanh rely on IEEE behaviour for huge inputs.
"""

from __future__ import annotations

import os
import types

import numba

#: Fast-math flags for every kernel (no ``nnan``/``ninf``: see module docstring).
FASTMATH = frozenset({"contract", "reassoc", "nsz", "arcp", "afn"})

#: ``cache=True`` keeps compiled code across processes (``NUMRNN_NO_CACHE=1`` disables it).
CACHE = os.environ.get("NUMRNN_NO_CACHE", "0") != "1"

CPU_OPTIONS = dict(cache=CACHE, fastmath=set(FASTMATH), error_model="numpy", nogil=True)

#: Options for ``numba.extending.overload`` implementations (cached with their caller).
OVERLOAD_OPTIONS = {key: value for key, value in CPU_OPTIONS.items() if key != "cache"}



_SCALAR_MODULE_PREFIX = "numrnn.cells"
_compiled_scalars: dict = {}
_scalar_overrides: dict = {}


def override_scalar(target, original, replacement):
    """Make :func:`compile_scalar` use ``replacement`` wherever cell code calls ``original``.

    For implementations of one function that are faster on one target, e.g. a
    vectorisable float32 ``tanh`` on the CPU.  ``replacement`` is used as is (a
    Numba-callable object), so register it before any cell function is compiled.
    """
    _scalar_overrides[(target, original)] = replacement


def with_globals(fn, namespace):
    """A copy of the plain function ``fn`` that reads its globals from ``namespace``
    (same code, name and docstring), for compiling one formula with some of the
    names it calls bound to another target's implementation."""
    clone = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    clone.__qualname__ = fn.__qualname__
    clone.__module__ = fn.__module__
    clone.__doc__ = fn.__doc__
    return clone


def compile_scalar(fn, target):
    """Compile a plain scalar function of :mod:`numrnn.cells` for ``target`` ("cpu" or "cuda").

    Cell functions call each other (``lstm.forward`` calls ``activations.sigmoid``) as
    ordinary Python.  To compile one, we rebuild it over a copy of its globals in which
    every other cell function it names is replaced by that function's compiled form
    for the same target, recursively.  The Python originals stay untouched, so the
    formulas exist once and serve the CPU, the GPU and plain-Python tests alike.
    """
    key = (target, fn)
    if key in _compiled_scalars:
        return _compiled_scalars[key]
    namespace = dict(fn.__globals__)
    for global_name in fn.__code__.co_names:
        value = namespace.get(global_name)
        if value is fn:  # co_names also lists attribute names, e.g. "tanh" in math.tanh
            continue
        if (target, value) in _scalar_overrides:
            namespace[global_name] = _scalar_overrides[(target, value)]
        elif isinstance(value, types.FunctionType) and value.__module__.startswith(_SCALAR_MODULE_PREFIX):
            namespace[global_name] = compile_scalar(value, target)
    clone = with_globals(fn, namespace)
    if target == "cpu":
        # inline at Numba-IR level: LLVM does not inline across Numba's per-function
        # modules, and an un-inlined call blocks vectorising the pointwise loops
        compiled = numba.njit(inline="always", **CPU_OPTIONS)(clone)
    elif target == "cuda":
        from numba import cuda

        compiled = cuda.jit(device=True)(clone)
    else:
        raise ValueError(f"target must be 'cpu' or 'cuda', got {target!r}")
    _compiled_scalars[key] = compiled
    return compiled


def cpu_function(fn=None, *, inline=False):
    """Compile a scalar helper for the CPU; LLVM inlines it into the drivers.

    Cell functions (:mod:`numrnn.cells`) go through :func:`compile_scalar`, so the
    cell functions they call are compiled too.  ``inline=True`` inlines at Numba-IR
    level instead, for helpers that take many arrays on a latency-bound path: a
    call that LLVM does not inline passes each array as a reference-counted
    structure (measured: 0.2 µs on a streaming step with ten arrays).
    """

    def wrap(f):
        if f.__module__.startswith(_SCALAR_MODULE_PREFIX):
            return compile_scalar(f, "cpu")
        if inline:
            return numba.njit(inline="always", **CPU_OPTIONS)(f)
        return numba.njit(**CPU_OPTIONS)(f)

    return wrap(fn) if fn is not None else wrap


def cpu_kernel(fn=None, *, parallel=False, signatures=None):
    """Compile a CPU driver kernel with the house options.

    With ``signatures`` (a list of argument-type tuples) the kernel is compiled
    for those now, and a call with other argument types raises ``TypeError``
    instead of compiling.
    """

    def wrap(f):
        if signatures is not None:
            return numba.njit(signatures, parallel=parallel, **CPU_OPTIONS)(f)
        return numba.njit(parallel=parallel, **CPU_OPTIONS)(f)

    return wrap(fn) if fn is not None else wrap


def cuda_device(fn):
    """Compile a scalar helper as a CUDA device function (imports numba.cuda lazily)."""
    if fn.__module__.startswith(_SCALAR_MODULE_PREFIX):
        return compile_scalar(fn, "cuda")
    from numba import cuda

    return cuda.jit(device=True)(fn)
