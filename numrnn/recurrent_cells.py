"""The trainable cells' old import path: :mod:`numrnn.nn.cells` (classes) and
:mod:`numrnn.nn.cell_kernels` (their one-step kernels) under their former names."""

from __future__ import annotations

from numrnn.nn.cell_kernels import *  # noqa: F401,F403 - the kernels and BLAS_MIN_ROWS, as before
from numrnn.nn.cell_kernels import __all__ as _kernel_names
from numrnn.nn.cells import CellBase, GRUCell, LSTMCell, RNNCell

__all__ = ["CellBase", "RNNCell", "LSTMCell", "GRUCell", *_kernel_names]
