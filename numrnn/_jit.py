"""The one place where Numba decorator options live.

Every CPU kernel in numrnn is compiled through :func:`cpu_kernel` (drivers) or
:func:`cpu_function` (scalar cell math called from drivers), so that caching,
fast-math flags and the error model are chosen here and nowhere else.  The CUDA
backend compiles the very same scalar functions with :func:`cuda_device`, without
fast-math: numba-cuda would lower float32 ``tanh`` to ``tanh.approx.f32`` (relative
error about 2**-11), too coarse for equality with the CPU to 1e-4.

First use: a kernel is compiled the first time it meets a new dtype (tens of seconds
per cell family and dtype), then loaded from Numba's on-disk cache.  A listener on
Numba's ``"numba:compile"`` event, which fires for real compilations only (not for
cache loads, not for calls), logs one line per cell family and dtype through the
``"numrnn"`` logger (:data:`COMPILE_LOG_LEVEL`), and shows "compiling" on the
progress bars handed to :class:`compile_notice`.  It costs nothing on calls that
find their kernel compiled: dispatchers are called directly, nothing wraps them.

Fast-math: we allow the flags that only re-associate or contract arithmetic
(``contract``, ``reassoc``, ``arcp``, ``afn``) but never ``nnan`` or ``ninf``, because
the stable sigmoid/tanh and the NaN checks rely on IEEE behaviour, and not ``nsz``:
with ``reassoc`` and ``nsz`` together, the GRU's backward loaded from Numba's cache
differed in the last bit from the same kernel compiled in the running process
(1e-16 relative in float64), so a first run on an empty cache and later runs gave
different bits.  Without ``nsz`` the two agree, at the same speed (training steps and
``step()`` measured side by side, within noise).
"""

from __future__ import annotations

import hashlib
import logging
import os
import types

import numba
from numba.core import caching as _numba_caching
from numba.core import event as _numba_event

#: Fast-math flags for every kernel (no ``nnan``/``ninf``: see module docstring).
FASTMATH = frozenset({"contract", "reassoc", "arcp", "afn"})

#: ``cache=True`` keeps compiled code across processes (``NUMRNN_NO_CACHE=1`` disables it).
CACHE = os.environ.get("NUMRNN_NO_CACHE", "0") != "1"

CPU_OPTIONS = dict(cache=CACHE, fastmath=set(FASTMATH), error_model="numpy", nogil=True)

# ------------------------------------------------------------------ cache freshness

_PACKAGE = os.path.dirname(os.path.abspath(__file__))

#: The sources numrnn's CPU kernels are compiled from (relative to the package), as
#: ``(folder, file name or None for every .py in it)``, less :data:`NOT_KERNEL_SOURCES`.
KERNEL_SOURCES = (("", "_jit.py"), ("cells", None), (os.path.join("backends", "cpu"), None), ("nn", "cell_kernels.py"))

#: Files of those folders that compile nothing (an edit to them keeps the cache).
NOT_KERNEL_SOURCES = frozenset(os.path.join("backends", "cpu", name) for name in ("first_use.py", "numpy_kernels.py"))

_sources_digest = None


def kernel_sources():
    """The paths of the files in :data:`KERNEL_SOURCES`, sorted."""
    paths = []
    for folder, name in KERNEL_SOURCES:
        directory = os.path.join(_PACKAGE, folder)
        names = [name] if name is not None else [n for n in os.listdir(directory) if n.endswith(".py")]
        paths += [os.path.join(directory, n) for n in names if os.path.join(folder, n) not in NOT_KERNEL_SOURCES]
    return sorted(paths)


def kernel_sources_digest() -> str:
    """SHA-256 of the contents of every kernel source file (computed once per process)."""
    global _sources_digest
    if _sources_digest is None:
        digest = hashlib.sha256()
        for path in kernel_sources():
            with open(path, "rb") as handle:
                digest.update(os.path.relpath(path, _PACKAGE).encode() + b"\0" + handle.read() + b"\0")
        _sources_digest = digest.hexdigest()
    return _sources_digest


class KernelSourcesLocator(_numba_caching._CacheLocator):
    """Numba's cache locator for numrnn's kernels, whose entries are stale when *any*
    kernel source changed.

    Numba keys a cached kernel on the source file that defines it, not on the files of
    the functions it calls and compiles in; an edit to a cell formula in
    ``cells/lstm.py`` would otherwise leave the cached drivers of ``backends/cpu/lstm.py``
    running the old formula (measured: a ``step()`` kernel cached before an edit to the
    LSTM's step code it inlines ran 20% slower than the same source compiled afresh).
    This locator is the locator Numba would pick (same directory, same names), with
    :func:`kernel_sources_digest` added to the source stamp.
    """

    def __init__(self, inner):
        self._inner = inner

    def ensure_cache_path(self):
        return self._inner.ensure_cache_path()

    def get_cache_path(self):
        return self._inner.get_cache_path()

    def get_source_stamp(self):
        return (self._inner.get_source_stamp(), kernel_sources_digest())

    def get_disambiguator(self):
        return self._inner.get_disambiguator()

    @classmethod
    def from_function(cls, py_func, py_file):
        if os.path.abspath(py_file) not in _kernel_source_set():
            return None
        for other in _numba_caching.CacheImpl._locator_classes:
            if other is not cls:
                inner = other.from_function(py_func, py_file)
                if inner is not None:
                    return cls(inner)
        return None


_source_set = None


def _kernel_source_set():
    global _source_set
    if _source_set is None:
        _source_set = frozenset(kernel_sources())
    return _source_set


if KernelSourcesLocator not in _numba_caching.CacheImpl._locator_classes:
    _numba_caching.CacheImpl._locator_classes.insert(0, KernelSourcesLocator)

#: Options for ``numba.extending.overload`` implementations (cached with their caller).
OVERLOAD_OPTIONS = {key: value for key, value in CPU_OPTIONS.items() if key != "cache"}

# ------------------------------------------------------------------ first-use compile notice

#: Level of the one line per cell family and dtype logged through the ``"numrnn"``
#: logger when a kernel compiles (WARNING: Python prints it to stderr even where
#: logging is not configured; ``logging.getLogger("numrnn").setLevel(logging.ERROR)``
#: silences it).
COMPILE_LOG_LEVEL = logging.WARNING

logger = logging.getLogger("numrnn")

#: Kernel name prefix -> cell family named in the compile notice.
_FAMILIES = (("lstm_", "LSTM"), ("gru_", "GRU"), ("rnn_", "RNN"), ("checked_step", "step()"), ("checked_stack_step", "step()"))


#: Modules of the products every cell family calls (the input projection, the weight
#: gradients): no notice of their own, the cell's kernels compiled with them give it.
_SHARED_MODULES = frozenset({"numrnn.backends.cpu.linalg"})


def _kernel_label(dispatcher, args):
    """``"LSTM float32"`` for a numrnn CPU kernel compiled for ``args``, None for
    anything else (user code, CUDA kernels)."""
    func = getattr(dispatcher, "py_func", None)
    module = getattr(func, "__module__", None) or ""
    if not module.startswith("numrnn.") or "cuda" in module or module in _SHARED_MODULES:
        return None
    name = func.__name__
    family = next((label for prefix, label in _FAMILIES if name.startswith(prefix)), name)
    dtype = next((str(arg.dtype) for arg in args if isinstance(arg, numba.types.Array)), None)
    return family if dtype is None else f"{family} {dtype}"


class _CompileWatch(_numba_event.Listener):
    """Listener of ``"numba:compile"``: Numba fires it around the compilation of one
    specialisation, after the overloads and the on-disk cache were looked up, so it
    never runs on a warm call or a cache load.  Compilations of numrnn kernels that no
    other compilation encloses (the drivers; not the functions they call) log their
    label once per process and are passed to the active observers."""

    def __init__(self):
        self.depth = 0  # Numba compiles under one global lock: nesting is per thread of the lock holder
        self.logged = set()
        self.observers = []
        self.muted = 0  # > 0: no log lines (a progress bar says it), labels still count as logged

    def on_start(self, event):
        self.depth += 1
        if self.depth != 1:
            return
        try:  # an exception here would fail the compilation
            data = event.data or {}
            label = _kernel_label(data.get("dispatcher"), data.get("args") or ())
            if label is None:
                return
            if label not in self.logged:
                self.logged.add(label)
                if not self.muted:  # (warmup() mutes: its bar says what compiles)
                    self._log(label, getattr(getattr(data["dispatcher"], "stats", None), "cache_path", None))
            for observer in list(self.observers):
                observer(label)
        except Exception:  # noqa: BLE001 - never break a compilation over a notice
            pass

    def _log(self, label, where):
        for observer in list(self.observers):  # progress bars off their line, for the log line
            getattr(observer, "clear", _no_clear)()
        if where is None:
            logger.log(COMPILE_LOG_LEVEL, "numrnn: compiling %s kernels (first use in this process: caching is off)", label)
        else:
            logger.log(COMPILE_LOG_LEVEL, "numrnn: compiling %s kernels (first use only; cached in %s)", label, where)

    def on_end(self, event):
        self.depth = max(0, self.depth - 1)


def _no_clear():
    pass


_watch = _CompileWatch()
_numba_event.register("numba:compile", _watch)


class compile_notice:
    """Shows "compiling" on a tqdm ``bar`` while numrnn kernels compile.

    Use ``notice.update(n)`` in place of ``bar.update(n)``: an update that follows a
    compilation takes the time since the bar's last update off its clock
    (``bar.unpause()``) and gives its rate estimate no sample, so the compile time
    does not become an estimate of hours for the remaining iterations.  Call
    :meth:`close` (or use it as a context manager) when done.  ``bar`` None is allowed
    (everything is then a no-op).
    """

    def __init__(self, bar):
        self.bar = bar
        self.compiled = False
        if bar is not None:
            _watch.observers.append(self)

    def clear(self):
        """Take the bar off its line (for a log line, after which :meth:`__call__` redraws it)."""
        self.bar.clear()

    def __call__(self, label):
        if not self.compiled:
            self.compiled = True
            self.bar.set_postfix_str(f"compiling {label} kernels (first use only)", refresh=False)
        self.bar.refresh()

    def update(self, n=1):
        bar = self.bar
        if bar is None:
            return
        if not self.compiled:
            bar.update(n)
            return
        self.compiled = False
        if getattr(bar, "disable", False):
            bar.update(n)
            return
        bar.unpause()  # the time since the last update (the compilation) leaves the clock
        bar.n += n
        # ... and is no sample of the rate (neither the smoothed one nor the mean since
        # the start, (n - initial) / elapsed): the next update gives the first
        bar.last_print_n = bar.initial = bar.n
        bar.refresh()

    def close(self):
        if self.bar is not None and self in _watch.observers:
            _watch.observers.remove(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False


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
    """Compile a plain scalar function of :mod:`numrnn.cells` for ``target`` ("cpu",
    "cuda" or "numpy").

    Cell functions call each other (``lstm.forward`` calls ``activations.sigmoid``) as
    ordinary Python.  To compile one, we rebuild it over a copy of its globals in which
    every other cell function it names is replaced by that function's compiled form
    for the same target, recursively.  The Python originals stay untouched, so the
    formulas exist once and serve the CPU, the GPU and plain-Python tests alike.

    ``"numpy"`` compiles nothing: the rebuilt function stays Python, with the
    activations replaced by their NumPy array forms (:func:`override_scalar`), so the
    same formula runs elementwise on whole arrays (:mod:`numrnn.backends.cpu.numpy_kernels`).
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
    elif target == "numpy":
        compiled = clone
    else:
        raise ValueError(f"target must be 'cpu', 'cuda' or 'numpy', got {target!r}")
    _compiled_scalars[key] = compiled
    return compiled


def cpu_function(fn=None, *, inline=False):
    """Compile a scalar helper for the CPU; LLVM inlines it into the drivers.

    Cell functions (:mod:`numrnn.cells`) go through :func:`compile_scalar`, so the
    cell functions they call are compiled too.  ``inline=True`` inlines at Numba-IR
    level instead, for helpers that take many arrays on a latency-bound path: a
    call that LLVM does not inline passes each array as a reference-counted
    structure, which costs a measurable share of a streaming step with ten arrays.
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
