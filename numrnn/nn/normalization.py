"""Layer normalisation over the trailing axes: :class:`LayerNorm` (as ``torch.nn.LayerNorm``)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from numrnn import _validation as check
from numrnn.nn._checks import _check_real
from numrnn.nn.module import USED, Module

__all__ = ["LayerNorm"]

class LayerNorm(Module):
    r"""Layer normalisation over the last ``len(normalized_shape)`` axes (as ``torch.nn.LayerNorm``).

    For each slice :math:`x` of ``N = prod(normalized_shape)`` entries,

    .. math::

        \mu = \frac1N \sum_k x_k, \quad \sigma^2 = \frac1N \sum_k (x_k - \mu)^2, \quad
        \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \quad y = \hat x \odot \gamma + \beta

    (the biased variance, as PyTorch), and the backward with :math:`g = dy \odot \gamma` is

    .. math::

        dx = \frac{1}{\sqrt{\sigma^2 + \epsilon}} \left(g - \overline{g} - \hat x\, \overline{g \odot \hat x}
        \right),
        \quad d\gamma = \sum dy \odot \hat x, \quad d\beta = \sum dy

    (bars: means over the slice; the sums run over the leading axes).

    Parameters
    ----------
    normalized_shape : int or sequence of int
        The trailing shape normalised over, e.g. ``F`` or ``(H, W)``.
    eps : float > 0, default 1e-5
        Added to the variance.
    elementwise_affine : bool, default True
        Learn ``weight`` (:math:`\gamma`, initialised to ones) and, with ``bias``, ``bias``
        (:math:`\beta`, zeros), both of shape ``normalized_shape``.
    bias : bool, default True
        Whether to learn ``bias`` (with ``elementwise_affine``).
    dtype : {np.float32, np.float64}, default np.float32
        Dtype of parameters and computation; inputs are cast.  Means and sums accumulate in
        float64.

    Attributes
    ----------
    params : dict
        ``weight`` and ``bias`` (shape ``normalized_shape``), or none without elementwise_affine.
    grads : dict
        Same keys; :meth:`backward` accumulates into them.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=np.float32):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, (bool, np.bool_)):
            normalized_shape = (normalized_shape,)
        if not isinstance(normalized_shape, (tuple, list)) or not normalized_shape:
            raise TypeError(
                f"normalized_shape must be an integer >= 1 or a non-empty sequence of them, got {normalized_shape!r}"
            )
        self.normalized_shape = tuple(
            check.check_positive_int(n, f"normalized_shape[{i}]") for i, n in enumerate(normalized_shape)
        )
        self.eps = _check_real(eps, "eps", lambda v: v > 0.0, "a finite number > 0")
        self.elementwise_affine = check.check_bool(elementwise_affine, "elementwise_affine")
        self.bias = check.check_bool(bias, "bias")
        self.dtype = check.check_dtype(dtype)
        self.reset_parameters()

    def reset_parameters(self):
        """Set ``weight`` to ones and ``bias`` to zeros, and zero the gradients."""
        params = {}
        if self.elementwise_affine:
            params["weight"] = np.ones(self.normalized_shape, dtype=self.dtype)
            if self.bias:
                params["bias"] = np.zeros(self.normalized_shape, dtype=self.dtype)
        self.params = params
        self.grads = {k: np.zeros_like(v) for k, v in params.items()}
        self._saved = None

    def forward(self, x):
        """Normalise.

        Parameters
        ----------
        x : array_like, shape ``(..., *normalized_shape)``

        Returns
        -------
        ndarray, the shape of ``x``
        """
        arr = check.as_float_array(x, "x", self.dtype)
        k = len(self.normalized_shape)
        if arr.ndim < k or arr.shape[arr.ndim - k:] != self.normalized_shape:
            raise ValueError(
                f"x must end in the normalized_shape {self.normalized_shape}, got shape {arr.shape}"
            )
        n = math.prod(self.normalized_shape)
        x2 = arr.reshape(-1, n)
        mean = x2.mean(axis=1, keepdims=True, dtype=np.float64).astype(self.dtype)
        centred = x2 - mean
        var = np.mean(centred * centred, axis=1, keepdims=True, dtype=np.float64)
        rstd = (1.0 / np.sqrt(var + self.eps)).astype(self.dtype)
        xhat = centred * rstd
        if self.elementwise_affine:
            y = xhat * self.params["weight"].reshape(-1)
            if self.bias:
                y += self.params["bias"].reshape(-1)
        else:
            y = xhat.copy()  # xhat is kept for backward
        self._save_for_backward((xhat, rstd, arr.shape))
        return y.reshape(arr.shape)

    def backward(self, dy):
        """Gradient of ``sum(y * dy)``: returns dx and accumulates ``grads``.

        Parameters
        ----------
        dy : array_like, the shape of the last output

        Returns
        -------
        dx : ndarray, the shape of the last input
        """
        xhat, rstd, shape = self._take_saved()
        dy = check.as_float_array(dy, "dy", self.dtype)
        check.check_shape(dy, shape, "dy")
        dy2 = dy.reshape(xhat.shape)
        g = dy2 * self.params["weight"].reshape(-1) if self.elementwise_affine else dy2
        mean_g = g.mean(axis=1, keepdims=True, dtype=np.float64).astype(self.dtype)
        mean_gx = np.mean(g * xhat, axis=1, keepdims=True, dtype=np.float64).astype(self.dtype)
        dx = (g - mean_g - xhat * mean_gx) * rstd
        if self.elementwise_affine:
            self.grads["weight"] += np.sum(dy2 * xhat, axis=0, dtype=np.float64).reshape(self.normalized_shape)
            if self.bias:
                self.grads["bias"] += dy2.sum(axis=0, dtype=np.float64).reshape(self.normalized_shape)
        self._saved = USED
        return dx.reshape(shape)

    def config(self):
        return {
            "normalized_shape": list(self.normalized_shape),
            "eps": self.eps,
            "elementwise_affine": self.elementwise_affine,
            "bias": self.bias,
            "dtype": self.dtype.name,
        }
