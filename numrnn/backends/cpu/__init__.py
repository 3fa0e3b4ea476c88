r"""CPU backend: ``@njit`` drivers for one layer-direction of each cell family.

Every driver runs a whole sequence in one call, so no Python runs per timestep:

* the matrix products are built from register tiles written with explicit SIMD
  lanes (:mod:`numrnn.backends.cpu.simd`), on weights packed once per call into
  contiguous panels (:func:`step_weights`, :func:`matmul_rows`): faster here than
  this machine's BLAS (README, Performance), whose dispatch and packing dominate the
  small per-step products.  BLAS remains for what does not fit the tiles (fewer
  columns than one vector, many rows on unpacked weights) and for the weight
  gradients over all timesteps;
* the input projection of all timesteps is one product ``(T*B, I) @ (I, G*H)``
  with the biases added on the way, rows split in fixed chunks run in parallel;
* the recurrence is split over blocks of the batch, run in parallel with
  ``prange`` (one block per thread); each block owns its rows for the *whole*
  sequence, so threads never synchronise between timesteps.  Per timestep a
  block does one recurrent product ``(rows, H) @ (H, G*H)`` for all gates
  (:func:`step_product`), then one fused pointwise pass built from the scalar cell
  functions of :mod:`numrnn.cells` (the LSTM's backward pass compiles them for
  SIMD lanes, as LLVM leaves that loop scalar).  Nothing is allocated inside the
  time loop;
* in backward, the weight gradients are matrix products over all timesteps after
  the time loop: ``dW_ih = dA_x^T X``, ``dW_hh = dA_h^T H_prev`` and the bias sums,
  as partial sums over fixed row chunks in one parallel pass (fewer chunks where
  their partial sums would pass :data:`PARTIAL_SUMS_MAX_BYTES`);
* BLAS runs single-threaded inside these calls (:func:`single_threaded_blas`):
  OpenBLAS's own thread pool on top of Numba's made 2-core steps several times
  slower.  The chunks of the big products and reductions depend on the shapes
  only, and the per-step products compute every row the same way whichever
  block it falls in (:func:`step_product`), so although the batch blocks follow
  the thread count, results are the same bits for any thread count;
* what forward saves and backward's scratch live in caller-owned workspaces
  reused across calls (:class:`CPUBackend`), so a training step allocates no
  large array; the activated gates overwrite their pre-activations, the LSTM's
  and GRU's gate gradients overwrite their saved gates, and what backward can
  read from other saved arrays (the LSTM's ``c_{t-1}``, the RNN's outputs) is
  not saved twice.

The streaming ``step()`` is the other kind of call: one timestep, small B, where
the cost of calling compiled code from Python is as large as the step itself.
:func:`step_kernel` and :func:`stack_step_kernel` do the border checks and every
layer's step in one compiled call, compiled for the layer's dtype only; products
in dot form on the weights as stored (:func:`~numrnn.backends.cpu.simd.matvec_into`);
the new state written into one array the caller made.

Measured choices and their numbers are in the README's Performance section.

Conventions shared by every driver (arrays are contiguous and of one float
dtype; validation happened at the API):

``x`` (T, B, I)
    Time-major input.
``lengths`` (B,) int64
    Valid length of each sequence, in ``[1, T]``.  At step ``s`` sequence ``b``
    is active when ``s < lengths[b]``; it then processes time index
    ``t = s`` (forward) or ``t = lengths[b] - 1 - s`` (``reverse=True``).
    Inactive sequences keep their state and write no output.
``blocks`` int
    Number of batch blocks run in parallel (:func:`batch_blocks`).
``y`` (T, B, H)
    Contiguous output buffer, pre-filled with zeros; drivers write active
    positions only.
Saved arrays are indexed by time ``t`` (zero where inactive), so that the
weight gradients are plain matrix products over ``T*B`` rows.
"""

from __future__ import annotations

import numpy as np

from numrnn.backends.cpu import first_use, gru, lstm, numpy_kernels, rnn
from numrnn.backends.host_arrays import HostArrays
from numrnn.cells import cell_family

from numrnn.backends.cpu.linalg import (  # noqa: F401  (the names importers use)
    PACKED_ROW_BLOCK,
    PARALLEL_PRODUCT_MIN_WORK,
    SIMD_PRODUCT_MAX_BYTES,
    SIMD_PRODUCT_MAX_ROWS,
    SIMD_PRODUCT_MAX_WORK,
    column_sums,
    copy_into,
    input_gradient,
    matmul_nt_into,
    matmul_rows,
    matmul_tn,
    product_into,
    project_inputs,
    step_product,
    step_projections,
    step_weights,
    weight_gradients,
    zero_padding,
)
from numrnn.backends.cpu.threads import (  # noqa: F401  (the names importers use)
    PARTIAL_CHUNK_MIN_ROWS,
    PARTIAL_SUMS_MAX_BYTES,
    PRODUCT_CHUNKS,
    batch_blocks,
    block_bounds,
    partial_chunks,
    single_threaded_blas,
    sum_partials,
    time_index,
)
from numrnn.backends.cpu.rnn import (  # noqa: F401  (the names importers use)
    rnn_backward,
    rnn_backward_rows,
    rnn_cell_rows,
    rnn_forward,
    rnn_forward_rows,
    rnn_relu,
    rnn_relu_backward,
    rnn_step,
    rnn_tanh,
    rnn_tanh_backward,
)
from numrnn.backends.cpu.lstm import (  # noqa: F401  (the names importers use)
    lstm_backward,
    lstm_backward_rows,
    lstm_backward_units,
    lstm_cell_rows,
    lstm_forward,
    lstm_forward_rows,
    lstm_pointwise,
    lstm_pointwise_backward,
    lstm_step,
    lstm_step_into,
    lstm_step_units,
)
from numrnn.backends.cpu.gru import (  # noqa: F401  (the names importers use)
    gru_backward,
    gru_backward_rows,
    gru_candidate_reset_after,
    gru_candidate_reset_after_backward,
    gru_candidate_reset_before,
    gru_candidate_update,
    gru_candidate_update_backward,
    gru_fold_biases,
    gru_forward,
    gru_forward_rows,
    gru_gates,
    gru_gates_backward,
    gru_gates_rows,
    gru_reset_hidden,
    gru_reset_hidden_backward,
    gru_step,
    gru_update_rows,
)
from numrnn.backends.cpu.step import (  # noqa: F401  (the names importers use)
    STEP_CELLS,
    STEP_KERNELS,
    all_finite,
    checked_stack_step,
    checked_step,
    stack_step_kernel,
    step_kernel,
)

name = "cpu"


#: ``CellFamily.kernel`` -> that kernel family's CPU calls, filled from the registry: each
#: family names its CPU module (``CellFamily.backend_modules``), whose ``KERNELS`` they are.
KERNELS = {}


def family_kernels(family):
    """The compiled :class:`~numrnn.backends.protocol.FamilyKernels` of ``family`` on the CPU."""
    kernels = KERNELS.get(family.kernel)
    if kernels is None:
        kernels = KERNELS[family.kernel] = family.backend_module("cpu").KERNELS
    return kernels


def kernels_now(family, dtype, part="layers"):
    """The kernels that run ``family`` in ``dtype`` now: the compiled ones, or, on first
    use before they are compiled, the NumPy ones (:mod:`numrnn.backends.cpu.first_use`;
    ``part`` "layers" for forward and backward, "step" for :meth:`CPUBackend.layer_step`)."""
    if first_use.ready(family.kernel, dtype, part):
        return family_kernels(family)
    return numpy_kernels.KERNELS[family.kernel]


class CPUBackend(HostArrays):
    """Runs one layer-direction at a time with the ``@njit`` drivers above.

    The layer classes (:mod:`numrnn.nn.recurrent`, through :mod:`numrnn.nn.stack`) talk to a backend only through
    :meth:`layer_forward` and :meth:`layer_backward`; arrays are NumPy, C-contiguous
    and of the layer's dtype.
    """

    name = name
    uses_workspace = True

    def compute_context(self):
        """Context in which the layers call this backend (single-threaded BLAS)."""
        return single_threaded_blas()

    def layer_forward(self, cell, x, lengths, reverse, weights, state0, y, workspace=None):
        """Run a sequence; write outputs into ``y`` and return ``(state_n, saved)``.

        Parameters
        ----------
        cell : {"rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before"}
        x : ndarray, shape (T, B, I)
        lengths : ndarray of int64, shape (B,)
        reverse : bool
        weights : tuple of ndarray
            ``(weight_ih (G*H, I), weight_hh (G*H, H), bias_ih (G*H,), bias_hh (G*H,))``.
        state0 : tuple of ndarray, each (B, H)
            ``(h0,)``, or ``(h0, c0)`` for the LSTM.
        y : ndarray, shape (T, B, H)
            Zero-filled output buffer.
        workspace : dict, optional
            Buffers kept between calls by the caller (one dict per layer-direction):
            what forward saves and backward's scratch are reused from it when the
            shapes match, which spares the allocator and the page faults of fresh
            large arrays (about a quarter of a medium LSTM training step).  A new
            forward overwrites what the previous one saved in the same workspace.

        Returns
        -------
        state_n : tuple of ndarray, each (B, H)
        saved : tuple
            Whatever :meth:`layer_backward` needs.
        """
        family = cell_family(cell)
        steps, batch = x.shape[:2]
        buffer = _Workspace(workspace, (steps, batch), x.dtype)
        kernels = kernels_now(family, x.dtype)
        state_n, buffers = kernels.forward(family.variant, x, lengths, reverse, weights, state0, y, buffer, batch_blocks(batch))
        return state_n, (family, kernels, x, lengths, reverse, weights[0], weights[1], buffers)

    def layer_step(self, cell, x, weights, state0):
        """One timestep for every row, saving nothing.

        Parameters
        ----------
        cell : str
            As in :meth:`layer_forward`.
        x : ndarray, shape (B, I)
        weights : tuple of ndarray
            As in :meth:`layer_forward`.
        state0 : tuple of ndarray, each (B, H)

        Returns
        -------
        state : tuple of ndarray, each (B, H)
            The new state; ``state[0]`` is also the layer's output.
        """
        family = cell_family(cell)
        # compiled with the step() kernels (the stack's step runs those once they are ready)
        return kernels_now(family, x.dtype, "step").step(family.variant, x, weights, state0)

    def step_kernel(self, dtype, layers=None):
        """The streaming fast path: :func:`step_kernel` (``layers`` None, a
        single layer with biases) or :func:`stack_step_kernel`; None on first use
        before it is compiled (:func:`first_use.step_ready`)."""
        if not first_use.step_ready(dtype):
            return None
        return step_kernel(dtype) if layers is None else stack_step_kernel(dtype, layers)

    def layer_backward(self, saved, dy, dstate_n):
        """Backward of one :meth:`layer_forward` call; it may consume ``saved``
        (the gradients overwrite the saved gates, or the RNN's saved inputs), so call it once.

        Returns ``(dx (T, B, I), dstate0 (tuple of (B, H)), (d_weight_ih, d_weight_hh,
        d_bias_ih, d_bias_hh))``.
        """
        family, kernels, x, lengths, reverse, w_ih, w_hh, buffers = saved  # the forward's kernels, compiled or NumPy
        return kernels.backward(family.variant, x, lengths, reverse, w_ih, w_hh, buffers, dy, dstate_n, batch_blocks(x.shape[1]))


class _Workspace:
    """``buffer(name, features)``: a (T, B, features) array from ``store`` (a dict kept
    by the caller), reused when its shape and dtype match, else newly allocated there."""

    def __init__(self, store, leading, dtype):
        self.store = {} if store is None else store
        self.leading = leading
        self.dtype = dtype

    def __call__(self, name, features):
        shape = self.leading + (features,)
        array = self.store.get(name)
        if array is None or array.shape != shape or array.dtype != self.dtype:
            array = np.empty(shape, dtype=self.dtype)
            self.store[name] = array
        return array
