"""One caller at a time: the guard of objects that keep what a forward call saved for backward.

A recurrent layer or cell is not thread-safe: what forward saves for backward, and the
buffers it reuses, belong to one call at a time.  Rather than give wrong numbers when two
threads share one, :class:`ExclusiveUse` makes the second call raise ``RuntimeError``.
"""

from __future__ import annotations

import threading


class _Release:
    """``with`` body for an already acquired lock: releases it on exit."""

    __slots__ = ("lock",)

    def __init__(self, lock):
        self.lock = lock

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.lock.release()
        return False


class ExclusiveUse:
    """Mixin: ``with self._exclusive("forward"):`` around each call that saves or reads saved state.

    Call :meth:`_init_exclusive` in ``__init__``.  Copies (``copy.copy``, ``copy.deepcopy``)
    get a lock of their own.
    """

    #: What the error calls the object ("layer", "cell").
    _exclusive_noun = "object"

    def _init_exclusive(self):
        self._in_use = threading.Lock()

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_in_use", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._in_use = threading.Lock()

    def _exclusive(self, method):
        """A context holding this object's lock; ``RuntimeError`` naming ``method`` when
        another thread holds it."""
        if not self._in_use.acquire(blocking=False):
            noun = self._exclusive_noun
            raise RuntimeError(
                f"{type(self).__name__}.{method}() called while another thread is inside forward() or "
                f"backward() of the same {noun}: a {noun} is not thread-safe; give each thread its own "
                f"(e.g. type({noun})(**{noun}.config()) then load_state_dict({noun}.state_dict()))"
            )
        return _Release(self._in_use)
