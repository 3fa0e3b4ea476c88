r"""Trainable single-step cells: :class:`RNNCell`, :class:`LSTMCell` and :class:`GRUCell`.

They have PyTorch's names, shapes and call form (``torch.nn.RNNCell``, ``LSTMCell``,
``GRUCell``) and are reachable as ``numrnn.nn.RNNCell`` etc.  One call advances one
timestep; write the loop yourself, which is what feedback loops (each output feeds the
next input), seq2seq decoders and attention need::

    h, c = cell(x, (h, c))        # LSTMCell; hx=None means zeros
    h = cell(x, h)                # RNNCell, GRUCell

Shapes (``B`` batch, ``I`` input size, ``H`` hidden size):

========== ================= ===============================
argument   shape             notes
========== ================= ===============================
x          (B, I)            (I,) unbatched, as PyTorch
h, c       (B, H)            (H,) unbatched
========== ================= ===============================

Parameters, in :attr:`~CellBase.params` with PyTorch's names, shapes and initialisation
U(-1/sqrt(H), 1/sqrt(H)): ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H), ``bias_ih`` and
``bias_hh`` (G*H,), with G = 1 (RNN), 4 (LSTM, gates i, f, g, o) or 3 (GRU, gates r, z,
n), so ``{k: v.numpy() for k, v in torch_cell.state_dict().items()}`` loads unchanged.
The equations are those of the layers, written once in :mod:`numrnn.cells.rnn`,
:mod:`numrnn.cells.lstm` and :mod:`numrnn.cells.gru`; no formula is repeated here.  Each
call is one compiled kernel made of the CPU backend's pieces (the products of its
streaming ``step()`` and the per-step drivers of its sequence kernels, on a sequence of
one step), and it saves what the backend's sequence kernels save; each backward is one
compiled kernel made of the backend's backward row drivers.  Calls compute the same
numbers in training and eval mode.

Backward: a stack of saved calls
--------------------------------
Every call in training mode pushes what its backward needs onto the cell's stack of
saved calls (:attr:`~CellBase.saved_calls` counts them).  :meth:`~CellBase.backward`
pops the *most recent* call that has not been backpropagated yet, so walking a loop in
reverse is a loop of backward calls, exactly the chain rule you would write by hand::

    # PyTorch                              # numrnn
    h, c = h0, c0                          h, c = h0, c0
    for t in range(T):                     for t in range(T):
        h, c = cell(x[t], (h, c))              h, c = cell(x[t], (h, c))
        ys.append(head(h))                     ys.append(h @ W.T)
    loss(ys).backward()                    dh_next = dc_next = None
                                           for t in reversed(range(T)):
                                               dh = dys[t] @ W + (0 if dh_next is None else dh_next)
                                               dx[t], (dh_next, dc_next) = cell.backward(dh, dc_next)

The gradient given to ``backward`` is the *total* gradient reaching that call's outputs:
what the loss sends directly plus what flows back from later calls that read the output
(the state gradient returned by the next call's backward, and in a feedback loop the
next call's ``dx``).  Where PyTorch's autograd adds the gradients of every use of a
shared ``h``, you add them.  Parameter gradients of every call accumulate in
:attr:`~CellBase.grads` until :meth:`~CellBase.zero_grad`, as ``.grad`` in PyTorch.

:meth:`~CellBase.backward_all` is the shortcut for a plain chain (each call's state is
the previous call's output, the inputs do not depend on the outputs, as with teacher
forcing): it takes the gradients of all the outputs at once.

Each call supports one backward (it is popped); ``backward`` with no call left raises
``RuntimeError`` saying why.  Calls in eval mode (:meth:`~CellBase.eval`) or inside
``with cell.no_grad():`` save nothing, so long inference loops do not grow memory;
:meth:`~CellBase.clear_saved` drops what is saved, and ``max_saved`` caps it.
Backward uses the weights as they are when it runs (the saved calls hold the parameter
arrays, not copies): do not update the parameters in place between a call and its
backward (PyTorch raises there).

Every check happens before anything is computed or stored: a call that raises
(``TypeError``/``ValueError`` naming the argument, expected and actual) leaves the cell
exactly as it was.  The cells run on the CPU (one thread per call; NumPy's BLAS for
large products); like the layers, a cell is not thread-safe (a second thread inside the
same cell gets ``RuntimeError``).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from numrnn._exclusive import ExclusiveUse
from numrnn import _validation as check
from numrnn.backends.cpu import all_finite, first_use, numpy_kernels, single_threaded_blas
from numrnn.cells import cell_family, gru_family, rnn_family
from numrnn.nn.cell_kernels import (
    BLAS_MIN_ROWS,  # noqa: F401 - re-exported: numrnn.nn.cells.BLAS_MIN_ROWS
    BLAS_THREADS_MIN_WORK,
    gru_cell_backward,
    gru_cell_forward,
    lstm_cell_backward,
    lstm_cell_forward,
    rnn_cell_backward,
    rnn_cell_forward,
)
from numrnn.nn.module import is_grad_enabled

__all__ = ["CellBase", "RNNCell", "LSTMCell", "GRUCell"]

_PARAM_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

#: First entry of what a call saved when the NumPy kernels ran it (:mod:`numrnn.backends.cpu.first_use`).
_ON_NUMPY = "numpy kernels"


class _Call:
    """What one training-mode call saved for its backward, and how to present the results."""

    __slots__ = ("saved", "batch", "batched", "outputs", "chained")

    def __init__(self, saved, batch, batched, outputs, chained):
        self.saved = saved  # (x, weights) + what the family's *_cell_forward kernel saved
        self.batch = batch
        self.batched = batched
        self.outputs = outputs  # the state arrays returned to the caller (for backward_all's chain check)
        self.chained = chained  # this call's hx was the previous saved call's output


class CellBase(ExclusiveUse):
    """Shared machinery of :class:`RNNCell`, :class:`LSTMCell` and :class:`GRUCell`.

    Parameters
    ----------
    input_size : int
        Features of ``x``, ``I``.
    hidden_size : int
        Units, ``H``.
    bias : bool, default True
        Whether to use ``bias_ih`` and ``bias_hh``.
    dtype : {np.float32, np.float64}, default np.float32
        Dtype of parameters and computation; inputs are cast.
    seed : int or None
        Seed of the initial weights, ``U(-1/sqrt(H), 1/sqrt(H))`` as in PyTorch: an integer
        in ``[0, 2**63)``; None draws one, kept in :attr:`seed` and :meth:`config`.  The
        weights are those of the numrnn layer of the same family built with the same seed
        (``LSTMCell(I, H, seed=s)`` has the ``*_l0`` weights of ``LSTM(I, H, seed=s)``).
    max_saved : int or None, default None
        At most this many calls awaiting backward; a training-mode call beyond it raises
        ``RuntimeError`` (a guard against an inference loop left in training mode).  None:
        no limit.

    Attributes
    ----------
    params : dict of str -> ndarray
        ``weight_ih``, ``weight_hh`` and, with ``bias``, ``bias_ih``, ``bias_hh``.
    grads : dict of str -> ndarray
        Same keys and shapes; :meth:`backward` accumulates into them.
    training : bool
        Training mode: calls save what their backward needs.  Eval mode saves nothing.
    """

    _exclusive_noun = "cell"

    #: Kernel name of the cell's :class:`numrnn.cells.CellFamily` (set by each subclass; a name,
    #: so that copies and pickles need not copy the family's math module).
    _family_name = None

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, seed=None, max_saved=None):
        self.input_size = check.check_positive_int(input_size, "input_size")
        self.hidden_size = check.check_positive_int(hidden_size, "hidden_size")
        self.bias = check.check_bool(bias, "bias")
        self.dtype = check.check_dtype(dtype)
        if max_saved is not None:
            max_saved = check.check_positive_int(max_saved, "max_saved")
        self.max_saved = max_saved
        self.seed = check.check_seed(seed)
        self.training = True
        self._tape = []  # the saved calls, oldest first
        self._no_grad_depth = 0
        self._backpropagated = 0  # calls whose backward ran, for the error messages
        self._init_exclusive()  # forward and backward refuse a second thread (numrnn._exclusive)
        self.params = {}
        self._shapes = self._param_shapes()
        self._draw_parameters(self.seed)
        self.grads = {name: np.zeros_like(value) for name, value in self.params.items()}

    # ------------------------------------------------------------------ structure

    @property
    def _family(self):
        """The cell's :class:`numrnn.cells.CellFamily`."""
        return cell_family(self._family_name)

    @property
    def cell(self) -> str:
        """Kernel name of the cell: rnn_tanh, rnn_relu, lstm, gru or gru_reset_before."""
        return self._family.name

    @property
    def state_size(self) -> int:
        """Number of state arrays: 2 for the LSTM cell (h, c), else 1."""
        return self._family.state_size

    @property
    def saved_calls(self) -> int:
        """Number of calls saved and not backpropagated yet."""
        return len(self._tape)

    def _param_shapes(self):
        gates = self._family.gate_rows(self.hidden_size)
        shapes = {"weight_ih": (gates, self.input_size), "weight_hh": (gates, self.hidden_size)}
        if self.bias:
            shapes["bias_ih"] = (gates,)
            shapes["bias_hh"] = (gates,)
        return shapes

    def _draw_parameters(self, seed):
        # the same stream as numrnn.nn.recurrent.RNNBase: the first spawned seed draws the weights
        init_seed, _ = np.random.SeedSequence(seed).spawn(2)
        rng = np.random.default_rng(init_seed)
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, shape in self._param_shapes().items():
            values = rng.uniform(-bound, bound, size=shape).astype(self.dtype)
            if name in self.params:
                self.params[name][...] = values
            else:
                self.params[name] = values

    def reset_parameters(self, seed=None):
        """Draw new weights (those of a new cell built with ``seed``; None draws one), zero the
        gradients and drop the saved calls.  The arrays stay the same objects."""
        seed = check.check_seed(seed)
        self._draw_parameters(seed)
        self.seed = seed
        self.zero_grad()
        self.clear_saved()

    # ------------------------------------------------------------------ modes and state

    def train(self, mode=True):
        """Training mode (calls save what backward needs); returns ``self``."""
        self.training = check.check_bool(mode, "mode")
        return self

    def eval(self):
        """Eval mode: calls save nothing (their results are the same); returns ``self``.
        Calls saved before stay saved."""
        return self.train(False)

    @contextlib.contextmanager
    def no_grad(self):
        """``with cell.no_grad():`` calls inside save nothing, in either mode (like
        ``torch.no_grad()``, for this cell only)."""
        self._no_grad_depth += 1
        try:
            yield self
        finally:
            self._no_grad_depth -= 1

    def clear_saved(self):
        """Drop every saved call (their memory is freed; their backward can no longer run)."""
        self._tape = []

    def zero_grad(self):
        """Set every gradient in :attr:`grads` to zero (in place)."""
        for value in self.grads.values():
            value.fill(0)

    def parameters(self):
        """The parameter dict (the arrays themselves, not copies)."""
        return self.params

    def named_parameters(self):
        """``(name, array)`` pairs in PyTorch order."""
        return list(self.params.items())

    def state_dict(self):
        """Copies of the parameters, keyed by PyTorch names."""
        return {name: np.array(value, copy=True) for name, value in self.params.items()}

    def load_state_dict(self, state_dict):
        """Load parameters (cast to the cell's dtype) from a dict of arrays, e.g. a
        ``torch.nn.LSTMCell``'s state dict as NumPy arrays.

        Copies into the existing arrays and drops the saved calls.  Raises ``TypeError`` or
        ``ValueError`` naming missing, unexpected or wrong-shaped entries; on error nothing
        is changed.
        """
        expected = {name: (shape, self.dtype) for name, shape in self._param_shapes().items()}
        loaded = check.check_state_dict(state_dict, expected, type(self).__name__)
        for name, array in loaded.items():
            self.params[name][...] = array
        self.clear_saved()

    def config(self):
        """Constructor arguments as a JSON-serialisable dict (``type(self)(**config)``)."""
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "bias": self.bias,
            **self._extra_config(),
            "dtype": self.dtype.name,
            "seed": self.seed,
            "max_saved": self.max_saved,
        }

    def _extra_config(self):
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


    # ------------------------------------------------------------------ validation

    def _check_params(self):
        """Raise unless every entry of :attr:`params` is what the kernels take: present, a
        NumPy array of the cell's dtype and shape, C-contiguous and finite
        (:func:`numrnn._validation.check_params`)."""
        finite = all_finite if self._compiled_now() else check.all_finite_numpy  # (compiled: a compiled scan)
        check.check_params(self.params, self._shapes, self.dtype, "cell", all_finite=finite)

    def _array(self, value, name):
        """``value`` as a C-contiguous, finite array of the cell's dtype (TypeError/ValueError
        naming ``name`` otherwise); an array that is all that already is returned as is."""
        if (
            type(value) is np.ndarray
            and value.dtype is self.dtype
            and value.flags.c_contiguous
            and self._compiled_now()  # (on first use, as_float_array's NumPy check: nothing to compile)
            and all_finite(value)
        ):
            return value
        return check.as_float_array(value, name, self.dtype)

    def _blas_context(self, batch):
        """:func:`~numrnn.backends.cpu.single_threaded_blas` where a product of a call with
        ``batch`` rows may be large enough for BLAS threads (:data:`BLAS_THREADS_MIN_WORK`)."""
        largest = batch * self._family.gate_rows(self.hidden_size) * max(self.input_size, self.hidden_size)
        return single_threaded_blas() if largest > BLAS_THREADS_MIN_WORK else contextlib.nullcontext()

    def _weights(self):
        params = self.params
        if self.bias:
            return tuple(params[name] for name in _PARAM_NAMES)
        zeros = np.zeros(self._family.gate_rows(self.hidden_size), dtype=self.dtype)
        return params["weight_ih"], params["weight_hh"], zeros, zeros

    def _check_input(self, x):
        """``x`` as a C-contiguous (B, I) array of the cell's dtype, and whether it was batched."""
        arr = self._array(x, "x")
        if arr.ndim not in (1, 2):
            raise ValueError(f"x must be 2-D (B, I) or 1-D unbatched (I,), got {arr.ndim}-D with shape {arr.shape}")
        if arr.shape[-1] != self.input_size:
            raise ValueError(
                f"x must have {self.input_size} features (input_size) in its last axis, got {arr.shape[-1]} "
                f"(shape {arr.shape})"
            )
        batched = arr.ndim == 2
        if batched and arr.shape[0] == 0:
            raise ValueError("x must hold at least one row, got a batch of size 0")
        return (arr if batched else arr[None]), batched

    def _check_state(self, value, batch, batched, name):
        """``value`` (None for zeros) as a tuple of ``state_size`` C-contiguous (B, H) arrays."""
        hidden = self.hidden_size
        shape = (batch, hidden) if batched else (hidden,)
        if self.state_size == 2:
            if value is None:
                parts = (None, None)
            elif isinstance(value, (tuple, list)) and len(value) == 2:
                parts = value
            else:
                raise TypeError(
                    f"{name} of an LSTMCell must be a pair (h, c) of arrays of shape {shape} or None, "
                    f"got {type(value).__name__}"
                )
            labels = (f"{name}[0] (h)", f"{name}[1] (c)")
        else:
            if isinstance(value, (tuple, list)) and len(value) == 2 and all(
                p is None or isinstance(p, np.ndarray) for p in value
            ):
                raise TypeError(f"{name} of {type(self).__name__} must be one array h of shape {shape}, got a pair")
            parts, labels = (value,), (name,)
        out = []
        for part, label in zip(parts, labels):
            if part is None:
                out.append(np.zeros((batch, hidden), dtype=self.dtype))
                continue
            array = self._array(part, label)
            if array.shape != shape:
                if array.ndim == 2 and not batched:
                    raise ValueError(f"{label} must be 1-D of shape {shape} for unbatched (1-D) x, got {array.shape}")
                if array.ndim == 1 and batched:
                    raise ValueError(f"{label} must be 2-D of shape {shape} for batched (2-D) x, got {array.shape}")
                check.check_shape(array, shape, label)
            out.append(array.reshape(batch, hidden))
        return tuple(out)

    # ------------------------------------------------------------------ forward

    def forward(self, x, hx=None):
        """One timestep.

        Parameters
        ----------
        x : array_like, shape (B, I), or (I,) unbatched
        hx : None, array (B, H), or for :class:`LSTMCell` a pair ``(h, c)`` of (B, H) arrays
            The previous state ((H,) unbatched); None (or a None element) means zeros.

        Returns
        -------
        h : ndarray, shape (B, H) or (H,)
            For :class:`RNNCell` and :class:`GRUCell`: the new state, which is the output.
        (h, c) : pair of ndarray, each (B, H) or (H,)
            For :class:`LSTMCell`.

        Notes
        -----
        In training mode (and outside :meth:`no_grad`) the call is saved for one
        :meth:`backward`.  The returned arrays are new and the cell keeps its own copies of
        what backward reads, so changing ``x``, ``hx`` or the outputs later does not change
        the gradients.
        """
        with self._exclusive("forward"):
            self._check_params()
            x_arr, batched = self._check_input(x)
            batch = x_arr.shape[0]
            state0 = self._check_state(hx, batch, batched, "hx")
            record = self.training and self._no_grad_depth == 0 and is_grad_enabled()
            if record and self.max_saved is not None and len(self._tape) >= self.max_saved:
                raise RuntimeError(
                    f"{type(self).__name__} already holds max_saved={self.max_saved} calls awaiting backward(): "
                    f"backpropagate them, drop them with clear_saved(), or run inference in eval() mode or "
                    f"inside no_grad(), where calls save nothing"
                )
            weights = self._weights()
            with self._blas_context(batch):
                state_n, saved = self._run_now(x_arr, weights, state0)
            outputs = self._present(state_n, batched)
            if record:
                if x_arr is x or not x_arr.flags.owndata:
                    x_arr = x_arr.copy()  # backward reads x: the caller may change theirs meanwhile
                self._tape.append(_Call((x_arr, weights) + saved, batch, batched, outputs, self._chained(hx)))
            return outputs

    __call__ = forward

    def _present(self, state_n, batched):
        if not batched:
            state_n = tuple(s[0] for s in state_n)
        return (state_n[0], state_n[1]) if self.state_size == 2 else state_n[0]

    def _chained(self, hx):
        """Whether ``hx`` is (made of) the very arrays the last saved call returned."""
        if hx is None or not self._tape:
            return False
        last = self._tape[-1].outputs
        if self.state_size == 1:
            return hx is last
        return isinstance(hx, (tuple, list)) and len(hx) == 2 and hx[0] is last[0] and hx[1] is last[1]

    # ------------------------------------------------------------------ backward

    def _no_call_message(self):
        name = type(self).__name__
        if self._backpropagated:
            why = (
                f"every saved call has had its backward ({self._backpropagated} so far; each call "
                f"supports one, as in PyTorch): run the cell forward again"
            )
        else:
            why = "no call has been saved: run the cell on an input in training mode first"
        if not self.training or self._no_grad_depth or not is_grad_enabled():
            why += (
                " (the cell is in eval mode or inside no_grad(), where calls save nothing: "
                "call cell.train() before the calls to backpropagate)"
            )
        return f"{name}.backward() has nothing to backpropagate: {why}"

    def _check_grad(self, value, call, name):
        """A state gradient for ``call``: None for zeros, else (B, H) or (H,) as the call's output."""
        shape = (call.batch, self.hidden_size) if call.batched else (self.hidden_size,)
        if value is None:
            return np.zeros((call.batch, self.hidden_size), dtype=self.dtype)
        array = self._array(value, name)
        check.check_shape(array, shape, name)
        return array.reshape(call.batch, self.hidden_size)

    _compiled = False  # True once the compiled kernels run this cell's calls (a call asks 4 times)

    def _compiled_now(self):
        """Whether the compiled kernels (:mod:`numrnn.nn.cell_kernels`) run the calls now;
        on first use, before they are compiled, the NumPy kernels do."""
        if self._compiled:
            return True
        if first_use.ready(self._family.kernel, self.dtype, "cells"):
            self._compiled = True
            return True
        return False

    def _run_now(self, x, weights, state0):
        """:meth:`_run` (compiled), or on first use the NumPy kernels: ``(state_n, saved)``."""
        if self._compiled_now():
            return self._run(x, weights, state0)
        forward = numpy_kernels.KERNELS[self._family.kernel].forward
        state_n, buffers = numpy_kernels.one_step_forward(forward, self._family.variant, x, weights, state0)
        return state_n, (_ON_NUMPY, buffers)

    def _backward_call(self, call, dstate):
        """Backward of one saved call (already popped): accumulates the parameter
        gradients; returns ``(dx (B, I), dstate0 tuple)``."""
        x, weights, *saved = call.saved
        if saved[0] is _ON_NUMPY:
            dx, dstate0, grads = numpy_kernels.one_step_backward(  # (a call the NumPy kernels ran)
                numpy_kernels.KERNELS[self._family.kernel].backward, self._family.variant, x, *weights[:2], saved[1], dstate)
        else:
            dx, dstate0, grads = self._back(x, weights, saved, dstate)
        for name, grad in zip(_PARAM_NAMES, grads):
            if name in self.grads:
                self.grads[name] += grad
        self._backpropagated += 1
        return dx, dstate0

    def _backward_one(self, dstate):
        """Common part of the families' ``backward``: ``dstate`` is the tuple of raw gradients."""
        with self._exclusive("backward"):
            if not self._tape:
                raise RuntimeError(self._no_call_message())
            call = self._tape[-1]
            labels = ("dh", "dc")
            checked = tuple(self._check_grad(g, call, label) for g, label in zip(dstate, labels))
            self._tape.pop()
            try:
                with self._blas_context(call.batch):
                    dx, dstate0 = self._backward_call(call, checked)
            except BaseException:  # pragma: no cover - kernels do not raise on validated input
                self._tape.append(call)
                raise
            return self._present_grads(dx, dstate0, call.batched)

    def _present_grads(self, dx, dstate0, batched):
        if not batched:
            dx = dx[0]
        return dx, self._present(dstate0, batched)

    def backward_all(self, dy, dstate=None):
        """Backpropagate through every saved call at once, taken as one chain.

        For a plain loop ``h = cell(x[t], h)`` over saved calls ``0 .. N-1`` (in the
        order made) in which each call's ``hx`` is the output of the call before (the
        very arrays it returned) and no input depends on an output (teacher forcing, an
        encoder): the same as ``N`` calls of :meth:`backward`, adding the carried state
        gradient for you.  In a feedback loop, call :meth:`backward` per step instead.

        Parameters
        ----------
        dy : array_like (N, B, H) or (N, H), or a sequence of N arrays (B, H) / (H,) or None
            ``dy[k]``: gradient of the loss with respect to the ``h`` returned by saved call
            ``k``, other than through later calls of the chain (None: zero).
        dstate : None, array (B, H), or for :class:`LSTMCell` a pair ``(dh, dc)``
            Gradient reaching the state returned by the last call (beyond ``dy[N-1]``).

        Returns
        -------
        dx : ndarray, shape (N, B, I) or (N, I)
            Gradient with respect to each call's ``x``.
        dstate0 : ndarray (B, H) or (H,), or the pair ``(dh0, dc0)`` for :class:`LSTMCell`
            Gradient with respect to the first call's ``hx``.

        Raises
        ------
        RuntimeError
            When no call is saved.
        ValueError
            When the saved calls are not one chain, or for ``dy``/``dstate`` of the wrong
            shape; nothing is changed then.
        """
        with self._exclusive("backward_all"):
            tape = self._tape
            if not tape:
                raise RuntimeError(self._no_call_message().replace(".backward()", ".backward_all()"))
            broken = [k for k in range(1, len(tape)) if not tape[k].chained]
            if broken:
                raise ValueError(
                    f"backward_all() needs the saved calls to be one chain, but saved call {broken[0]} of "
                    f"{len(tape)} did not take as hx the arrays returned by the call before it: call "
                    f"backward() once per call, in reverse, instead"
                )
            count = len(tape)
            last = tape[-1]
            if isinstance(dy, np.ndarray) or not isinstance(dy, (list, tuple)):
                dy_arr = check.as_float_array(dy, "dy", self.dtype)
                shape = (count, last.batch, self.hidden_size) if last.batched else (count, self.hidden_size)
                check.check_shape(dy_arr, shape, "dy")
                dys = [dy_arr[k].reshape(last.batch, self.hidden_size) for k in range(count)]
            else:
                if len(dy) != count:
                    raise ValueError(f"dy must hold {count} gradients (one per saved call), got {len(dy)}")
                dys = [self._check_grad(g, tape[k], f"dy[{k}]") for k, g in enumerate(dy)]
            if self.state_size == 2:
                if dstate is None:
                    dstate = (None, None)
                elif not (isinstance(dstate, (tuple, list)) and len(dstate) == 2):
                    raise TypeError(
                        f"dstate of an LSTMCell must be a pair (dh, dc) or None, got {type(dstate).__name__}"
                    )
                carry = tuple(self._check_grad(g, last, f"dstate[{k}]") for k, g in enumerate(dstate))
            else:
                carry = (self._check_grad(dstate, last, "dstate"),)
            calls = list(tape)
            dx = np.empty((count, last.batch, self.input_size), dtype=self.dtype)
            self._tape = []
            with self._blas_context(last.batch):
                for k in reversed(range(count)):
                    dx[k], carry = self._backward_call(calls[k], (dys[k] + carry[0],) + tuple(carry[1:]))
            if not last.batched:
                dx = dx[:, 0]
            return dx, self._present(carry, last.batched)


class RNNCell(CellBase):
    r"""Elman cell, :math:`h' = \phi(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})` (as ``torch.nn.RNNCell``;
    equations in :mod:`numrnn.cells.rnn`).

    Parameters
    ----------
    input_size, hidden_size : int
    bias : bool, default True
    nonlinearity : {"tanh", "relu"}, default "tanh"
        The activation :math:`\phi`.
    dtype, seed, max_saved
        See :class:`CellBase`.

    Examples
    --------
    >>> import numpy as np
    >>> cell = RNNCell(3, 5, dtype=np.float64, seed=0)
    >>> h = None
    >>> for t in range(4):
    ...     h = cell(np.ones((2, 3)), h)
    >>> dh = np.ones((2, 5))
    >>> for t in range(4):                    # the last call first
    ...     dx, dh = cell.backward(dh)        # dh: gradient w.r.t. the call's hx
    >>> h.shape, dx.shape, cell.grads["weight_hh"].shape
    ((2, 5), (2, 3), (5, 5))
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype=np.float32, seed=None,
                 max_saved=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self._family_name = rnn_family(nonlinearity).name
        super().__init__(input_size, hidden_size, bias, dtype, seed, max_saved)

    def _extra_config(self):
        return {"nonlinearity": self.nonlinearity}

    def _run(self, x, weights, state0):
        h, h_prev_seq = rnn_cell_forward(x, self._family.variant, *weights, state0[0])
        return (h,), (h_prev_seq, h.copy())  # backward reads the output: a copy the caller cannot change

    def _back(self, x, weights, saved, dstate):
        h_prev_seq, h = saved
        dx, dh0, d_w_ih, d_w_hh, d_b = rnn_cell_backward(
            x, self._family.variant, weights[0], weights[1], dstate[0], h_prev_seq, h
        )
        return dx, (dh0,), (d_w_ih, d_w_hh, d_b, d_b)

    def backward(self, dh):
        """Backpropagate through the most recent saved call; accumulate parameter gradients.

        Parameters
        ----------
        dh : array_like (B, H) or (H,) as that call's output, or None (zero)
            Total gradient reaching the call's output ``h``: from the loss and from every
            later use (the ``dh_prev`` returned by the next call's backward, ...).

        Returns
        -------
        dx : ndarray (B, I) or (I,)
            Gradient with respect to the call's ``x``.
        dh_prev : ndarray (B, H) or (H,)
            Gradient with respect to the call's ``hx``.
        """
        return self._backward_one((dh,))


class LSTMCell(CellBase):
    r"""Long short-term memory cell (as ``torch.nn.LSTMCell``; equations in :mod:`numrnn.cells.lstm`).

    ``h, c = cell(x, (h, c))``; gates i, f, g, o stacked in ``weight_ih`` (4H, I),
    ``weight_hh`` (4H, H), ``bias_ih``, ``bias_hh`` (4H,).

    Parameters
    ----------
    input_size, hidden_size : int
    bias : bool, default True
    dtype, seed, max_saved
        See :class:`CellBase`.

    Examples
    --------
    A feedback loop (each output feeds the next input through a readout ``W``):

    >>> import numpy as np
    >>> cell = LSTMCell(4, 6, dtype=np.float64, seed=0)
    >>> W = np.random.default_rng(1).normal(size=(4, 6)) * 0.3
    >>> x, state, hs = np.ones((2, 4)), None, []
    >>> for t in range(5):
    ...     state = cell(x, state)
    ...     hs.append(state[0])
    ...     x = state[0] @ W.T                        # the next input
    >>> loss_grads = [np.ones((2, 6))] * 5            # d loss / d h_t from outside the loop
    >>> dx_next = np.zeros((2, 4)); dh_next = dc_next = None
    >>> for t in reversed(range(5)):
    ...     dh = loss_grads[t] + dx_next @ W + (0 if dh_next is None else dh_next)
    ...     dx, (dh_next, dc_next) = cell.backward(dh, dc_next)
    ...     dx_next = dx                              # this call's x was the last output's readout
    >>> cell.saved_calls
    0
    """

    _family_name = cell_family("lstm").name

    def _run(self, x, weights, state0):
        h, c, gates, c_seq, h_prev_seq = lstm_cell_forward(x, *weights, state0[0], state0[1])
        return (h, c), (gates, c_seq, h_prev_seq, state0[1].copy())  # c0 may be the caller's array

    def _back(self, x, weights, saved, dstate):
        dx, dh0, dc0, d_w_ih, d_w_hh, d_b = lstm_cell_backward(x, weights[0], weights[1], dstate[0], dstate[1], *saved)
        return dx, (dh0, dc0), (d_w_ih, d_w_hh, d_b, d_b)

    def backward(self, dh, dc=None):
        """Backpropagate through the most recent saved call; accumulate parameter gradients.

        Parameters
        ----------
        dh : array_like (B, H) or (H,) as that call's output, or None (zero)
            Total gradient reaching the call's output ``h``: from the loss and from every
            later use (the ``dh_prev`` returned by the next call's backward, ...).
        dc : array_like (B, H) or (H,), or None (zero)
            Total gradient reaching the call's output ``c`` (the next call's ``dc_prev``).

        Returns
        -------
        dx : ndarray (B, I) or (I,)
            Gradient with respect to the call's ``x``.
        (dh_prev, dc_prev) : pair of ndarray (B, H) or (H,)
            Gradients with respect to the call's ``hx = (h, c)``.
        """
        return self._backward_one((dh, dc))


class GRUCell(CellBase):
    r"""Gated recurrent unit cell (as ``torch.nn.GRUCell``; equations in :mod:`numrnn.cells.gru`).

    ``h = cell(x, h)``; gates r, z, n stacked in ``weight_ih`` (3H, I), ``weight_hh``
    (3H, H), ``bias_ih``, ``bias_hh`` (3H,).

    Parameters
    ----------
    input_size, hidden_size : int
    bias : bool, default True
    reset_after : bool, default True
        True: PyTorch's form, the reset gate applied after the recurrent product,
        :math:`n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn}))`.  False: the form of
        Cho et al. (2014), :math:`n = \tanh(W_{in} x + b_{in} + W_{hn} (r \odot h) + b_{hn})`,
        with the same parameters (as :class:`numrnn.GRU`).
    dtype, seed, max_saved
        See :class:`CellBase`.
    """

    def __init__(self, input_size, hidden_size, bias=True, reset_after=True, dtype=np.float32, seed=None,
                 max_saved=None):
        self.reset_after = check.check_bool(reset_after, "reset_after")
        self._family_name = gru_family(self.reset_after).name
        super().__init__(input_size, hidden_size, bias, dtype, seed, max_saved)

    def _extra_config(self):
        return {"reset_after": self.reset_after}

    def _run(self, x, weights, state0):
        h, gates, h_prev_seq, aux_seq = gru_cell_forward(x, self.reset_after, *weights, state0[0])
        return (h,), (gates, h_prev_seq, aux_seq)

    def _back(self, x, weights, saved, dstate):
        dx, dh0, *grads = gru_cell_backward(x, self.reset_after, weights[0], weights[1], dstate[0], *saved)
        return dx, (dh0,), tuple(grads)

    def backward(self, dh):
        """Backpropagate through the most recent saved call; accumulate parameter gradients.

        Parameters
        ----------
        dh : array_like (B, H) or (H,) as that call's output, or None (zero)
            Total gradient reaching the call's output ``h``: from the loss and from every
            later use (the ``dh_prev`` returned by the next call's backward, ...).

        Returns
        -------
        dx : ndarray (B, I) or (I,)
            Gradient with respect to the call's ``x``.
        dh_prev : ndarray (B, H) or (H,)
            Gradient with respect to the call's ``hx``.
        """
        return self._backward_one((dh,))
