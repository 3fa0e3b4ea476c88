"""The recurrent layers' old import path: ``from numrnn.layers import LSTM`` keeps working.

The layers live in :mod:`numrnn.nn.recurrent` (configuration, parameters, checks) and
their stack driver in :mod:`numrnn.nn.stack`.
"""

from numrnn.nn.recurrent import GRU, LSTM, RNN, RNNBase

__all__ = ["RNN", "LSTM", "GRU", "RNNBase"]
