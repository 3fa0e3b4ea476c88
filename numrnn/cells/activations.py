"""Numerically stable scalar activations and their derivatives (from outputs).

``sigmoid`` never evaluates ``exp`` of a positive argument, so inputs of
``+-1e30`` (float32) or ``+-1e300`` (float64) give exact 0/1 limits without
overflow.  ``tanh`` uses the library ``tanh``, which saturates cleanly.
Derivatives are written in terms of the activation's *output*, which is what the
forward pass saves.
"""

import math


def sigmoid(x):
    """Logistic function ``1 / (1 + exp(-x))``, evaluated without overflow."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def tanh(x):
    """Hyperbolic tangent."""
    return math.tanh(x)


def relu(x):
    """Rectified linear unit ``max(x, 0)`` (NaN propagates)."""
    return x if x > 0 else x * 0.0


def sigmoid_grad(s):
    """Derivative of the sigmoid given its output ``s``: ``s (1 - s)``."""
    return s * (1.0 - s)


def tanh_grad(t):
    """Derivative of tanh given its output ``t``: ``1 - t^2``."""
    return 1.0 - t * t


def relu_grad(r):
    """Derivative of ReLU given its output ``r``: ``1`` where ``r > 0`` else ``0``."""
    return 1.0 if r > 0 else 0.0
