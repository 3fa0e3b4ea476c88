"""numrnn: Numba-accelerated recurrent neural networks with exact BPTT.

Layers (:class:`RNN`, :class:`LSTM`, :class:`GRU`) follow PyTorch's semantics and
parameter layout; arrays in and out are NumPy.
"""

from numrnn.backends import get_backend
from numrnn.layers import GRU, LSTM, RNN

__version__ = "0.1.0"

__all__ = ["GRU", "LSTM", "RNN", "get_backend", "__version__"]
