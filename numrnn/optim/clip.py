r"""Gradient clipping in place: by the global norm (:func:`clip_grad_norm`) or by value
(:func:`clip_grad_value`), on host arrays and, on the device, on CUDA device arrays."""

from __future__ import annotations

import math

import numpy as np

from numrnn import _validation as check
from numrnn.backends import is_device_array
from numrnn.optim.optimizers import _device_ops
from numrnn.optim.rules import clamp_rule

__all__ = ["clip_grad_norm", "clip_grad_value"]


def _grad_arrays(grads):
    """The gradient arrays of a dict or list, validated for in-place clipping.

    Host arrays must be writeable float ndarrays; device arrays float and C-contiguous (checked
    by :func:`numrnn.backends.cuda.optim.check_clippable`).
    """
    if isinstance(grads, dict):
        arrays = list(grads.values())
    elif isinstance(grads, (list, tuple)):
        arrays = list(grads)
    else:
        raise TypeError(f"grads must be a dict or list of ndarrays, got {type(grads).__name__}")
    for a in arrays:
        if is_device_array(a):
            _device_ops().check_clippable(a)
            continue
        if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
            raise TypeError("every gradient must be a float ndarray")
        if not a.flags.writeable:
            raise ValueError("every gradient must be writeable (clipping works in place)")
    return arrays


def _norm_part(a, norm_type):
    """max |a| (inf-norm), sum a^2 (2-norm) or sum |a|^p of one array, as a float."""
    if is_device_array(a):
        return _device_ops().norm_part(a, norm_type)
    if math.isinf(norm_type):
        return float(np.max(np.abs(a))) if a.size else 0.0
    flat = a.reshape(-1)  # reduced in float64: float32 squares of 2e19 already overflow
    if norm_type == 2.0 and flat.dtype == np.float64:
        return float(np.vdot(flat, flat))
    if norm_type == 2.0:
        return float(np.einsum("i,i->", flat, flat, dtype=np.float64))
    if norm_type == 1.0:
        return float(np.sum(np.abs(flat), dtype=np.float64))
    return float(np.sum(np.abs(flat, dtype=np.float64) ** norm_type))


def clip_grad_norm(grads, max_norm, norm_type=2.0):
    r"""Scale all gradients together so their global norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: with :math:`N` the norm of all entries taken together,
    every gradient is multiplied by :math:`\min(1, \text{max\_norm} / (N + 10^{-6}))` in place.

    Parameters
    ----------
    grads : dict of str -> ndarray or list of ndarray
        Gradients, modified in place; device arrays are reduced and scaled on the device (one
        float per array comes back to the host).
    max_norm : float
        Largest allowed norm, > 0.
    norm_type : float, default 2.0
        The p of the p-norm; ``float("inf")`` for the largest absolute value.

    Returns
    -------
    float
        The total norm *before* clipping (may be inf or NaN; then nothing is scaled).  Host
        gradients are reduced in float64, so float32 gradients whose squares overflow float32
        still give their finite norm.
    """
    arrays = _grad_arrays(grads)
    max_norm = check.check_float(max_norm, "max_norm", low=0.0, low_open=True)
    if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float, np.integer, np.floating)):
        raise TypeError(f"norm_type must be a number, got {type(norm_type).__name__}")
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"norm_type must be > 0, got {norm_type}")
    if not arrays:
        return 0.0
    if math.isinf(norm_type):
        total = max(_norm_part(a, norm_type) for a in arrays)
    elif norm_type == 2.0:
        total = math.sqrt(sum(_norm_part(a, norm_type) for a in arrays))
    else:
        total = sum(_norm_part(a, norm_type) for a in arrays) ** (1.0 / norm_type)
    coef = max_norm / (total + 1e-6)
    if math.isfinite(total) and coef < 1.0:  # NaN / inf totals: leave the gradients alone
        for a in arrays:
            if is_device_array(a):
                _device_ops().scale(a, coef)
            else:
                a *= coef
    return total


def clip_grad_value(grads, clip_value):
    """Clip every gradient entry to ``[-clip_value, clip_value]`` in place.

    Parameters
    ----------
    grads : dict of str -> ndarray or list of ndarray
        Gradients, modified in place (device arrays on the device), with :func:`clamp_rule`.
    clip_value : float
        Bound, > 0.
    """
    arrays = _grad_arrays(grads)
    clip_value = check.check_float(clip_value, "clip_value", low=0.0, low_open=True)
    for a in arrays:
        if is_device_array(a):
            _device_ops().clamp(a, clip_value)
        else:
            a[...] = clamp_rule(a, clip_value)
