"""The streaming ``step()`` fast path: the border checks and every layer's step in one
compiled call per dtype (and number of layers), closed to other argument types."""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import overload

from numrnn._jit import OVERLOAD_OPTIONS, cpu_function, cpu_kernel
from numrnn.backends.cpu.rnn import rnn_step
from numrnn.backends.cpu.lstm import lstm_step_into
from numrnn.backends.cpu.gru import gru_step
from numrnn.backends.cpu.linalg import copy_block
from numrnn.cells import FAMILIES


def _float_bits(a):
    """``(bits, exponent_mask)``: the flat C-contiguous float array ``a`` viewed as
    unsigned integers of its width, and the mask of its exponent field."""
    raise NotImplementedError("compiled only: see the overload below")


@overload(_float_bits, jit_options=OVERLOAD_OPTIONS, inline="always")
def _float_bits_overload(a):
    if a.dtype == types.float32:
        return lambda a: (a.reshape(a.size).view(np.uint32), np.uint32(0x7F800000))
    if a.dtype == types.float64:
        return lambda a: (a.reshape(a.size).view(np.uint64), np.uint64(0x7FF0000000000000))
    return None


@cpu_function
def all_finite(a):
    """True when every value of ``a`` (C-contiguous, float32 or float64) is finite:
    a compiled scan for cheap border checks.

    A value is NaN or inf exactly when its exponent bits are all ones.  The test
    is made on the integer bits because no fast-math flag may fold integer
    arithmetic: the float form ``sum(v - v) == 0`` that this replaces was folded
    by LLVM under the kernels' re-association flags and let NaN past index 0
    through.
    """
    bits, mask = _float_bits(a)
    bad = False
    for i in range(bits.size):
        bad |= (bits[i] & mask) == mask
    return not bad


#: Kernel families of the step fast path, in the order :func:`_step_layer` tests them.
STEP_KERNELS = ("rnn", "lstm", "gru")
_STEP_LSTM, _STEP_GRU = STEP_KERNELS.index("lstm"), STEP_KERNELS.index("gru")

#: Cell codes of :func:`checked_step`: ``2 * STEP_KERNELS.index(family.kernel) + family.variant``.
STEP_CELLS = {
    name: 2 * STEP_KERNELS.index(family.kernel) + int(family.variant)
    for name, family in FAMILIES.items()
    if family.kernel in STEP_KERNELS
}
_kernel_families = {family.kernel: family for family in FAMILIES.values()}
#: Gates and state arrays per step kernel family (index ``code // 2``), from the registry.
_STEP_GATES = tuple(_kernel_families[kernel].gates for kernel in STEP_KERNELS)
_STEP_STATE_SIZES = tuple(_kernel_families[kernel].state_size for kernel in STEP_KERNELS)


@cpu_function(inline=True)
def _step_layer(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, h, c):
    """One layer of a checked step: (B, I) input, (B, H) state in, ``h`` and ``c``
    (B, H) out (``c`` untouched but for the LSTM).  False, with nothing written,
    when a weight's shape does not fit ``x`` and the state."""
    batch, inputs = x.shape
    hidden = h0.shape[1]
    kernel, variant = cell // 2, cell % 2 == 1
    gates = _STEP_GATES[kernel] * hidden
    if not (
        w_ih.shape[0] == gates
        and w_ih.shape[1] == inputs
        and w_hh.shape[0] == gates
        and w_hh.shape[1] == hidden
        and b_ih.shape[0] == gates
        and b_hh.shape[0] == gates
    ):
        return False
    if kernel == _STEP_LSTM:
        lstm_step_into(x, w_ih, w_hh, b_ih, b_hh, h0, c0, h, c)
    elif kernel == _STEP_GRU:
        copy_block(gru_step(x, variant, w_ih, w_hh, b_ih, b_hh, h0), h, 0)
    else:
        copy_block(rnn_step(x, variant, w_ih, w_hh, b_ih, b_hh, h0), h, 0)
    return True


@cpu_function(inline=True)
def _check_step_border(cell, x, hidden, layers, h0, c0, state):
    """Raise ``ValueError`` unless ``x`` (B, I), the state ``h0``, ``c0`` (L, B, H) and
    the output ``state`` (S, L, B, H) fit together and hold finite values."""
    batch = x.shape[0]
    if not (
        batch > 0
        and h0.shape[0] == layers
        and h0.shape[1] == batch
        and h0.shape[2] == hidden
        and c0.shape == h0.shape
        and state.shape[0] == _STEP_STATE_SIZES[cell // 2]
        and state.shape[1:] == h0.shape
    ):
        raise ValueError("step(): shapes do not match the layer")
    if not (all_finite(x) and all_finite(h0) and all_finite(c0)):
        raise ValueError("step(): x_t or the state is not finite")


def checked_step(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, state):
    """One step of a single-layer cell with biases: the streaming fast path.

    Compiled per dtype by :func:`step_kernel`, never called as it stands.  One
    compiled call does the border checks and the step, because at B = 1 each call
    from Python costs about as much as the step itself.

    Parameters
    ----------
    cell : int
        Code from :data:`STEP_CELLS` (kernel family index and variant flag).
    x : ndarray, shape (B, I)
        Any strides (then copied to a contiguous scratch).
    w_ih, w_hh, b_ih, b_hh : ndarray
        As in :meth:`CPUBackend.layer_forward`; every shape is checked here.
    h0, c0 : ndarray, shape (1, B, H)
        The state; ``c0`` is ignored (pass ``h0``) but for the LSTM.
    state : ndarray, shape (S, 1, B, H)
        Output: the new state, ``S`` = 2 (h, c) for the LSTM, else 1 (h).  Given by
        the caller because an array made here costs more to hand back to Python than
        NumPy takes to make it.

    Raises
    ------
    ValueError
        With nothing computed, when a shape does not match or ``x`` or the state
        holds NaN or inf: the caller then takes the full path, which raises the
        error naming the argument.
    """
    x = np.ascontiguousarray(x)  # a no-op for the C-contiguous signature
    _check_step_border(cell, x, w_hh.shape[1], 1, h0, c0, state)
    if not _step_layer(cell, x, w_ih, w_hh, b_ih, b_hh, h0[0], c0[0], state[0, 0], state[-1, 0]):
        raise ValueError("step(): the parameters' shapes do not match the layer")


def checked_stack_step(cell, x, weights_ih, weights_hh, biases, h0, c0, state):
    """:func:`checked_step` for any number of layers L, or no biases.

    Compiled per dtype and L by :func:`stack_step_kernel`.  The weights come as
    tuples: ``weights_ih`` and ``weights_hh`` of L arrays, ``biases`` of 2L
    (``b_ih``, ``b_hh`` of each layer in turn; zeros for a layer without biases).
    Each tuple costs Numba's dispatch about as much as two or three arrays, so the
    single-layer model keeps :func:`checked_step`.  ``h0``, ``c0`` are (L, B, H) and
    ``state`` (S, L, B, H); layer ``l`` reads the new ``h`` of layer ``l - 1``.
    """
    layers = len(weights_ih)
    x = np.ascontiguousarray(x)
    _check_step_border(cell, x, h0.shape[2], layers, h0, c0, state)
    layer_input = x
    for index in range(layers):
        ok = _step_layer(
            cell, layer_input, weights_ih[index], weights_hh[index], biases[2 * index], biases[2 * index + 1],
            h0[index], c0[index], state[0, index], state[-1, index],
        )
        if not ok:
            raise ValueError("step(): the parameters' shapes do not match the layer")
        layer_input = state[0, index]


_step_kernels = {}


def _step_signatures(dtype, weights):
    """Argument types of a step kernel: the cell code, ``x``, then ``weights(row,
    matrix)`` (the weight arguments), the state in and out, all of ``dtype``.

    Two signatures: ``x`` C-contiguous, or of any layout (a column of a
    batch-first array).  Both are needed: a C-contiguous ``x`` would match the
    second only by Numba's conversion search, which is slow on every call.
    """
    element = numba.from_dtype(np.dtype(dtype))
    row, matrix, state, output = (types.Array(element, ndim, "C") for ndim in (1, 2, 3, 4))
    return [
        (types.intp, x, *weights(row, matrix), state, state, output)
        for x in (matrix, types.Array(element, 2, "A"))
    ]


def step_kernel(dtype):
    """:func:`checked_step` compiled for C-contiguous arrays of ``dtype`` only.

    Compiled (or loaded from the cache) on first use.  Compilation is then closed,
    so a call with arguments of any other type or layout raises ``TypeError``
    rather than compiling a new specialisation in the middle of a stream.  That
    refusal is slow in Numba, so the caller checks ``x``'s dtype first, and
    ``x`` may have any layout.
    """
    key = ("single", np.dtype(dtype))
    kernel = _step_kernels.get(key)
    if kernel is None:
        signatures = _step_signatures(dtype, lambda row, matrix: (matrix, matrix, row, row))
        kernel = _step_kernels[key] = cpu_kernel(checked_step, signatures=signatures)
    return kernel


def stack_step_kernel(dtype, layers):
    """:func:`checked_stack_step` compiled for ``layers`` layers of ``dtype`` only
    (closed to other types, as :func:`step_kernel`)."""
    key = ("stack", np.dtype(dtype), int(layers))
    kernel = _step_kernels.get(key)
    if kernel is None:
        signatures = _step_signatures(
            dtype, lambda row, matrix: (types.UniTuple(matrix, layers),) * 2 + (types.UniTuple(row, 2 * layers),)
        )
        kernel = _step_kernels[key] = cpu_kernel(checked_stack_step, signatures=signatures)
    return kernel
