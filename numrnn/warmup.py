"""Compile numrnn's CPU kernels ahead of time: :func:`warmup`.

numrnn's kernels are compiled by Numba the first time each cell family meets a dtype
(measured on a 2-core machine: a float32 LSTM + GRU forward and backward, about 32
CPU seconds; the warm-up of everything an LSTM uses, streaming included, about 40 s),
then kept in Numba's on-disk cache, from which later processes load them in well under
a second.  Until then NumPy kernels answer while a background process runs this
warm-up (:mod:`numrnn.backends.cpu.first_use`).  :func:`warmup` does that first
compilation now, e.g. while building a container image or in a set-up step, so that
the compiled kernels serve from the first call (and give the same bits from the first
run on); it leaves a marker per cell family and dtype in the cache that tells every
process on that cache to use them::

    >>> from numrnn.warmup import warmup
    >>> report = warmup(cells=("lstm",), dtypes=("float32",))  # doctest: +SKIP
    >>> print(report)                                          # doctest: +SKIP
    lstm  float32     67.6 s  compiled
    total             67.6 s
    Numba cache: /.../numrnn/backends/__pycache__

From the shell: ``python -m numrnn warmup --cells lstm,gru --dtypes float32``.

The cache lives where Numba puts it (:func:`cache_dir`): in
``NUMBA_CACHE_DIR`` if set, else in the ``__pycache__`` folders next to numrnn's
sources when they are writable, else in a user-wide folder (``~/.cache/numba``).  A
warm-up helps only processes that see the same cache: the same ``NUMBA_CACHE_DIR``
(or none), the same numrnn sources (an edited source file invalidates its kernels) and
the same CPU model.  Only the CPU backend is covered: CUDA kernels are compiled per
process.
"""

from __future__ import annotations

import os
import time

import numpy as np

from numrnn import _jit
from numrnn.backends.cpu import first_use

__all__ = ["CELLS", "DTYPES", "WarmupReport", "background_compile", "warmup"]

#: Cell families :func:`warmup` knows.
CELLS = ("lstm", "gru", "rnn")

#: Dtypes :func:`warmup` knows.
DTYPES = ("float32", "float64")


def parse_names(argument, value, choices):
    """``value`` (a name, a comma-separated string of names, or an iterable of names)
    as a tuple of names from ``choices``, lower-cased, duplicates dropped.

    Raises
    ------
    TypeError
        If ``value`` is not a string nor an iterable of strings (NumPy dtypes and
        scalar types are taken for dtypes).
    ValueError
        If it names nothing, or a name not in ``choices``; the message names
        ``argument``, the names expected and the one given.
    """
    expected = ", ".join(repr(choice) for choice in choices)
    if isinstance(value, str):
        items = [piece for piece in value.split(",") if piece.strip()]  # "lstm," is "lstm"
    else:
        try:
            items = list(value)
        except TypeError:
            raise TypeError(
                f"{argument} must be a name or a sequence of names from {expected}, got {type(value).__name__} {value!r}"
            ) from None
    names = []
    for item in items:
        if not isinstance(item, str):
            try:  # np.float32, np.dtype("float64")
                item = np.dtype(item).name if isinstance(item, (type, np.dtype)) else item
            except TypeError:
                pass
        if not isinstance(item, str):
            raise TypeError(f"{argument} must hold names from {expected}, got {type(item).__name__} {item!r}")
        name = item.strip().lower()
        if name not in choices:
            raise ValueError(f"{argument} must hold names from {expected}, got {item.strip()!r}")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"{argument} must name at least one of {expected}, got {value!r}")
    return tuple(names)


def cache_dir():
    """The directory where Numba keeps numrnn's compiled CPU kernels, as Numba
    resolves it (``NUMBA_CACHE_DIR`` if set, else the ``__pycache__`` next to
    :mod:`numrnn.backends.cpu` if writable, else a user-wide directory), or None
    when caching is off (``NUMRNN_NO_CACHE=1``)."""
    return first_use.cache_dir()


class WarmupReport:
    """What :func:`warmup` did.

    Attributes
    ----------
    seconds : dict
        ``{(cell, dtype): wall seconds}``, in the order warmed up.
    compiled : dict
        ``{(cell, dtype): bool}``: True where something was compiled, False where
        every kernel was already compiled or loaded from the cache.
    cache_dir : str or None
        Where Numba keeps numrnn's CPU kernels (None with caching off).
    """

    def __init__(self, seconds, compiled, cache_dir):
        self.seconds = seconds
        self.compiled = compiled
        self.cache_dir = cache_dir

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds.values()))

    def __repr__(self):
        return f"WarmupReport(seconds={self.seconds!r}, compiled={self.compiled!r}, cache_dir={self.cache_dir!r})"

    def __str__(self):
        lines = []
        for (cell, dtype), seconds in self.seconds.items():
            how = "compiled" if self.compiled[(cell, dtype)] else "loaded from the cache"
            lines.append(f"{cell:<5} {dtype:<8} {seconds:7.1f} s  {how}")
        lines.append(f"total          {self.total_seconds:7.1f} s")
        where = self.cache_dir if self.cache_dir is not None else "none: caching is off (NUMRNN_NO_CACHE=1)"
        lines.append(f"Numba cache: {where}")
        return "\n".join(lines)


def _exercise(cell, dtype, part):
    """Every CPU kernel a typical training (``part`` "layers"), streaming ("step") or
    trainable-cell ("cells") run of ``cell`` in ``dtype`` uses, on tiny sizes (a kernel
    is compiled per argument types, not sizes): forward and backward with lengths for one
    layer and for two bidirectional layers (the reverse direction and a second layer
    reuse the same kernels); the full-path step and the fast-path step for one layer and
    for a stack of two; two chained calls of the cell and their backward."""
    from numrnn.nn.cells import GRUCell, LSTMCell, RNNCell
    from numrnn.nn.recurrent import GRU, LSTM, RNN

    cls = {"lstm": LSTM, "gru": GRU, "rnn": RNN}[cell]
    dtype = np.dtype(dtype)
    x = np.random.default_rng(0).standard_normal((3, 2, 2)).astype(dtype)
    lengths = np.array([3, 2])
    if part == "cells":
        trainable = {"lstm": LSTMCell, "gru": GRUCell, "rnn": RNNCell}[cell](2, 3, dtype=dtype, seed=0)
        trainable(x[1], trainable(x[0]))
        trainable.backward_all(np.ones((2,) + x.shape[1:2] + (3,), dtype=dtype))
        return
    if part == "layers":
        for options in ({}, {"num_layers": 2, "bidirectional": True}):
            layer = cls(2, 3, dtype=dtype, backend="cpu", seed=0, **options)
            y, _ = layer(x, lengths=lengths)
            layer.backward(np.ones_like(y))
        return
    for layers in (1, 2):
        layer = cls(2, 3, num_layers=layers, dtype=dtype, backend="cpu", seed=0).eval()
        _, state = layer.step(x[0])  # the full path, which plans the fast path
        layer.step(x[0], state)  # the fast path (one compiled call)


def warmup(cells=CELLS, dtypes=DTYPES, progress=True):
    """Compile (or load from Numba's cache) the CPU kernels of ``cells`` x ``dtypes``.

    Covers what a typical training and streaming run uses: forward and backward
    (one layer and stacked, uni- and bidirectional, with or without ``lengths``),
    the trainable cell's calls and backward (:class:`numrnn.nn.LSTMCell`, ...),
    ``step()``'s full path and its fast path (one layer, and the stacked-layer
    kernel for two layers; other depths compile their own, in under a second).
    Not covered: the CUDA backend, and :class:`numrnn.nn.Embedding`'s kernel.

    Parameters
    ----------
    cells : str or sequence of str, default ("lstm", "gru", "rnn")
        Cell families; a string may list several, comma-separated ("lstm,gru").
    dtypes : str or sequence, default ("float32", "float64")
        "float32" and/or "float64" (NumPy dtypes are accepted too).
    progress : bool, default True
        Show a tqdm bar over the cell/dtype pairs; the one-line compile notices of
        the ``"numrnn"`` logger are then left out (the bar says what compiles).

    Returns
    -------
    WarmupReport
        Seconds per (cell, dtype), whether anything compiled, the cache directory.

    Raises
    ------
    TypeError, ValueError
        For an argument of the wrong type or naming an unknown cell or dtype (the
        message names the argument, what was expected and what was given).
    """
    cells = parse_names("cells", cells, CELLS)
    dtypes = parse_names("dtypes", dtypes, DTYPES)
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be a bool, got {type(progress).__name__} {progress!r}")
    pairs = [(cell, dtype) for cell in cells for dtype in dtypes]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(pairs), desc="numrnn warmup", unit=" set")
    seconds, compiled = {}, {}
    events = []

    def observer(label):  # called with a label for each numrnn kernel compiled
        if bar is not None and not events:
            bar.set_postfix_str(f"{cell} {dtype}: compiling", refresh=True)
        events.append(label)

    _jit._watch.observers.append(observer)
    if bar is not None:
        _jit._watch.muted += 1
    try:
        for cell, dtype in pairs:
            if bar is not None:
                bar.set_postfix_str(f"{cell} {dtype}", refresh=True)
            del events[:]
            start = time.perf_counter()
            first_use.use_compiled(cell, dtype)  # (in "background" mode the NumPy kernels would answer)
            for part in first_use.PARTS:
                _exercise(cell, dtype, part)
                first_use.mark_compiled(cell, dtype, part)  # for the processes on this cache
            seconds[(cell, dtype)] = time.perf_counter() - start
            compiled[(cell, dtype)] = bool(events)
            if bar is not None:
                bar.update(1)
    finally:
        _jit._watch.observers.remove(observer)
        if bar is not None:
            _jit._watch.muted -= 1
            bar.close()
    return WarmupReport(seconds, compiled, cache_dir())


def background_compile(cell, dtype):
    """What the background process of a first use runs (``python -m numrnn warmup --cells
    CELL --dtypes DTYPE --background``, started by :mod:`numrnn.backends.cpu.first_use`):
    :func:`warmup` of one cell family and dtype into the cache, one process at a time per
    cache (a lock file), unless another one did it meanwhile; prints its report and its
    CPU seconds.  At normal priority: at ``nice 10`` it got a tenth of a core next to two
    busy Dask workers on two cores, and they stayed on the NumPy kernels for a whole
    second fit (31 s against 11 s compiled)."""
    marker = first_use.marker_path(cell, dtype, first_use.PARTS[-1])  # the last part warmup() marks
    if marker is None:
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, at worst two processes compile one pair
        fcntl = None
    with open(os.path.join(os.path.dirname(marker), "numrnn-compile.lock"), "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(marker):
            print(warmup(cells=(cell,), dtypes=(dtype,), progress=False), flush=True)
    try:
        import resource
    except ImportError:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"background compile of {cell} {dtype}: {usage.ru_utime + usage.ru_stime:.2f} CPU s", flush=True)
