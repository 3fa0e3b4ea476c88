"""Launch configuration of the CUDA backend, in one place.

Every kernel launch of :mod:`numrnn.backends.cuda` reads its sizes from
:data:`CONFIG`, so tests can shrink them (for example
``monkeypatch.setattr(CONFIG, "threads_per_block", 2)``) and make tiny inputs span
several blocks.  Values that are compile-time constants of a kernel (the batch
tile and the matrix-product tile) select a separately compiled kernel, so changing
them at run time is safe.

This module imports nothing from numba and can be read without numba-cuda.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class LaunchConfig:
    """Sizes used when launching the CUDA kernels.

    Attributes
    ----------
    threads_per_block : int
        Upper bound on the threads of one recurrence block (capped at
        :data:`MAX_THREADS`).  A block uses
        ``min(threads_per_block, H rounded up to a warp)`` threads; each thread
        owns hidden units ``j = tid, tid + threads, ...``.
    batch_tile : int or None
        Sequences per recurrence block (a compile-time constant of the kernel:
        every thread keeps ``gates x batch_tile`` accumulators in registers, so
        one weight load serves ``batch_tile`` sequences).  ``None`` chooses it per
        call with :func:`choose_batch_tile`.
    max_batch_tile : int
        Largest batch tile :func:`choose_batch_tile` may pick (a power of two).
    sm_count : int or None
        Streaming multiprocessors to plan for; ``None`` asks the device.
    l1_weight_bytes : int
        Recurrent weights up to this size are assumed to stay in each SM's L1
        cache, so the batch tile is chosen to fill every SM; larger weights are
        streamed from L2 every step, so fewer, wider blocks are preferred.
    max_shared_bytes : int
        Dynamic shared memory one block may ask for (48 KiB needs no opt-in).
    matmul_block : int
        Threads per side of a matrix-product block (``matmul_block**2`` threads,
        at most :data:`MAX_THREADS`).
    matmul_work : int
        Outputs per thread per side; a block computes a square tile of
        ``matmul_block * matmul_work`` outputs per side and steps through the
        reduction dimension ``matmul_block`` at a time.
    elementwise_threads : int
        Threads per block of the elementwise kernels (fill, copy, scale, add;
        capped at :data:`MAX_THREADS`).
    reduce_rows_per_chunk : int
        Rows summed by one thread of the column-sum (bias gradient) kernel before
        the partial sums are added up by a second kernel.
    """

    threads_per_block: int = 256
    batch_tile: int | None = None
    max_batch_tile: int = 8
    sm_count: int | None = None
    l1_weight_bytes: int = 96 * 1024
    max_shared_bytes: int = 48 * 1024
    matmul_block: int = 16
    matmul_work: int = 4
    elementwise_threads: int = 256
    reduce_rows_per_chunk: int = 128


#: The configuration every launch reads.
CONFIG = LaunchConfig()

WARP = 32

#: Hard cap on threads per block for every kernel.  A thread uses at most 255
#: registers, and 255 x 256 fits the 64 Ki registers one block may use, so no
#: launch can fail for lack of registers whatever the compiler allocates.
MAX_THREADS = 256


def recurrence_threads(hidden):
    """Threads of one recurrence block for ``hidden`` units."""
    limit = max(1, min(MAX_THREADS, int(CONFIG.threads_per_block)))
    warps = -(-hidden // WARP) * WARP
    return max(1, min(limit, warps))


def choose_batch_tile(batch, weight_bytes, sm_count):
    """Sequences per recurrence block (a power of two, at most ``max_batch_tile``).

    Each block reads the whole recurrent weight matrix every step.  When it fits
    in L1 (``weight_bytes <= l1_weight_bytes``) that is cheap, and the tile is the
    smallest that keeps the number of blocks within one per SM.  Otherwise every
    block streams it from L2, and the tile is the smallest that keeps the blocks
    within a quarter of the SMs, trading parallelism for weight reuse.
    """
    if CONFIG.batch_tile is not None:
        return max(1, int(CONFIG.batch_tile))
    sms = max(1, int(sm_count))
    target = sms if weight_bytes <= CONFIG.l1_weight_bytes else max(1, sms // 4)
    tile = 1
    while tile < CONFIG.max_batch_tile and -(-batch // tile) > target:
        tile *= 2
    return min(tile, max(1, int(CONFIG.max_batch_tile)))


def matmul_shape():
    """``(block, work)`` of the matrix-product kernel, with ``block**2 <= MAX_THREADS``."""
    block = max(1, int(CONFIG.matmul_block))
    while block * block > MAX_THREADS:
        block //= 2
    return block, max(1, int(CONFIG.matmul_work))


def elementwise_threads():
    """Threads per block of the elementwise kernels."""
    return max(1, min(MAX_THREADS, int(CONFIG.elementwise_threads)))
