"""CPU kernels of :mod:`numrnn.nn`: the scatter-add of :class:`numrnn.nn.Embedding`'s backward.

The kernel is serial on purpose: rows of ``dy`` that hit the same embedding row are summed in
a fixed order (the order of their positions in the input), so the gradient has the same bits
for any number of threads.
"""

from __future__ import annotations

import numpy as np

from numrnn._jit import cpu_kernel


@cpu_kernel
def embedding_scatter_add(grad, indices, order, dy, padding_idx):
    """``grad[indices[k]] += dy[k]`` for every ``k``, skipping rows equal to ``padding_idx``.

    Parameters
    ----------
    grad : ndarray, shape (num_embeddings, embedding_dim)
        Gradient of the embedding table, accumulated in place.
    indices : int64 ndarray, shape (n,)
        Row of ``grad`` for each row of ``dy``, all in ``[0, num_embeddings)``.
    order : int64 ndarray, shape (n,)
        A stable argsort of ``indices``: the rows of ``dy`` that hit one row of ``grad`` are
        consecutive in it, in their input order.
    dy : ndarray, shape (n, embedding_dim)
        Gradient of the looked-up rows (same dtype as ``grad``).
    padding_idx : int
        Row that receives no gradient; -1 for none.

    Notes
    -----
    The rows that hit one embedding row are summed in float64 and added to ``grad`` once, so a
    float32 gradient of a row that occurs many times is the float32 rounding of a float64 sum,
    not the drift of a long running float32 sum.
    """
    n = indices.shape[0]
    dim = grad.shape[1]
    acc = np.zeros(dim, dtype=np.float64)
    k = 0
    while k < n:
        row = indices[order[k]]
        for j in range(dim):
            acc[j] = 0.0
        while k < n and indices[order[k]] == row:
            src = order[k]
            for j in range(dim):
                acc[j] += dy[src, j]
            k += 1
        if row != padding_idx:
            for j in range(dim):
                grad[row, j] += acc[j]
