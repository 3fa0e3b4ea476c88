r"""Building blocks for your own models: a dense head, a way to stack modules, and the module tree.

* :class:`Module` (:mod:`numrnn.nn.module`): the base class, with named children (attributes or
  :meth:`~Module.add_module`) from which ``named_parameters()``, ``params``, ``grads``,
  ``train()``/``eval()``, ``zero_grad()``, ``state_dict()``/``load_state_dict()`` and ``to(dtype)``
  derive, with PyTorch's dotted names; :class:`no_grad`, in which forward saves nothing for
  backward.
* :class:`Linear`: :math:`y = x W^T + b` over the last axis, with PyTorch's names ``weight``
  (out, in) and ``bias`` (out,) and PyTorch's initialisation U(-1/sqrt(in), 1/sqrt(in)).
* :class:`Embedding`: a lookup table of vectors indexed by integers (PyTorch's ``weight``, N(0, 1)
  initialisation and ``padding_idx``), with a deterministic scatter-add backward.
* :class:`LayerNorm`: normalisation over the trailing ``normalized_shape`` axes, with ``weight``
  and ``bias`` as PyTorch.
* :class:`Dropout` (seeded inverted dropout, active in training mode only), :class:`Flatten`,
  and the activations :class:`Tanh`, :class:`ReLU` and :class:`Sigmoid`.
* :class:`RNN`, :class:`LSTM`, :class:`GRU` (:mod:`numrnn.nn.recurrent`): the recurrent layers, also
  ``numrnn.LSTM`` etc., as ``torch.nn.LSTM``.
* :class:`LastStep`: keep the last timestep of a sequence, (T, B, F) -> (B, F), or (B, T, F) ->
  (B, F) with ``batch_first=True``.
* :class:`Sequential`: run modules one after the other; its :attr:`~Sequential.params` and
  :attr:`~Sequential.grads` merge those of its modules under ``"{name}.{parameter}"`` keys (the
  arrays themselves, not copies; names ``"0"``, ``"1"``, ... or a dict's keys), so one optimiser
  trains the whole stack.

Every module has the same small interface as the recurrent layers: ``params``, ``grads``,
``zero_grad()``, ``__call__``/``forward``, ``backward``, ``state_dict()``, ``load_state_dict()``,
``train()``, ``eval()`` and ``config()``.  As in the recurrent layers (and PyTorch), each forward
supports one backward: a second ``backward()`` raises ``RuntimeError``.

Examples
--------
>>> import numpy as np, numrnn
>>> from numrnn import nn
>>> model = nn.Sequential(numrnn.GRU(1, 8, seed=0), nn.LastStep(), nn.Linear(8, 3, seed=1))
>>> out = model(np.zeros((20, 4, 1)))            # (T, B, I) -> (B, 3)
>>> dx = model.backward(np.ones_like(out))       # gradients accumulate in model.grads
>>> sorted(model.params)[:2]
['0.bias_hh_l0', '0.bias_ih_l0']
"""

from __future__ import annotations

from numrnn.nn.activations import ReLU, Sigmoid, Tanh
from numrnn.nn.containers import Sequential, module_from_spec, module_spec
from numrnn.nn.dropout import Dropout
from numrnn.nn.embedding import Embedding
from numrnn.nn.linear import Linear
from numrnn.nn.module import Module, is_grad_enabled, no_grad
from numrnn.nn.normalization import LayerNorm
from numrnn.nn.recurrent import GRU, LSTM, RNN
from numrnn.nn.reshape import Flatten, LastStep
from numrnn.nn.cells import GRUCell, LSTMCell, RNNCell

__all__ = [
    "Module",
    "no_grad",
    "is_grad_enabled",
    "Linear",
    "Embedding",
    "LayerNorm",
    "Dropout",
    "Flatten",
    "Tanh",
    "ReLU",
    "Sigmoid",
    "LastStep",
    "Sequential",
    "RNN",
    "LSTM",
    "GRU",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "module_spec",
    "module_from_spec",
]
