"""Numerically stable scalar activations and their derivatives (from outputs).

``sigmoid`` never evaluates ``exp`` of a positive argument, so inputs of
``+-1e30`` (float32) or ``+-1e300`` (float64) give exact 0/1 limits without
overflow.  ``tanh`` uses the library ``tanh``, which saturates cleanly.
Derivatives are written in terms of the activation's *output*, which is what the
forward pass saves.

Constants are float32 scalars (``ONE``, ``ZERO``): Numba types a bare ``1.0`` as
float64 and would silently promote float32 kernels to float64, while a float32
constant combined with float64 data promotes exactly (0 and 1 are exact in both).
Call these functions with NumPy scalars or compiled; the CPU backend substitutes
a vectorisable float32 ``sigmoid``/``tanh`` (:mod:`numrnn.backends.cpu.activations`).
"""

import math

import numpy as np

ONE = np.float32(1.0)
ZERO = np.float32(0.0)


def sigmoid(x):
    """Logistic function ``1 / (1 + exp(-x))``, evaluated without overflow."""
    if x >= ZERO:
        return ONE / (ONE + math.exp(-x))
    e = math.exp(x)
    return e / (ONE + e)


def tanh(x):
    """Hyperbolic tangent."""
    return math.tanh(x)


def relu(x):
    """Rectified linear unit ``max(x, 0)``; NaN gives NaN, as in PyTorch."""
    return ZERO if x < ZERO else x


def sigmoid_grad(s):
    """Derivative of the sigmoid given its output ``s``: ``s (1 - s)``."""
    return s * (ONE - s)


def tanh_grad(t):
    """Derivative of tanh given its output ``t``: ``1 - t^2``."""
    return ONE - t * t


def relu_grad(r):
    """Derivative of ReLU given its output ``r``: ``1`` where ``r > 0`` else ``0``."""
    return ONE if r > ZERO else ZERO
