"""Modules that only reshape: :class:`Flatten` and :class:`LastStep` (the last timestep of a sequence)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from numrnn import _validation as check
from numrnn.nn.module import USED, Module

__all__ = ["Flatten", "LastStep"]

class Flatten(Module):
    """Merge the axes ``start_dim`` to ``end_dim`` (both included) into one (as ``torch.nn.Flatten``).

    (B, C, H, W) -> (B, C*H*W) with the defaults.  Negative axes count from the end.

    Parameters
    ----------
    start_dim : int, default 1
        First axis to merge.
    end_dim : int, default -1
        Last axis to merge.
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        for value, name in ((start_dim, "start_dim"), (end_dim, "end_dim")):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}")
        self.start_dim = int(start_dim)
        self.end_dim = int(end_dim)
        if self.start_dim >= 0 and self.end_dim >= 0 and self.start_dim > self.end_dim:
            raise ValueError(f"start_dim ({self.start_dim}) must not come after end_dim ({self.end_dim})")

    def _axes(self, ndim, shape):
        rank = max(ndim, 1)  # as PyTorch: a 0-d input flattens like a 1-d one
        axes = []
        for value, name in ((self.start_dim, "start_dim"), (self.end_dim, "end_dim")):
            if not -rank <= value < rank:
                raise ValueError(f"{name} {value} is out of range for x with {ndim} axes, shape {shape}")
            axes.append(value % rank)
        if axes[0] > axes[1]:
            raise ValueError(
                f"start_dim ({self.start_dim}) must not come after end_dim ({self.end_dim}) for x with {ndim} axes"
            )
        return axes

    def forward(self, x):
        """Flatten the axes.

        Parameters
        ----------
        x : array_like, shape (d0, ..., d[start], ..., d[end], ...)

        Returns
        -------
        ndarray, shape (d0, ..., d[start] * ... * d[end], ...): a view of ``x`` where NumPy can
        """
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        start, end = self._axes(x.ndim, x.shape)
        shape = x.shape if x.ndim else (1,)
        out_shape = shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]
        self._save_for_backward((x.shape, out_shape))
        return x.reshape(out_shape)

    def backward(self, dy):
        """Reshape ``dy`` back to the shape of the last input.

        Parameters
        ----------
        dy : array_like, the shape of the last output

        Returns
        -------
        dx : ndarray, the shape of the last input
        """
        in_shape, out_shape = self._take_saved()
        dy = np.asarray(dy)
        check.check_shape(dy, out_shape, "dy")
        self._saved = USED
        return dy.reshape(in_shape)

    def config(self):
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}



class LastStep(Module):
    """Keep the last timestep of a sequence: (T, B, F) -> (B, F), or (T, F) -> (F,).

    Use it between a recurrent layer and a head, with the layer's ``batch_first``.  For sequences
    of unequal length, the recurrent layer's final state ``h_n`` is the per-sequence last step
    instead.

    Parameters
    ----------
    batch_first : bool, default False
        Batched input is (B, T, F) rather than (T, B, F); as in the recurrent layers, 2-D input
        is one unbatched sequence (T, F) either way.
    """

    def __init__(self, batch_first=False):
        super().__init__()
        self.batch_first = check.check_bool(batch_first, "batch_first")

    def _time_axis(self, ndim):
        return 1 if self.batch_first and ndim > 2 else 0

    def forward(self, x):
        """Return the last timestep.

        Parameters
        ----------
        x : array_like, shape (T, B, ...), (B, T, ...) if batch_first, or (T, F)

        Returns
        -------
        ndarray, shape (B, ...) or (F,): a view of ``x``
        """
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        axis = self._time_axis(x.ndim)
        if x.ndim < 2 or x.shape[axis] == 0:
            layout = "(B, T, ...) or (T, F)" if self.batch_first else "(T, ...)"
            raise ValueError(f"x must be a sequence {layout} with T >= 1, got shape {x.shape}")
        self._save_for_backward((x.shape, x.dtype))
        return x[:, -1] if axis else x[-1]

    def backward(self, dy):
        """Scatter ``dy`` into the last timestep of a zero gradient.

        Parameters
        ----------
        dy : array_like, the shape of the last output

        Returns
        -------
        dx : ndarray, the shape of the last input
        """
        shape, dtype = self._take_saved()
        axis = self._time_axis(len(shape))
        dy = np.asarray(dy)
        check.check_shape(dy, shape[:axis] + shape[axis + 1:], "dy")
        dx = np.zeros(shape, dtype=dtype)
        if axis:
            dx[:, -1] = dy
        else:
            dx[-1] = dy
        self._saved = USED
        return dx

    def config(self):
        return {"batch_first": self.batch_first}
