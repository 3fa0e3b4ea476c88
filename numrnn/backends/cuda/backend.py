"""The CUDA backend object: one layer-direction at a time, dispatched by cell family.

:class:`CUDABackend` looks a cell up in the registry (:func:`numrnn.cells.cell_family`)
and runs the kernels of its kernel family from :data:`FAMILY_KERNELS`; the array ops of
the stack driver come from :class:`~numrnn.backends.cuda.arrays.DeviceArrays`.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import cuda

from numrnn.backends.cuda import gru, lstm, rnn
from numrnn.backends.cuda.arrays import DeviceArrays
from numrnn.backends.cuda.common import argtypes
from numrnn.backends.cuda.config import CONFIG, choose_batch_tile, recurrence_threads
from numrnn.backends.cuda.elementwise import as_device, blocks, combine_bias, contiguous, copy, copy_2d, empty
from numrnn.backends.cuda.elementwise import is_device_array
from numrnn.backends.cuda.elementwise import signatures as elementwise_signatures
from numrnn.backends.cuda.linalg import column_sum, matmul
from numrnn.backends.cuda.linalg import signatures as linalg_signatures
from numrnn.cells import cell_family

name = "cuda"

SIMULATOR = bool(getattr(numba.config, "ENABLE_CUDASIM", False))

#: kernel family (:attr:`numrnn.cells.CellFamily.kernel`) -> the module of its kernels
FAMILY_KERNELS = {"rnn": rnn, "lstm": lstm, "gru": gru}


def _kernels_of(cell):
    """``(family, kernel module)``: the built-in families' from :data:`FAMILY_KERNELS`, a
    registered family's from its ``backend_modules`` (ValueError when it has no CUDA kernels)."""
    family = cell_family(cell)
    kernels = FAMILY_KERNELS.get(family.kernel)
    if kernels is None:
        kernels = family.backend_module("cuda")
    return family, kernels


def _sm_count():
    if CONFIG.sm_count is not None:
        return int(CONFIG.sm_count)
    try:
        return int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
    except Exception:  # the simulator's device has no attributes
        return 16



def _recurrence_launch(cell, batch, hidden, dtype, forward):
    """``(grid, threads, shared bytes, tile)`` of one recurrence launch."""
    family, kernels = _kernels_of(cell)
    itemsize = np.dtype(dtype).itemsize
    weight_bytes = family.gates * hidden * hidden * itemsize
    tile = choose_batch_tile(batch, weight_bytes, _sm_count())
    while tile > 1 and kernels.shared_values(family.variant, tile, hidden, forward) * itemsize > CONFIG.max_shared_bytes:
        tile //= 2
    shared_bytes = kernels.shared_values(family.variant, tile, hidden, forward) * itemsize
    if shared_bytes > CONFIG.max_shared_bytes:
        raise ValueError(
            f"hidden_size={hidden} is too large for the CUDA backend's {cell} in {np.dtype(dtype).name}: "
            f"one block needs {shared_bytes} bytes of shared memory, more than {CONFIG.max_shared_bytes}; "
            'use backend="cpu" or float32'
        )
    return -(-batch // tile), recurrence_threads(hidden), shared_bytes, tile


def check_hidden_size(cell, hidden, dtype):
    """Raise ``ValueError`` if a layer of this size cannot run on this backend."""
    family, kernels = _kernels_of(cell)
    for forward in (True, False):
        itemsize = np.dtype(dtype).itemsize
        needed = kernels.shared_values(family.variant, 1, hidden, forward) * itemsize
        if needed > CONFIG.max_shared_bytes:
            raise ValueError(
                f"hidden_size={hidden} is too large for the CUDA backend's {cell} in {np.dtype(dtype).name} "
                f"(a block needs {needed} bytes of shared memory, the limit is {CONFIG.max_shared_bytes}); "
                'use backend="cpu" or a smaller hidden_size'
            )


_ones_cache: dict = {}


def _ones(batch):
    """Device lengths of 1 for ``batch`` rows (cached: step() is latency bound)."""
    if batch not in _ones_cache:
        if len(_ones_cache) > 64:
            _ones_cache.clear()
        _ones_cache[batch] = cuda.to_device(np.ones(batch, dtype=np.int64))
    return _ones_cache[batch]


def _to_host(array):
    return array.copy_to_host()


# ------------------------------------------------------------------ backend object


class CUDABackend(DeviceArrays):
    """Runs one layer-direction at a time with the CUDA kernels of the cell's family.

    The same two methods as :class:`numrnn.backends.cpu.CPUBackend`;
    arguments may be NumPy arrays or device arrays (``__cuda_array_interface__``).
    """

    name = name
    device = True

    def layer_forward(self, cell, x, lengths, reverse, weights, state0, y):
        """Run a sequence; write outputs into ``y`` and return ``(state_n, saved)``.

        Same parameters as :meth:`numrnn.backends.cpu.CPUBackend.layer_forward`.
        ``state_n`` is NumPy when ``y`` is a NumPy array, else device arrays; ``saved``
        holds device arrays (the family's record of buffers last).
        """
        family, kernels = _kernels_of(cell)
        host_y = not is_device_array(y)
        dtype = np.dtype(y.dtype)
        x = contiguous(x, dtype)
        steps, batch, features = x.shape
        w_ih, w_hh, b_ih, b_hh = (contiguous(w, dtype) for w in weights)
        lengths = contiguous(lengths, np.int64)
        gate_width, hidden = w_hh.shape
        check_hidden_size(cell, hidden, dtype)  # fail here, not in backward
        y_dev = empty((steps, batch, hidden), dtype) if host_y else as_device(y)

        # input projection of all timesteps with the folded bias
        bias = empty((gate_width,), dtype)
        grid, threads = blocks(gate_width)
        combine_bias[grid, threads](b_ih, b_hh, kernels.folded_rows(family.variant, hidden), bias)
        pre_x = empty((steps, batch, gate_width), dtype)
        matmul(x.reshape(steps * batch, features), w_ih, pre_x.reshape(steps * batch, gate_width),
               trans_b=True, bias=bias)
        w_t = empty((hidden, gate_width), dtype)
        grid, threads = blocks(w_t.size)
        copy_2d[grid, threads](w_hh, w_t, True)

        launch = _recurrence_launch(cell, batch, hidden, dtype, forward=True)
        state0 = tuple(contiguous(s, dtype) for s in state0)
        state_n, buffers = kernels.forward(family.variant, launch, pre_x, w_t, b_hh, lengths, reverse, state0, y_dev)
        if host_y:
            y[...] = y_dev.copy_to_host()
            state_n = tuple(_to_host(s) for s in state_n)
        return state_n, (cell, x, lengths, reverse, w_ih, w_hh, buffers)

    def layer_step(self, cell, x, weights, state0):
        """One timestep for every row, saving nothing useful (streaming inference).

        Parameters as :meth:`numrnn.backends.cpu.CPUBackend.layer_step`: ``x`` (B, I),
        ``state0`` a tuple of (B, H).  Returns the new state tuple (``state[0]`` is the
        output): NumPy when ``x`` is a NumPy array, else device arrays.
        """
        host = not is_device_array(x)
        batch = x.shape[0]
        hidden = weights[1].shape[1]
        dtype = np.dtype(weights[1].dtype) if host else np.dtype(state0[0].dtype)
        x3 = np.ascontiguousarray(x, dtype=dtype)[None] if host else contiguous(x, dtype).reshape(1, batch, x.shape[1])
        lengths = _ones(batch)
        y = empty((1, batch, hidden), dtype)
        state_n, _ = self.layer_forward(cell, x3, lengths, False, weights, state0, y)
        if host:
            return tuple(_to_host(s) for s in state_n)
        return state_n

    def layer_backward(self, saved, dy, dstate_n):
        """Backward of one :meth:`layer_forward` call.

        Returns ``(dx (T, B, I), dstate0 (tuple of (B, H)), (d_weight_ih, d_weight_hh,
        d_bias_ih, d_bias_hh))``: NumPy when ``dy`` is a NumPy array, else device arrays.
        """
        cell, x, lengths, reverse, w_ih, w_hh, buffers = saved
        family, kernels = _kernels_of(cell)
        host = not is_device_array(dy)
        dtype = np.dtype(x.dtype)
        dy = as_device(dy)
        if dy.dtype != dtype:
            dy = copy(dy, dtype)
        steps, batch, features = x.shape
        gate_width, hidden = w_hh.shape
        rows = steps * batch
        dstate_n = tuple(contiguous(s, dtype) for s in dstate_n)
        launch = _recurrence_launch(cell, batch, hidden, dtype, forward=False)
        d_pre_x, d_pre_h, dstate0 = kernels.backward(family.variant, launch, dy, w_hh, lengths, reverse, dstate_n,
                                                     buffers)

        d_pre_x2 = d_pre_x.reshape(rows, gate_width)
        d_pre_h2 = d_pre_h.reshape(rows, gate_width)
        dx = empty((steps, batch, features), dtype)
        matmul(d_pre_x2, w_ih, dx.reshape(rows, features))
        d_w_ih = empty((gate_width, features), dtype)
        matmul(d_pre_x2, x.reshape(rows, features), d_w_ih, trans_a=True)
        d_w_hh = empty((gate_width, hidden), dtype)
        blocks_of_rows = kernels.recurrent_inputs(family.variant, buffers, hidden)
        for start, stop, inputs in blocks_of_rows:
            target = d_w_hh if len(blocks_of_rows) == 1 else d_w_hh[start:stop]
            source = d_pre_h2 if len(blocks_of_rows) == 1 else d_pre_h2[:, start:stop]
            matmul(source, inputs.reshape(rows, hidden), target, trans_a=True)
        grads = (d_w_ih, d_w_hh, column_sum(d_pre_x2), column_sum(d_pre_h2))
        if host:
            return _to_host(dx), tuple(_to_host(s) for s in dstate0), tuple(_to_host(g) for g in grads)
        return dx, dstate0, grads


# ------------------------------------------------------------------ signatures (PTX checks)


def kernel_signatures(dtype, batch_tile=2, matmul_block=16, matmul_work=4):
    """``(name, python function, argument types)`` of every kernel as the backend launches it.

    For ``numba.cuda.compile_ptx``, which type-checks and compiles a kernel for a
    given compute capability without a GPU (the simulator checks logic, not types).
    The types come from each kernel's one declaration of its parameters
    (:mod:`numrnn.backends.cuda.common`): strided arguments (``y`` and ``dy`` views,
    column slices in the Cho GRU's weight gradient) have layout ``"A"``, the rest ``"C"``.
    """
    declared = []
    for kernels in FAMILY_KERNELS.values():
        declared += kernels.signatures(dtype, batch_tile)
    declared += linalg_signatures(dtype, matmul_block, matmul_work)
    declared += elementwise_signatures()
    return [(label, kernel.py_func, argtypes(params, dtype)) for label, kernel, params in declared]
