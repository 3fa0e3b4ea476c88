r"""The update rules of the optimisers, each written once as a plain scalar function.

A leaf module: it imports only NumPy.  The rules are made of arithmetic operators and
:func:`sqrt`, so that one function serves two targets.  The NumPy path of
:mod:`numrnn.optim.optimizers` calls a rule with whole arrays (broadcasting) and writes the
results back in place; the CUDA backend (:mod:`numrnn.backends.cuda.optim`) compiles the same
function into a device function, with ``sqrt`` bound to ``math.sqrt``, and applies it per
element.  Hyperparameters and per-step scalars (bias corrections, ``1 - beta``) are computed once
on the host and passed in.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sqrt", "sgd_rule", "adam_rule", "clamp_rule"]

#: The square root the rules use: NumPy's on the host (arrays), ``math.sqrt`` once compiled for
#: the GPU (:mod:`numrnn.backends.cuda.optim` rebinds this name).
sqrt = np.sqrt


def sgd_rule(param, grad, momentum_buffer, lr, weight_decay, momentum, grad_scale, nesterov, first_step):
    r"""One SGD step for a parameter (an array, or one element in device code).

    With :math:`g = \nabla + \lambda p` (when ``weight_decay`` is not zero) and, when ``momentum``
    :math:`\mu` is not zero, :math:`b = g` on the first step and
    :math:`b = \mu b + (1 - \tau) g` afterwards:

    .. math::

        p \leftarrow p - \eta \, (g + \mu b \text{ if nesterov else } b)

    (:math:`p \leftarrow p - \eta g` without momentum).

    Parameters
    ----------
    param, grad : float or ndarray
        Parameter :math:`p` and gradient :math:`\nabla`.
    momentum_buffer : float or ndarray
        Momentum buffer :math:`b` (not read when ``momentum`` is 0 or on the first step).
    lr, weight_decay, momentum : float
        :math:`\eta`, :math:`\lambda` and :math:`\mu`.
    grad_scale : float
        :math:`1 - \tau` (one minus the dampening).
    nesterov, first_step : bool
        Nesterov momentum; whether the momentum buffer starts now.

    Returns
    -------
    (new_param, new_momentum_buffer)
        The updated values (``momentum_buffer`` unchanged without momentum).
    """
    if weight_decay != 0:
        grad = grad + weight_decay * param
    if momentum != 0:
        if first_step:
            momentum_buffer = grad
        else:
            momentum_buffer = momentum_buffer * momentum + grad_scale * grad
        if nesterov:
            grad = grad + momentum * momentum_buffer
        else:
            grad = momentum_buffer
    return param - lr * grad, momentum_buffer


def adam_rule(param, grad, exp_avg, exp_avg_sq, beta1, grad_scale1, beta2, grad_scale2, step_size,
              bias_correction2_sqrt, eps, weight_decay, decoupled, decay_scale):
    r"""One Adam / AdamW step for a parameter (an array, or one element in device code).

    .. math::

        m \leftarrow \beta_1 m + (1-\beta_1) g, \quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,
        \quad p \leftarrow p - \frac{\eta}{1-\beta_1^t}
        \frac{m}{\sqrt{v} / \sqrt{1-\beta_2^t} + \epsilon}

    with :math:`g = \nabla + \lambda p` (Adam) or, decoupled (AdamW), :math:`g = \nabla` and
    :math:`p \leftarrow p (1 - \eta \lambda)` first; nothing of either when ``weight_decay`` is 0.

    Parameters
    ----------
    param, grad, exp_avg, exp_avg_sq : float or ndarray
        :math:`p`, :math:`\nabla`, :math:`m`, :math:`v`.
    beta1, grad_scale1, beta2, grad_scale2 : float
        :math:`\beta_1`, :math:`1 - \beta_1`, :math:`\beta_2`, :math:`1 - \beta_2`.
    step_size : float
        :math:`\eta / (1 - \beta_1^t)`.
    bias_correction2_sqrt : float
        :math:`\sqrt{1 - \beta_2^t}`.
    eps, weight_decay : float
        :math:`\epsilon`, :math:`\lambda`.
    decoupled : bool
        AdamW's decoupled decay instead of an L2 term in the gradient.
    decay_scale : float
        :math:`1 - \eta \lambda` (used when ``decoupled``).

    Returns
    -------
    (new_param, new_exp_avg, new_exp_avg_sq)
    """
    if weight_decay != 0:
        if decoupled:
            param = param * decay_scale
        else:
            grad = grad + weight_decay * param
    exp_avg = exp_avg * beta1 + grad_scale1 * grad
    exp_avg_sq = exp_avg_sq * beta2 + grad_scale2 * (grad * grad)
    denom = sqrt(exp_avg_sq) / bias_correction2_sqrt + eps
    return param - step_size * (exp_avg / denom), exp_avg, exp_avg_sq


def clamp_rule(grad, clip_value):
    """``grad`` clamped to ``[-clip_value, clip_value]`` (NaN stays NaN), for :func:`numrnn.optim.clip_grad_value`."""
    return np.minimum(np.maximum(grad, -clip_value), clip_value)
