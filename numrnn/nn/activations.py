"""Elementwise activations: :class:`Tanh`, :class:`ReLU` and :class:`Sigmoid`."""

from __future__ import annotations

import numpy as np

from numrnn import _validation as check
from numrnn.nn._checks import _as_float, _float_input
from numrnn.nn.module import USED, Module

__all__ = ["Tanh", "ReLU", "Sigmoid"]

class _Elementwise(Module):
    """An activation applied entry by entry; subclasses define ``_apply(x) -> y`` and
    ``_derivative(y, dy) -> dx``."""

    def forward(self, x):
        """Apply the activation.

        Parameters
        ----------
        x : array_like, any shape (float32 and float64 keep their dtype, other numbers become
            float64)

        Returns
        -------
        ndarray, the shape of ``x``
        """
        arr = _float_input(x, "x")
        y = np.asarray(self._apply(arr))  # asarray: ufuncs make a scalar of a 0-d input
        self._save_for_backward(y)  # the derivatives need only y (ReLU's: y > 0 where x > 0)
        return y.copy()  # the caller may change it; backward reads the module's own

    def backward(self, dy):
        """Gradient of ``sum(y * dy)`` with respect to ``x``.

        Parameters
        ----------
        dy : array_like, the shape of the last output

        Returns
        -------
        dx : ndarray, the shape of the last input
        """
        y = self._take_saved()
        dy = _as_float(dy, "dy", y.dtype)
        check.check_shape(dy, y.shape, "dy")
        dx = np.asarray(self._derivative(y, dy))
        self._saved = USED
        return dx

    def config(self):
        return {}


class Tanh(_Elementwise):
    r""":math:`y = \tanh(x)`, :math:`dx = dy\,(1 - y^2)` (as ``torch.nn.Tanh``); any shape."""

    @staticmethod
    def _apply(x):
        return np.tanh(x)

    @staticmethod
    def _derivative(y, dy):
        return dy * (1 - y * y)


class ReLU(_Elementwise):
    r""":math:`y = \max(x, 0)`, :math:`dx = dy\,[x > 0]` (as ``torch.nn.ReLU``: no gradient at 0); any
    shape."""

    @staticmethod
    def _apply(x):
        return np.maximum(x, 0)

    @staticmethod
    def _derivative(y, dy):
        return np.where(y > 0, dy, dy.dtype.type(0))


class Sigmoid(_Elementwise):
    r""":math:`y = 1 / (1 + e^{-x})`, :math:`dx = dy\,y\,(1 - y)` (as ``torch.nn.Sigmoid``); any shape.

    Evaluated without overflow for large :math:`|x|` (through :math:`e^{-|x|}`)."""

    @staticmethod
    def _apply(x):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))

    @staticmethod
    def _derivative(y, dy):
        return dy * (1 - y) * y
