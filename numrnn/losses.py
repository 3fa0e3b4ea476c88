r"""Loss functions that return their value and their gradient.

Every loss is an object called as ``value, grad = loss(pred, target)``: ``value`` is a Python
float, ``grad`` the gradient of ``value`` with respect to ``pred`` (same shape and dtype as
``pred``), ready to be handed to a module's ``backward``.  All losses average over every element
(PyTorch's ``reduction="mean"``).

================  ======================================================================
name              value, with :math:`d = \text{pred} - \text{target}` over N elements
================  ======================================================================
``"mse"``         :math:`\frac1N \sum d^2`
``"mae"``         :math:`\frac1N \sum |d|`  (gradient 0 where :math:`d = 0`)
``"huber"``       :math:`\frac1N \sum \begin{cases} d^2/2 & |d| \le \delta \\
                  \delta (|d| - \delta/2) & \text{otherwise}\end{cases}`
``"gaussian"``    negative log-likelihood of a normal distribution, see :class:`GaussianNLLLoss`
================  ======================================================================

Examples
--------
>>> import numpy as np
>>> from numrnn.losses import MSELoss
>>> value, grad = MSELoss()(np.array([1.0, 2.0]), np.array([0.0, 0.0]))
>>> value, grad
(2.5, array([1., 2.]))
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Loss", "MSELoss", "MAELoss", "HuberLoss", "GaussianNLLLoss", "get_loss", "LOSSES"]


def _as_float(name, value, like=None):
    """Validate ``value`` as a finite real float array (the dtype of ``like`` if given)."""
    if value is None:
        raise TypeError(f"{name} must be a real numeric array, got None")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be a real numeric array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    dtype = like.dtype if like is not None else (arr.dtype if arr.dtype.kind == "f" else np.float64)
    arr = arr.astype(dtype, copy=False)
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


class Loss:
    """Base class: ``value, grad = loss(pred, target)``.

    Attributes
    ----------
    name : str
        The name :func:`get_loss` knows this loss by.
    outputs_per_target : int
        How many model outputs one target value needs (2 for :class:`GaussianNLLLoss`: a mean
        and a log-variance; 1 otherwise).
    """

    name = ""
    outputs_per_target = 1

    def __call__(self, pred, target):
        """Return ``(value, grad)`` for predictions ``pred`` and targets ``target``.

        Parameters
        ----------
        pred : array_like, shape (..., outputs_per_target * k)
            Model output.
        target : array_like, shape (..., k)
            True values; cast to the dtype of ``pred``.

        Returns
        -------
        value : float
            The mean loss.
        grad : ndarray, same shape and dtype as ``pred``
            d value / d pred.
        """
        pred = _as_float("pred", pred)
        target = _as_float("target", target, like=pred)
        expected = pred.shape[:-1] + (pred.shape[-1] // self.outputs_per_target,) if pred.ndim else ()
        if pred.ndim and pred.shape[-1] % self.outputs_per_target:
            raise ValueError(
                f"pred must have a last axis divisible by {self.outputs_per_target} for the "
                f"{self.name!r} loss, got shape {pred.shape}"
            )
        if target.shape != expected:
            raise ValueError(f"target must have shape {expected} to match pred {pred.shape}, got {target.shape}")
        if pred.size == 0:
            raise ValueError("pred and target must not be empty")
        return self._compute(pred, target)

    def _compute(self, pred, target):  # pragma: no cover - abstract
        raise NotImplementedError

    def config(self):
        """Constructor arguments as a JSON-able dict."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class MSELoss(Loss):
    """Mean squared error, :math:`\\frac1N \\sum (p - t)^2`."""

    name = "mse"

    def _compute(self, pred, target):
        diff = pred - target
        n = diff.size
        return float(np.mean(diff * diff)), (diff * (2.0 / n)).astype(pred.dtype, copy=False)


class MAELoss(Loss):
    """Mean absolute error, :math:`\\frac1N \\sum |p - t|`; the gradient is 0 where p = t."""

    name = "mae"

    def _compute(self, pred, target):
        diff = pred - target
        n = diff.size
        return float(np.mean(np.abs(diff))), (np.sign(diff) / n).astype(pred.dtype, copy=False)


class HuberLoss(Loss):
    """Huber loss (PyTorch's ``HuberLoss``): quadratic for :math:`|d| \\le \\delta`, linear beyond.

    Parameters
    ----------
    delta : float, default 1.0
        Where the loss turns from quadratic to linear; must be > 0.
    """

    name = "huber"

    def __init__(self, delta=1.0):
        if isinstance(delta, bool) or not isinstance(delta, (int, float, np.integer, np.floating)):
            raise TypeError(f"delta must be a positive float, got {type(delta).__name__}")
        if not (math.isfinite(delta) and delta > 0):
            raise ValueError(f"delta must be a positive finite float, got {delta!r}")
        self.delta = float(delta)

    def _compute(self, pred, target):
        diff = pred - target
        n = diff.size
        absdiff = np.abs(diff)
        small = absdiff <= self.delta
        value = np.where(small, 0.5 * diff * diff, self.delta * (absdiff - 0.5 * self.delta))
        grad = np.where(small, diff, self.delta * np.sign(diff)) / n
        return float(np.mean(value)), grad.astype(pred.dtype, copy=False)

    def config(self):
        return {"delta": self.delta}


class GaussianNLLLoss(Loss):
    r"""Gaussian negative log-likelihood with a predicted mean and log-variance.

    ``pred`` holds, along its last axis, k means followed by k log-variances
    :math:`s = \log \sigma^2`; the value is

    .. math::

        \frac1N \sum \tfrac12 \left( s + (\mu - t)^2 e^{-s} \right) [+ \tfrac12 \log 2\pi]

    over the N target elements.  Predicting the log-variance keeps the variance positive with no
    constraint.  ``s`` is clipped to [-30, 30] inside the exponential for safety (the gradient
    with respect to ``s`` is zero outside that range).

    Parameters
    ----------
    full : bool, default False
        Add the constant :math:`\tfrac12 \log 2\pi` (PyTorch's ``full``).
    """

    name = "gaussian"
    outputs_per_target = 2
    _LOG_VAR_LIMIT = 30.0

    def __init__(self, full=False):
        if not isinstance(full, (bool, np.bool_)):
            raise TypeError(f"full must be a bool, got {type(full).__name__}")
        self.full = bool(full)

    def _compute(self, pred, target):
        k = pred.shape[-1] // 2
        mean, log_var_raw = pred[..., :k], pred[..., k:]
        log_var = np.clip(log_var_raw, -self._LOG_VAR_LIMIT, self._LOG_VAR_LIMIT)
        inv_var = np.exp(-log_var)
        diff = mean - target
        n = diff.size
        value = 0.5 * (log_var + diff * diff * inv_var)
        if self.full:
            value = value + 0.5 * math.log(2.0 * math.pi)
        grad = np.empty_like(pred)
        grad[..., :k] = diff * inv_var / n
        inside = np.abs(log_var_raw) <= self._LOG_VAR_LIMIT
        grad[..., k:] = np.where(inside, 0.5 * (1.0 - diff * diff * inv_var), 0.0) / n
        return float(np.mean(value)), grad

    def config(self):
        return {"full": self.full}


#: Loss classes by name.
LOSSES = {cls.name: cls for cls in (MSELoss, MAELoss, HuberLoss, GaussianNLLLoss)}


def get_loss(loss, **kwargs):
    """Return a loss object from a name (``"mse"``, ``"mae"``, ``"huber"``, ``"gaussian"``) or a loss.

    Parameters
    ----------
    loss : str or Loss
        A name from :data:`LOSSES` (keyword arguments go to its constructor), or a :class:`Loss`
        instance, returned unchanged.
    """
    if isinstance(loss, Loss):
        if kwargs:
            raise TypeError("keyword arguments are only accepted with a loss name")
        return loss
    if not isinstance(loss, str):
        raise TypeError(f"loss must be a name or a Loss, got {type(loss).__name__}")
    try:
        cls = LOSSES[loss.lower()]
    except KeyError:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}") from None
    return cls(**kwargs)
