r"""First use of the CPU backend: NumPy kernels answer while the compiled ones compile.

Numba compiles a cell family's kernels the first time they meet a dtype: about 20 CPU
seconds for a float32 LSTM forward and backward on a 2-core machine, after which they
load from Numba's on-disk cache in well under a second.  So that a fresh install
answers at once, the CPU backend has two tiers:

* the **compiled kernels** (:mod:`numrnn.backends.cpu`), used once they are in the
  cache, or compiled in this process;
* the **NumPy kernels** (:mod:`numrnn.backends.cpu.numpy_kernels`), the same formulas
  with Python once per timestep, several times slower but with nothing to compile.

Modes (the environment variable ``NUMRNN_FIRST_USE``, or :func:`set_mode`):

``"background"`` (the default)
    A cell family and dtype whose kernels are not known to be compiled run on the
    NumPy kernels, and numrnn starts one background process (one thread) that compiles
    them into the cache: ``python -m numrnn warmup --cells CELL --dtypes DTYPE
    --background`` (:func:`numrnn.warmup.background_compile`).  When it is done,
    the next call (of this process and of any later one on the same cache) uses the
    compiled kernels.  One line through the ``"numrnn"`` logger says so, once per cell
    family and dtype.  Processes that share a cache (Dask workers) compile one pair
    at a time between them (a lock file), and a pair already compiled is not compiled
    again.
``"compile"``
    Compile in the calling process on first use (it then waits, as Numba does).  Also
    what happens with caching off (``NUMRNN_NO_CACHE=1``): a background process could
    not hand its kernels over.

"Known to be compiled" means: :func:`numrnn.warmup.warmup` compiled them, in this
process or in any process on the same cache (it leaves a marker file there,
:func:`marker_path`, named for the numrnn sources, the Numba version and the CPU), or
the mode is ``"compile"``.  The warm-up compiles and marks the layers' forward and
backward first, then ``step()``'s kernels, then the trainable cells' (:data:`PARTS`), so
training switches over before the background compile is done.

Reproducibility: the two tiers agree to rounding (1e-5 relative in float32, 1e-12 in
float64), not bit for bit.  Same data and seed give the same bits on the same tier;
for bit-for-bit equal results from the very first run, run ``python -m numrnn warmup``
first (or use ``"compile"``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import threading

import numpy as np

__all__ = ["MODES", "marker_path", "mode", "ready", "set_mode", "step_ready"]

#: The modes of :func:`set_mode` (see the module docstring).
MODES = ("background", "compile")

_ENV = "NUMRNN_FIRST_USE"

#: Cell kernel families and dtypes this module tiers (the NumPy kernels' families).
KERNEL_FAMILIES = ("rnn", "lstm", "gru")
DTYPES = ("float32", "float64")

#: What the background compile makes ready, in order: the layers' forward and backward,
#: ``step()``, then the trainable cells' one-step kernels (:mod:`numrnn.nn.cell_kernels`).
PARTS = ("layers", "step", "cells")

logger = logging.getLogger("numrnn")

_lock = threading.Lock()
_ready: set = set()  # (part, kernel family, np.dtype) whose compiled kernels this process uses
_launched: dict = {}  # (kernel family, dtype name) -> the background process compiling them
_stamp = None


def _mode_from_environment():
    value = os.environ.get(_ENV, "background").strip().lower() or "background"
    if value not in MODES:
        raise ValueError(f"the environment variable {_ENV} must be one of {MODES}, got {value!r}")
    return value


_mode = _mode_from_environment()


def mode() -> str:
    """The current mode: ``"background"`` or ``"compile"``."""
    return _mode


def set_mode(value: str) -> str:
    """Set the first-use mode (see the module docstring); returns the previous one.

    Raises
    ------
    TypeError, ValueError
        For anything but one of :data:`MODES`.
    """
    global _mode
    if not isinstance(value, str):
        raise TypeError(f"mode must be a str, one of {MODES}, got {type(value).__name__}")
    if value not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {value!r}")
    previous, _mode = _mode, value
    return previous


def cache_dir():
    """Where Numba keeps numrnn's compiled CPU kernels, or None with caching off (or with
    ``NUMBA_DISABLE_JIT=1``, where the kernels are plain Python functions)."""
    from numrnn.backends.cpu.lstm import lstm_forward

    return getattr(getattr(lstm_forward, "stats", None), "cache_path", None)


def _source_stamp():
    """A short hash of what decides whether cached kernels fit this process: the numrnn
    sources they are compiled from (:func:`numrnn._jit.kernel_sources_digest`, which
    Numba's cache entries carry too), the Numba version, and the CPU and its features
    (Numba's own cache key)."""
    global _stamp
    if _stamp is None:
        import numba
        from numba.core.registry import cpu_target

        from numrnn._jit import kernel_sources_digest

        digest = hashlib.sha1(numba.__version__.encode())
        digest.update(repr(cpu_target.target_context.codegen().magic_tuple()).encode())
        digest.update(kernel_sources_digest().encode())
        _stamp = digest.hexdigest()[:16]
    return _stamp


def marker_path(kernel: str, dtype, part: str = "layers") -> str | None:
    """The file that says the compiled kernels of ``kernel`` ("rnn", "lstm", "gru") in
    ``dtype`` are in the cache, or None with caching off.  ``part`` (:data:`PARTS`):
    ``"layers"``, forward and backward; ``"step"``, the streaming ``step()`` kernels,
    which the warm-up compiles after those (so training switches over sooner)."""
    where = cache_dir()
    if where is None:
        return None
    prefix = "numrnn-compiled-" if part == "layers" else f"numrnn-compiled-{part}-"
    return os.path.join(where, f"{prefix}{kernel}-{np.dtype(dtype).name}-{_source_stamp()}")


def mark_compiled(kernel: str, dtype, part: str = "layers") -> None:
    """Record that the compiled ``part`` kernels of ``kernel`` / ``dtype`` are ready: this
    process uses them from now on, and the marker file tells other processes on the same
    cache (:func:`numrnn.warmup.warmup` calls this after compiling each part)."""
    key = (part, kernel, np.dtype(dtype))
    _ready.add(key)
    path = marker_path(kernel, dtype, part)
    if path is None:
        return
    try:
        with open(path, "a"):
            pass
    except OSError as exc:  # a read-only cache still serves this process
        logger.debug("numrnn: could not write %s: %s", path, exc)


def use_compiled(kernel: str, dtype) -> None:
    """Make this process use the compiled kernels of ``kernel`` / ``dtype`` (compiling
    them where needed), whatever the mode: :func:`numrnn.warmup.warmup` calls it."""
    for part in PARTS:
        _ready.add((part, kernel, np.dtype(dtype)))


def ready(kernel: str, dtype, part: str = "layers") -> bool:
    """Whether calls of ``kernel``'s ``part`` kernels in ``dtype`` run compiled now.

    False only in ``"background"`` mode for kernels not known to be compiled; that call
    also starts the background compile of the pair (once, both parts) and logs the line.
    """
    # keyed on the dtype object: np.dtype.name builds a string on each call (1.5 us), as
    # much as the rest of a cell call's checks
    key = (part, kernel, dtype if isinstance(dtype, np.dtype) else np.dtype(dtype))
    if key in _ready:
        return True
    name = key[2].name
    if _mode == "compile" or kernel not in KERNEL_FAMILIES or name not in DTYPES:
        _ready.add(key)
        return True
    path = marker_path(kernel, name, part)
    if path is None:  # caching is off: a background process could not hand its kernels over
        _ready.add(key)
        return True
    pair = (kernel, name)
    if os.path.exists(path):
        _ready.add(key)
        if pair in _launched:
            logger.info("numrnn: compiled %s %s kernels (%s) are ready; using them from now on", kernel.upper(), name, part)
        return True
    with _lock:
        process = _launched.get(pair)
        if process is None:
            _launch(pair, path)
        elif process is not False and process.poll() not in (None, 0):
            logger.warning(
                "numrnn: the background compile of %s %s kernels failed (exit status %s, log in %s); "
                "compiling them in this process instead", kernel.upper(), name, process.returncode, _log_path(pair))
            use_compiled(kernel, name)
    return key in _ready


def step_ready(dtype) -> bool:
    """Whether ``step()``'s compiled fast path may be used in ``dtype``: one kernel for
    every cell family, compiled (and cached) by the warm-up of any of them."""
    dtype = np.dtype(dtype)
    if _mode == "compile" or cache_dir() is None:
        return True
    for kernel in KERNEL_FAMILIES:
        if ("step", kernel, dtype) in _ready:
            return True
        path = marker_path(kernel, dtype, "step")
        if path is not None and os.path.exists(path):
            _ready.add(("step", kernel, dtype))
            return True
    return False


def _log_path(key):
    return os.path.join(cache_dir(), f"numrnn-compile-{key[0]}-{key[1]}.log")


def _launch(key, marker):
    """Start the background process compiling the pair ``key`` (kernel family, dtype
    name); where it cannot start, compile here."""
    kernel, dtype = key
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env = dict(os.environ)
    env.update({_ENV: "compile", "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", "numrnn", "warmup", "--cells", kernel, "--dtypes", dtype, "--background"]
    try:
        log = open(_log_path(key), "ab")
        try:
            process = subprocess.Popen(
                command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True)
        finally:
            log.close()
    except (OSError, ValueError) as exc:
        logger.warning("numrnn: compiling %s %s kernels (first use only; could not start a background "
                       "compile: %s)", kernel.upper(), dtype, exc)
        _launched[key] = False
        use_compiled(kernel, dtype)
        return
    _launched[key] = process
    logger.log(
        logging.WARNING,
        "numrnn: %s %s kernels are not compiled yet: NumPy kernels (slower) answer meanwhile, while a "
        "background process compiles them into %s (first use only; `python -m numrnn warmup` compiles "
        "ahead of time, NUMRNN_FIRST_USE=compile waits for them instead)", kernel.upper(), dtype, os.path.dirname(marker))
