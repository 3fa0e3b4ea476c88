"""numrnn: Numba-accelerated recurrent neural networks with exact BPTT.

Layers (:class:`RNN`, :class:`LSTM`, :class:`GRU`) follow PyTorch's semantics and
parameter layout; arrays in and out are NumPy.  Building blocks for training
live in :mod:`numrnn.nn`, :mod:`numrnn.losses`, :mod:`numrnn.optim` and
:mod:`numrnn.train`; forecasting in :mod:`numrnn.forecast` (:class:`Forecaster`, :class:`GlobalForecaster`),
:mod:`numrnn.metrics` and :mod:`numrnn.datasets`; conversion to and from PyTorch
modules and Keras weights in :mod:`numrnn.convert`.
"""

from numrnn import convert, datasets, forecast, io, losses, metrics, nn, optim, train
from numrnn.backends import get_backend
from numrnn.forecast import Forecaster, GlobalForecaster
from numrnn.nn.module import no_grad
from numrnn.nn.recurrent import GRU, LSTM, RNN
from numrnn.onnx import to_onnx
from numrnn.warmup import warmup

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Forecaster",
    "GlobalForecaster",
    "convert",
    "datasets",
    "forecast",
    "get_backend",
    "io",
    "losses",
    "metrics",
    "nn",
    "no_grad",
    "optim",
    "to_onnx",
    "train",
    "warmup",
    "__version__",
]
