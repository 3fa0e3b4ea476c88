r"""Vectorisable float32 ``sigmoid`` and ``tanh`` for the CPU backend.

pip's llvmlite ships no SVML, so ``math.tanh``/``math.exp`` inside a loop stay
scalar libm calls.  For float32 the CPU backend swaps in
a rational minimax approximation of ``tanh`` (odd polynomial of degree 13 over
an even one of degree 6, on ``[-7.9053, 7.9053]`` where float32 ``tanh`` is
already +-1), which LLVM vectorises (AVX-512 lanes) and
which is within 3e-7 of the exact value; ``sigmoid(x) = (1 + tanh(x / 2)) / 2``.
The same functions take float32 :class:`~numrnn.backends.cpu.simd.Lanes` (they
have no branches).  float64 keeps the exact functions of :mod:`numrnn.cells.activations`.

The substitution happens through :func:`numrnn._jit.override_scalar`, so the cell
formulas themselves are untouched.
"""

import numpy as np
from numba import types
from numba.extending import overload

from numrnn._jit import OVERLOAD_OPTIONS, override_scalar
from numrnn.backends.cpu.simd import Lanes
from numrnn.cells import activations

_CLAMP = np.float32(7.90531110763549805)
_HALF = np.float32(0.5)
# numerator (odd, degree 13) and denominator (even, degree 6) coefficients, in x^2
P0, P1, P2, P3, P4, P5, P6 = (
    np.float32(c)
    for c in (
        -2.76076847742355e-16,
        2.00018790482477e-13,
        -8.60467152213735e-11,
        5.12229709037114e-08,
        1.48572235717979e-05,
        6.37261928875436e-04,
        4.89352455891786e-03,
    )
)
Q0, Q1, Q2, Q3 = (np.float32(c) for c in (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03))


def tanh_float32(x):
    """Rational approximation of ``tanh`` for float32 (max error 3e-7); NaN gives NaN.

    The clamp keeps NaN: ``min(x, C)`` and then ``max(., -C)`` each return their
    first operand when a comparison with NaN fails (for scalars and for lanes), where
    ``max(-C, min(x, C))`` would turn NaN into ``-C`` and so into a finite output.
    """
    clamped = max(min(x, _CLAMP), -_CLAMP)
    x2 = clamped * clamped
    p = ((((((P0 * x2 + P1) * x2 + P2) * x2 + P3) * x2 + P4) * x2 + P5) * x2 + P6) * clamped
    q = ((Q0 * x2 + Q1) * x2 + Q2) * x2 + Q3
    return p / q


def sigmoid_float32(x):
    """``sigmoid(x) = (1 + tanh(x / 2)) / 2`` with :func:`tanh_float32`."""
    return _HALF + _HALF * tanh(_HALF * x)


def tanh(x):
    """``tanh``: :func:`tanh_float32` for float32 in compiled code, else exact."""
    return activations.tanh(x)


def sigmoid(x):
    """``sigmoid``: :func:`sigmoid_float32` for float32 in compiled code, else exact."""
    return activations.sigmoid(x)




@overload(tanh, jit_options=OVERLOAD_OPTIONS, inline="always")
def _tanh_overload(x):
    if x == types.float32 or x == Lanes(types.float32):
        return tanh_float32
    if isinstance(x, types.Float):
        return activations.tanh
    return None


@overload(sigmoid, jit_options=OVERLOAD_OPTIONS, inline="always")
def _sigmoid_overload(x):
    if x == types.float32 or x == Lanes(types.float32):
        return sigmoid_float32
    if isinstance(x, types.Float):
        return activations.sigmoid
    return None


override_scalar("cpu", activations.tanh, tanh)
override_scalar("cpu", activations.sigmoid, sigmoid)
