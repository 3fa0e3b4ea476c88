r"""Recurrent layers with PyTorch semantics: :class:`RNN`, :class:`LSTM`, :class:`GRU`.

Each layer holds its parameters in :attr:`~RNNBase.params`, a dict of NumPy arrays
with PyTorch's names, shapes and order (``weight_ih_l{k}``, ``weight_hh_l{k}``,
``bias_ih_l{k}``, ``bias_hh_l{k}``, with a ``_reverse`` suffix for the backward
direction), so ``{k: v.numpy() for k, v in torch_module.state_dict().items()}``
loads unchanged.  Gradients accumulate in :attr:`~RNNBase.grads` like PyTorch's
``.grad`` until :meth:`~RNNBase.zero_grad`.

Shapes (``T`` time, ``B`` batch, ``I`` input size, ``H`` hidden size, ``L`` layers,
``D`` = 2 if bidirectional else 1):

========== ==================================== ==========================
argument   shape                                notes
========== ==================================== ==========================
x          (T, B, I), or (B, T, I) batch_first  (T, I) unbatched
y          (T, B, D*H), or (B, T, D*H)          zero where ``t >= lengths[b]``
h0, h_n    (L*D, B, H)                          (L*D, H) unbatched
c0, c_n    (L*D, B, H)                          LSTM only
lengths    (B,) integers in [1, T]              as ``pack_padded_sequence``
========== ==================================== ==========================

Computation runs time-major in the layer's dtype; inputs are cast.  Every check
happens before anything is computed or stored, so a call that raises leaves the
layer exactly as it was.  This module holds configuration and checks; the
parameters' layout (names, shapes, seeding, loading, device arrays) is
:mod:`numrnn.nn.parameters`, and the loop over layers x directions x dropout is
:mod:`numrnn.nn.stack`, for every backend.
"""

from __future__ import annotations

import numpy as np

from numrnn import _validation as check
from numrnn._exclusive import ExclusiveUse
from numrnn.backends import get_backend
from numrnn.cells import STATE_SIZES, cell_family, gru_family, rnn_family
from numrnn.nn import stack
from numrnn.nn.module import NO_GRAD, Module
from numrnn.nn.parameters import StackedParameters

__all__ = ["RNN", "LSTM", "GRU", "RNNBase"]


class RNNBase(ExclusiveUse, StackedParameters, Module):
    """Shared machinery of :class:`RNN`, :class:`LSTM` and :class:`GRU`.

    Parameters
    ----------
    @layer_parameters@
    """

    _exclusive_noun = "layer"

    #: The kernel name of the layer's cell family (set by each subclass from the registry;
    #: the name, not the family, so that copies need not copy the family's math module).
    _cell = ""

    #: With the CUDA backend: return device arrays (Numba ``DeviceNDArray``, which
    #: expose ``__cuda_array_interface__``) from forward, backward and step instead
    #: of NumPy arrays.  Inputs may be device arrays either way.  Ignored on the CPU.
    device_output = False

    _step_plan = None  # set by the first validated step() for models that can take the fast path

    #: A layer has no child modules, so attributes are set without Module's child bookkeeping
    #: (forward and backward set a few per call; the params/grads setters still run).
    __setattr__ = object.__setattr__

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype=np.float32, backend="auto", seed=None):
        Module.__init__(self)
        self.input_size = check.check_positive_int(input_size, "input_size")
        self.hidden_size = check.check_positive_int(hidden_size, "hidden_size")
        self.num_layers = check.check_positive_int(num_layers, "num_layers")
        self.bias = check.check_bool(bias, "bias")
        self.batch_first = check.check_bool(batch_first, "batch_first")
        self.bidirectional = check.check_bool(bidirectional, "bidirectional")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating, np.integer)):
            raise TypeError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.dropout = float(dropout)
        self.dtype = check.check_dtype(dtype)
        self.seed = check.check_seed(seed)
        self._backend = get_backend(backend)
        self.backend_name = backend
        self._backward_ran = False  # a backward consumed what the last forward saved
        self._init_exclusive()  # forward and backward refuse a second thread (numrnn._exclusive)
        self._workspaces = {}  # backend buffers reused across calls, per layer-direction
        self.params = {}
        self._seed_generators(self.seed)
        self.grads = {name: np.zeros_like(value) for name, value in self.params.items()}

    # ------------------------------------------------------------------ structure

    @property
    def num_directions(self) -> int:
        """``D``: 2 if bidirectional else 1."""
        return 2 if self.bidirectional else 1

    @property
    def family(self):
        """The :class:`numrnn.cells.CellFamily` of the layer's cell."""
        return cell_family(self._cell)

    @property
    def cell(self) -> str:
        """Kernel name of the cell: rnn_tanh, rnn_relu, lstm, gru or gru_reset_before."""
        return self._cell

    @property
    def state_size(self) -> int:
        """Number of state arrays: 2 for the LSTM (h, c), else 1."""
        return STATE_SIZES[self._cell]

    def _pack_state(self, state):
        """The state tuple as the user sees it: the pair (h, c) for the LSTM, else h."""
        return (state[0], state[1]) if self.state_size == 2 else state[0]

    def _compute_context(self):
        return self._backend.compute_context()

    def _to_dtype(self, dtype):
        super()._to_dtype(dtype)
        self._step_plan = None  # its kernel and buffers were of the old dtype
        self._workspaces = {}

    def config(self):
        """Constructor arguments as a JSON-serialisable dict (``type(self)(**config)``)."""
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bias": self.bias,
            "batch_first": self.batch_first,
            "dropout": self.dropout,
            "bidirectional": self.bidirectional,
            "dtype": self.dtype.name,
            "backend": self.backend_name,
            "seed": self.seed,
            **self._extra_config(),
        }

    def _extra_config(self):
        return {}

    # ------------------------------------------------------------------ calls

    def forward(self, x, state=None, lengths=None):
        """Run the layer over a batch of sequences and save what backward needs.

        Parameters
        ----------
        x : array_like, shape (T, B, I), (B, T, I) if batch_first, or (T, I)
        state : None, array (L*D, B, H), or for the LSTM a pair (h0, c0)
            Initial state; None means zeros.
        lengths : array_like of int, shape (B,), optional
            Valid length of each (right-padded) sequence, in ``[1, T]``.

        Returns
        -------
        y : ndarray, shape (T, B, D*H) (or (B, T, D*H) if batch_first)
            Outputs of the last layer, zero at padded positions.
        state_n : ndarray (L*D, B, H), or the pair (h_n, c_n) for the LSTM
            State after each sequence's last valid step.
        """
        with self._exclusive("forward"):
            self._check_params()
            result = stack.forward(self, x, state, lengths)
            self._backward_ran = False
            return result

    __call__ = forward

    def backward(self, dy, dstate=None):
        """Backpropagate through the last forward call; accumulate parameter gradients.

        Computes the gradient of ``sum(y * dy) + sum(h_n * dh_n)`` (``+ sum(c_n * dc_n)``
        for the LSTM) with respect to the input, the initial state and every
        parameter, from what forward saved.

        Parameters
        ----------
        dy : array_like, same shape as ``y``
        dstate : None, array (L*D, B, H), or for the LSTM a pair (dh_n, dc_n)
            Gradient reaching the final state; None (or a None element) means zero.

        Returns
        -------
        dx : ndarray, same shape as ``x``
        dstate0 : ndarray (L*D, B, H), or the pair (dh0, dc0) for the LSTM
        """
        with self._exclusive("backward"):
            if self._saved is None:
                if self._backward_ran:
                    raise RuntimeError(
                        "backward() already ran for the last forward(): each forward supports one "
                        "backward, as in PyTorch (its buffers hold the gradients now); call forward() again"
                    )
                raise RuntimeError("backward() needs a forward() first: run the layer on an input")
            if self._saved is NO_GRAD:
                self._take_saved()  # raises: that forward ran under numrnn.nn.no_grad()
            result = stack.backward(self, dy, dstate)
            self._backward_ran = True
            return result

    def step(self, x_t, state=None):
        """Advance one timestep, for streaming inference (no dropout, nothing saved).

        Parameters
        ----------
        x_t : array_like, shape (B, I) or unbatched (I,)
        state : None, array (L, B, H), or for the LSTM a pair (h, c)
            As returned by the previous call (or zeros for None).

        Returns
        -------
        h_t : ndarray, shape (B, H) or (H,)
            Output of the top layer at this step.
        state : ndarray (L, B, H), or the pair (h, c) for the LSTM

        Notes
        -----
        Built for latency.  For a unidirectional model on a backend with a compiled
        step kernel (the CPU), ``x_t`` a (B, I) array (any strides) or an unbatched
        (I,) array of the layer's dtype, and ``state`` what the previous call
        returned, Python checks only types, and one compiled call checks shapes and
        finiteness and does the step of every layer
        (:func:`numrnn.backends.cpu.step_kernel`, or ``stack_step_kernel`` for
        several layers or no biases).  Any other call (the first, another dtype, a
        state made by slicing), or a failed check, takes the validated path
        (:func:`numrnn.nn.stack.step`), which checks every argument, converts what it
        can and raises the error naming the argument otherwise.
        """
        plan = self._step_plan
        if plan is not None and state is not None and type(x_t) is np.ndarray:
            # inline, not a helper method: a further call costs about a tenth of the step
            kernel, cell, weights, state_size, layers, hidden, dtype = plan
            batched = x_t.ndim == 2
            if x_t.dtype is dtype and (batched or x_t.ndim == 1):
                params = self._params  # Module's own-parameter dict (the params property, without its lookup)
                try:
                    if state_size == 2:
                        if type(state) is not tuple:
                            raise TypeError("an LSTM state is a tuple (h, c)")
                        h0, c0 = state
                    else:
                        h0 = c0 = state
                    if not batched:  # (I,) and (L, H) in, as (1, I) and (L, 1, H) views
                        x_t, h0, c0 = x_t[None], h0[:, None], c0[:, None]
                    new_state = np.empty((state_size, layers, len(x_t), hidden), dtype)
                    if type(weights) is tuple:  # one layer with biases: the four names
                        name_ih, name_hh, name_bias_ih, name_bias_hh = weights
                        kernel(cell, x_t, params[name_ih], params[name_hh], params[name_bias_ih],
                               params[name_bias_hh], h0, c0, new_state)
                    else:
                        weights_ih, weights_hh, biases = weights(params)
                        kernel(cell, x_t, weights_ih, weights_hh, biases, h0, c0, new_state)
                except (TypeError, ValueError, IndexError):  # not the fast path's kind of call
                    pass
                else:
                    if not batched:
                        new_state = new_state[:, :, 0]
                    h = new_state[0]
                    return h[layers - 1], ((h, new_state[1]) if state_size == 2 else h)
        self._check_params()
        return stack.step(self, x_t, state)

    def _check_step_input(self, x_t):
        """Full validation of ``x_t`` for :meth:`step`: returns ((B, I) array, batched)."""
        return stack.check_step_input(self, x_t)

class RNN(RNNBase):
    r"""Elman RNN, :math:`h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})` (as ``torch.nn.RNN``).

    Parameters
    ----------
    @layer_parameters@
    nonlinearity : {"tanh", "relu"}, default "tanh"
        The activation :math:`\phi` (keyword or fourth positional argument).

    Examples
    --------
    >>> rnn = RNN(3, 5, seed=0)
    >>> y, h_n = rnn(np.ones((7, 2, 3)))
    >>> y.shape, h_n.shape
    ((7, 2, 5), (1, 2, 5))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", **kwargs):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self._cell = rnn_family(nonlinearity).name
        super().__init__(input_size, hidden_size, num_layers, **kwargs)

    def _extra_config(self):
        return {"nonlinearity": self.nonlinearity}


class LSTM(RNNBase):
    r"""Long short-term memory layer (as ``torch.nn.LSTM``; equations in :mod:`numrnn.cells.lstm`).

    .. math::

        i, f, g, o &= \sigma(a_i), \sigma(a_f), \tanh(a_g), \sigma(a_o), \qquad
            a = W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh} \\
        c_t &= f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh(c_t)

    State is the pair ``(h, c)``, each (L*D, B, H); weights stack the gates in PyTorch's
    order (i, f, g, o): ``weight_ih_l{k}`` (4H, I or D*H), ``weight_hh_l{k}`` (4H, H).

    Parameters
    ----------
    @layer_parameters@

    Examples
    --------
    >>> lstm = LSTM(3, 5, seed=0)
    >>> y, (h_n, c_n) = lstm(np.ones((7, 2, 3)))
    >>> dx, (dh0, dc0) = lstm.backward(np.ones_like(y))
    """

    _cell = cell_family("lstm").name


class GRU(RNNBase):
    r"""Gated recurrent unit layer (as ``torch.nn.GRU``; equations in :mod:`numrnn.cells.gru`).

    Parameters
    ----------
    @layer_parameters@
    reset_after : bool, default True
        True: PyTorch/cuDNN form, :math:`n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn}))`.
        False: Cho et al. (2014), :math:`n = \tanh(W_{in} x + b_{in} + W_{hn} (r \odot h) + b_{hn})`,
        with the same parameter names and shapes (keyword or fourth positional argument).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, reset_after=True, **kwargs):
        self.reset_after = check.check_bool(reset_after, "reset_after")
        self._cell = gru_family(self.reset_after).name
        super().__init__(input_size, hidden_size, num_layers, **kwargs)

    def _extra_config(self):
        return {"reset_after": self.reset_after}


# Every layer's docstring lists every parameter it takes (help(numrnn.LSTM) shows them), from
# one text: RNNBase's constructor parameters.
_LAYER_PARAMETERS = """\
    input_size : int
        Features per timestep, ``I``.
    hidden_size : int
        Units per layer and direction, ``H``.
    num_layers : int, default 1
        Stacked layers, ``L``; layer ``k > 0`` reads the output of layer ``k - 1``.
    bias : bool, default True
        Whether to use ``bias_ih`` and ``bias_hh``.
    batch_first : bool, default False
        Whether ``x``, ``y``, ``dy`` and ``dx`` are (B, T, F) instead of (T, B, F).
        States are always (L*D, B, H).
    dropout : float in [0, 1), default 0
        Dropout probability on the outputs of every layer but the last, in training
        mode only.  Masks are drawn from a generator seeded by ``seed``.
    bidirectional : bool, default False
        Run a second direction over the reversed sequence and concatenate outputs.
    dtype : {np.float32, np.float64}, default np.float32
        Dtype of parameters and computation.
    backend : {"auto", "cpu", "cuda"}, default "auto"
        Where kernels run (see :func:`numrnn.backends.get_backend`).
    seed : int or None
        Seed for the initial weights, ``U(-1/sqrt(H), 1/sqrt(H))`` as in PyTorch, and
        for dropout masks: an integer in ``[0, 2**63)``.  None draws one, which is
        kept in :attr:`seed` and :meth:`config`, so the saved config of any layer
        rebuilds the same initial weights."""

for _layer in (RNNBase, RNN, LSTM, GRU):
    _layer.__doc__ = _layer.__doc__.replace("    @layer_parameters@", _LAYER_PARAMETERS)
del _layer
