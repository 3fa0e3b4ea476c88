r"""CUDA backend: ``@cuda.jit`` kernels for one layer-direction of each cell family.

Same interface, conventions and results as :mod:`numrnn.backends.cpu` (read its
docstring: ``lengths``, reverse direction, saved buffers indexed by time and zero
where inactive).  The pointwise math is the scalar functions of
:mod:`numrnn.cells` compiled as device functions by :func:`numrnn._jit.cuda_device`;
no formula is written here.

Design of the recurrence: blocks own a batch slice
-------------------------------------------------
One launch runs the whole sequence of one layer-direction.  The batch is cut into
tiles of ``batch_tile`` sequences and each block owns one tile for all timesteps;
its threads own hidden units ``j = tid, tid + threads, ...`` and loop over time
with block barriers (``cuda.syncthreads``) only:

* forward, per step: every thread computes, for its units and every sequence of
  the tile, all gate pre-activations ``pre_x[t] + W_hh h`` (``gates x batch_tile``
  accumulators in registers, so each weight read serves the whole tile), applies
  the cell's pointwise function and writes the new ``h`` into the other half of a
  double buffer in shared memory: one barrier per step (two for the GRU in its
  Cho form, whose candidate needs ``r * h`` first);
* backward, per step: the pointwise backward of every unit, then the recurrent
  product ``dh = dA W_hh`` from the gate gradients kept in shared memory: two
  barriers per step (three for the Cho GRU).

State that only its owner thread touches (``c``, ``dh``, ``dc``, GRU scratch)
lives in the global output arrays (``c_n``, ``dh0``, ``dc0``); what other threads
read (``h``, the gate gradients) lives in dynamic shared memory.  Input
projections (``x W_ih^T + b``) before the time loop and ``dx``, the weight
gradients and the bias gradients after it are tiled shared-memory matrix products
and column sums over all ``T*B`` rows.

Why this design and not a persistent kernel with a grid-wide barrier per step
(``cuda.cg.this_grid().sync()``, units split across blocks): it needs no
cooperative launch and no co-residency of the whole grid, it works for any batch
size, and -- decisive for correctness -- it runs under Numba's CUDA simulator,
which executes blocks one after another and so cannot run a grid barrier or any
other cross-block wait.  Every line of the recurrence is therefore tested without
a GPU.  Its limits, to be measured on a device (``asv_benchmarks/gpu_check.py``):

* every block reads all of ``W_hh`` (``G*H x H``) every step.  That is cheap
  while the matrix stays in the SM's L1 cache (H up to about 64 in float32) and
  is bound by L2 bandwidth beyond, where a grid-synchronised kernel keeping a
  slice of ``W_hh`` per SM would win;
* parallelism is ``ceil(B / batch_tile)`` blocks: a small batch uses few SMs;
* the shared memory per block (``2 * batch_tile * H`` values forward,
  ``G * batch_tile * H`` backward) must fit in ``CONFIG.max_shared_bytes``, which
  bounds H (about 1500 in float64 and 3000 in float32 for the LSTM with the
  default 48 KiB); a larger layer raises ``ValueError``.

Arrays: NumPy arrays or objects with ``__cuda_array_interface__`` are accepted
everywhere; results come back as NumPy when the output buffer ``y`` (forward) or
``dy`` (backward) was NumPy, else as Numba device arrays.  What forward saves stays
on the device.  Launch sizes come from :mod:`numrnn.backends.cuda.config`.  The
stack driver (:mod:`numrnn.nn.stack`) keeps everything between layers on the device
too, through the array ops of :mod:`numrnn.backends.cuda.arrays`.

Modules: :mod:`~numrnn.backends.cuda.rnn`, :mod:`~numrnn.backends.cuda.lstm` and
:mod:`~numrnn.backends.cuda.gru` (each family's kernels, their declared parameters
and saved record), :mod:`~numrnn.backends.cuda.linalg` (matrix product, column
sums), :mod:`~numrnn.backends.cuda.elementwise` (elementwise kernels and device
array helpers), :mod:`~numrnn.backends.cuda.backend` (:class:`CUDABackend`,
dispatching by :func:`numrnn.cells.cell_family`), :mod:`~numrnn.backends.cuda.config`
(launch sizes) and :mod:`~numrnn.backends.cuda.common` (parameter declarations).

Precision: device functions are compiled without fast-math (:mod:`numrnn._jit`),
so float32 ``tanh`` is libdevice's rather than the ``tanh.approx.f32``
instruction; ``tests/test_cuda_ptx.py`` checks that no kernel uses approximate
tanh or division.
"""

from __future__ import annotations

from numba import cuda  # noqa: F401  (numrnn.backends.cuda.cuda: the module the array ops launch with)

from numrnn.backends.cuda.backend import (  # noqa: F401
    FAMILY_KERNELS,
    SIMULATOR,
    CUDABackend,
    check_hidden_size,
    kernel_signatures,
    name,
)
from numrnn.backends.cuda.elementwise import (  # noqa: F401
    _blocks,
    _placeholder,
    accumulate,
    add_3d,
    as_device,
    blocks,
    combine_bias,
    contiguous,
    copy,
    copy_1d,
    copy_2d,
    copy_3d,
    count_nonfinite,
    empty,
    fill_3d,
    fill_zero,
    is_c_contiguous,
    is_device_array,
    multiply_3d,
    nonfinite_count,
    zeros,
)
from numrnn.backends.cuda.linalg import column_partial_sums, column_sum, column_sums, matmul, matmul_kernel  # noqa: F401
