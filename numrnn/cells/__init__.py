"""Cell math, written once as scalar functions.

Each module holds one cell family: its equations (in the docstring), its
PyTorch-compatible weight layout (gate order, number of gates) and plain scalar
Python functions for the pointwise forward and backward passes.  The functions
are ordinary Python, so tests can call them directly; the backends compile them
(``@njit`` for the CPU, ``cuda.jit(device=True)`` for the GPU) without a second
copy of any formula.
"""

from numrnn.cells import activations, gru, lstm, rnn

#: Number of stacked gate blocks in ``weight_ih`` / ``weight_hh`` per cell mode.
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3, "gru_reset_before": 3}

#: Number of state arrays per cell mode: (h, c) for the LSTM, h for the others.
STATE_SIZES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 2, "gru": 1, "gru_reset_before": 1}

__all__ = ["GATES", "STATE_SIZES", "activations", "gru", "lstm", "rnn"]
