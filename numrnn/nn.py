r"""Building blocks for your own models: a dense head and a way to stack modules.

* :class:`Linear`: :math:`y = x W^T + b` over the last axis, with PyTorch's names ``weight``
  (out, in) and ``bias`` (out,) and PyTorch's initialisation U(-1/sqrt(in), 1/sqrt(in)).
* :class:`LastStep`: keep the last timestep of a sequence, (T, B, F) -> (B, F), or (B, T, F) ->
  (B, F) with ``batch_first=True``.
* :class:`Sequential`: run modules one after the other; its :attr:`~Sequential.params` and
  :attr:`~Sequential.grads` merge those of its modules under ``"{index}.{name}"`` keys (the arrays
  themselves, not copies), so one optimiser trains the whole stack.

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

import math
import weakref

import numpy as np

from numrnn import _validation as check

__all__ = ["Module", "Linear", "LastStep", "Sequential", "module_spec", "module_from_spec"]


#: ``_saved`` after a backward: the forward's one backward has run.
_USED = object()


class Module:
    """Minimal base class: parameter and gradient dicts and the mode flag.

    Subclasses set ``self.params`` and ``self.grads`` (dicts of arrays with the same keys) and
    implement ``forward`` and ``backward``; a forward keeps what its backward needs in
    ``self._saved`` and the backward takes it with :meth:`_take_saved` (one backward per forward).
    """

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.training = True
        self._saved = None

    def _take_saved(self):
        """What the last forward saved, for its one backward; RuntimeError if there is none.

        The caller marks it used (``self._saved = _USED``) once its backward has succeeded.
        """
        if self._saved is _USED:
            raise RuntimeError(
                f"{type(self).__name__}.backward() already ran for the last forward(): each forward "
                "supports one backward (as in PyTorch); call forward() again"
            )
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before forward(): run the module on an input")
        return self._saved

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def zero_grad(self):
        """Set every gradient to zero in place."""
        for g in self.grads.values():
            g.fill(0)

    def train(self, mode=True):
        """Training mode; returns ``self``."""
        self.training = check.check_bool(mode, "mode")
        return self

    def eval(self):
        """Evaluation mode; returns ``self``."""
        return self.train(False)

    def state_dict(self):
        """Copies of the parameters."""
        return {k: v.copy() for k, v in self.params.items()}

    def load_state_dict(self, state_dict):
        """Copy parameters in from a dict of arrays (same keys and shapes); all-or-nothing."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict of arrays, got {type(state_dict).__name__}")
        missing = [k for k in self.params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in self.params]
        if missing or unexpected:
            raise ValueError(f"state_dict does not match {type(self).__name__}: missing {missing}, unexpected {unexpected}")
        loaded = {}
        for k, p in self.params.items():
            arr = check.as_float_array(state_dict[k], f"state_dict[{k!r}]", p.dtype)
            check.check_shape(arr, p.shape, f"state_dict[{k!r}]")
            loaded[k] = arr
        for k, arr in loaded.items():
            self.params[k][...] = arr

    def config(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class Linear(Module):
    r"""Dense layer over the last axis, :math:`y = x W^T + b` (as ``torch.nn.Linear``).

    Parameters
    ----------
    in_features, out_features : int
        Sizes of the last axis of the input and the output.
    bias : bool, default True
        Whether to add ``bias``.
    dtype : {np.float32, np.float64}, default np.float32
        Dtype of parameters and computation; inputs are cast.
    seed : int or None
        Seed for the initial weights, U(-1/sqrt(in), 1/sqrt(in)) for weight and bias; None draws
        one (:func:`numrnn._validation.check_seed`), kept in :attr:`seed` and :meth:`config`.

    Attributes
    ----------
    params : dict
        ``weight`` (out_features, in_features) and ``bias`` (out_features,).
    grads : dict
        Same keys; :meth:`backward` accumulates into them.
    seed : int
        The seed of the current weights.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, seed=None):
        super().__init__()
        self.in_features = check.check_positive_int(in_features, "in_features")
        self.out_features = check.check_positive_int(out_features, "out_features")
        self.bias = check.check_bool(bias, "bias")
        self.dtype = check.check_dtype(dtype)
        self.reset_parameters(seed)

    def reset_parameters(self, seed=None):
        """Draw new weights from U(-1/sqrt(in), 1/sqrt(in)) and zero the gradients.

        ``seed`` (None draws one) becomes :attr:`seed`, so :meth:`config` rebuilds these weights.
        """
        seed = check.check_seed(seed, "seed")
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(self.in_features)
        params = {"weight": rng.uniform(-bound, bound, (self.out_features, self.in_features)).astype(self.dtype)}
        if self.bias:
            params["bias"] = rng.uniform(-bound, bound, self.out_features).astype(self.dtype)
        self.params = params
        self.grads = {k: np.zeros_like(v) for k, v in params.items()}
        self.seed = seed
        self._saved = None

    def forward(self, x):
        """Apply the layer.

        Parameters
        ----------
        x : array_like, shape (..., in_features)

        Returns
        -------
        ndarray, shape (..., out_features)
        """
        arr = check.as_float_array(x, "x", self.dtype)
        if arr.ndim < 1 or arr.shape[-1] != self.in_features:
            raise ValueError(f"x must have {self.in_features} features (in_features) in its last axis, got shape {arr.shape}")
        if arr is x or not arr.flags.owndata:
            arr = arr.copy()  # not a fresh array: the caller may change theirs before backward reads it
        x2 = arr.reshape(-1, self.in_features)  # 2-D: one GEMM, not NumPy's stacked matmul
        y = x2 @ self.params["weight"].T
        if self.bias:
            y += self.params["bias"]
        self._saved = x2, arr.shape
        return y.reshape(arr.shape[:-1] + (self.out_features,))

    def backward(self, dy):
        """Gradient of ``sum(y * dy)``: returns dx and accumulates ``grads``.

        Parameters
        ----------
        dy : array_like, shape (..., out_features), the shape of the last output

        Returns
        -------
        dx : ndarray, shape (..., in_features), the shape of the last input
        """
        x2, shape = self._take_saved()
        dy = check.as_float_array(dy, "dy", self.dtype)
        check.check_shape(dy, shape[:-1] + (self.out_features,), "dy")
        dy2 = dy.reshape(-1, self.out_features)
        self.grads["weight"] += dy2.T @ x2
        if self.bias:
            self.grads["bias"] += dy2.sum(axis=0, dtype=np.float64)  # float64: the rows are summed one by one
        self._saved = _USED
        return (dy2 @ self.params["weight"]).reshape(shape)

    def config(self):
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias,
            "dtype": self.dtype.name,
            "seed": self.seed,
        }


class LastStep(Module):
    """Keep the last timestep of a sequence: (T, B, F) -> (B, F), or (T, F) -> (F,).

    Use it between a recurrent layer and a head, with the layer's ``batch_first``.  For sequences
    of unequal length, the recurrent layer's final state ``h_n`` is the per-sequence last step
    instead.

    Parameters
    ----------
    batch_first : bool, default False
        Batched input is (B, T, F) rather than (T, B, F); as in the recurrent layers, 2-D input
        is one unbatched sequence (T, F) either way.
    """

    def __init__(self, batch_first=False):
        super().__init__()
        self.batch_first = check.check_bool(batch_first, "batch_first")

    def _time_axis(self, ndim):
        return 1 if self.batch_first and ndim > 2 else 0

    def forward(self, x):
        """Return the last timestep.

        Parameters
        ----------
        x : array_like, shape (T, B, ...), (B, T, ...) if batch_first, or (T, F)

        Returns
        -------
        ndarray, shape (B, ...) or (F,): a view of ``x``
        """
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        axis = self._time_axis(x.ndim)
        if x.ndim < 2 or x.shape[axis] == 0:
            layout = "(B, T, ...) or (T, F)" if self.batch_first else "(T, ...)"
            raise ValueError(f"x must be a sequence {layout} with T >= 1, got shape {x.shape}")
        self._saved = x.shape, x.dtype
        return x[:, -1] if axis else x[-1]

    def backward(self, dy):
        """Scatter ``dy`` into the last timestep of a zero gradient.

        Parameters
        ----------
        dy : array_like, the shape of the last output

        Returns
        -------
        dx : ndarray, the shape of the last input
        """
        shape, dtype = self._take_saved()
        axis = self._time_axis(len(shape))
        dy = np.asarray(dy)
        check.check_shape(dy, shape[:axis] + shape[axis + 1:], "dy")
        dx = np.zeros(shape, dtype=dtype)
        if axis:
            dx[:, -1] = dy
        else:
            dx[-1] = dy
        self._saved = _USED
        return dx

    def config(self):
        return {"batch_first": self.batch_first}


def _is_recurrent(module):
    return hasattr(module, "step") and hasattr(module, "state_size")


#: The second set of reused buffers of each recurrent layer that has run in a Sequential (see
#: :func:`_snapshot`); weak, so a layer's spare buffers go with the layer.
_spare_workspaces = weakref.WeakKeyDictionary()


def _snapshot(module):
    """Taken before ``module`` runs in a Sequential call: returns a function that puts it back.

    The function restores every attribute the call rebinds (what forward saved for backward,
    ``states`` of a nested Sequential) and the state of each NumPy generator the module holds
    (dropout masks).  A recurrent layer that still has a backward pending runs this call on its
    second set of workspace buffers: its forward would otherwise overwrite, in place, the buffers
    that backward reads.
    """
    attrs = getattr(module, "__dict__", None)
    if attrs is None:
        return lambda: None
    before = dict(attrs)
    generators = [(g, g.bit_generator.state) for g in before.values() if isinstance(g, np.random.Generator)]
    workspaces = before.get("_workspaces")
    swap = isinstance(workspaces, dict) and bool(workspaces) and before.get("_saved") is not None
    if swap:
        module._workspaces = _spare_workspaces.pop(module, {})
        _spare_workspaces[module] = workspaces  # free once this call has replaced what forward saved

    def restore():
        if swap:
            _spare_workspaces[module] = module._workspaces  # what the failed call wrote: free
        attrs.clear()
        attrs.update(before)
        for g, state in generators:
            g.bit_generator.state = state

    return restore


def _in_module(exc, index, module):
    """``exc`` with ``"Sequential module {index} ({class}): "`` before its message: the same type,
    the original as ``__cause__`` (``exc`` itself when its type takes other arguments)."""
    where = f"Sequential module {index} ({type(module).__name__})"
    try:
        new = type(exc)(f"{where}: {exc}")
    except Exception:
        return exc
    new.__cause__ = exc
    return new


class Sequential(Module):
    """Run modules in order; one parameter dict and one gradient dict for the whole stack.

    A recurrent layer in the stack passes on its output sequence ``y`` (its final state is kept
    in :attr:`states`); ``backward`` runs the modules in reverse and returns the gradient with
    respect to the input.

    A call that fails leaves every module as it was (what each saved for backward included), and
    re-raises the error with the module's index and class before its message, e.g.
    ``ValueError("Sequential module 2 (Linear): x must have 5 features ...")``.

    Parameters
    ----------
    *modules
        Modules with ``forward``/``backward``/``params``/``grads`` (numrnn layers, :class:`Linear`,
        :class:`LastStep`, or your own).  A :class:`LastStep` right after a recurrent layer must
        have the layer's ``batch_first``.

    Attributes
    ----------
    states : list
        After a forward call, the final state of each recurrent module (None for the others):
        pass it back as ``states=`` to carry the state over (truncated BPTT).
    """

    def __init__(self, *modules):
        if not modules:
            raise ValueError("Sequential needs at least one module")
        for i, m in enumerate(modules):
            if not (hasattr(m, "backward") and hasattr(m, "params") and hasattr(m, "grads") and callable(m)):
                raise TypeError(f"module {i} ({type(m).__name__}) must have params, grads, __call__ and backward")
        for i in range(1, len(modules)):
            prev, m = modules[i - 1], modules[i]
            if isinstance(m, LastStep) and _is_recurrent(prev) and getattr(prev, "batch_first", False) != m.batch_first:
                raise ValueError(
                    f"module {i} (LastStep) must have batch_first={prev.batch_first} like module {i - 1} "
                    f"({type(prev).__name__}), got batch_first={m.batch_first}"
                )
        self.modules = list(modules)
        self.states = [None] * len(self.modules)
        self.training = True
        self._saved = None

    def __len__(self):
        return len(self.modules)

    def __getitem__(self, index):
        return self.modules[index]

    @property
    def params(self):
        """All parameters, ``"{index}.{name}"`` -> the module's array itself (updates reach it)."""
        return {f"{i}.{k}": v for i, m in enumerate(self.modules) for k, v in m.params.items()}

    @property
    def grads(self):
        """All gradients, keyed like :attr:`params`."""
        return {f"{i}.{k}": v for i, m in enumerate(self.modules) for k, v in m.grads.items()}

    def zero_grad(self):
        for m in self.modules:
            m.zero_grad()

    def train(self, mode=True):
        mode = check.check_bool(mode, "mode")
        for m in self.modules:
            m.train(mode)
        self.training = mode
        return self

    def forward(self, x, states=None):
        """Run every module on the output of the previous one.

        Parameters
        ----------
        x : array_like
            Input of the first module.
        states : list, optional
            Initial state per module (None entries, or None for all: zeros); only recurrent
            modules take one.

        Returns
        -------
        The output of the last module.
        """
        if states is None:
            states = [None] * len(self.modules)
        elif not isinstance(states, (list, tuple)) or len(states) != len(self.modules):
            raise ValueError(f"states must be a list of {len(self.modules)} entries (one per module) or None")
        for i, (m, s) in enumerate(zip(self.modules, states)):
            if s is not None and not _is_recurrent(m):
                raise ValueError(f"states[{i}] must be None: module {i} ({type(m).__name__}) has no state")
        new_states = [None] * len(self.modules)
        restores = []
        out = x
        try:
            for i, (m, s) in enumerate(zip(self.modules, states)):
                restores.append(_snapshot(m))
                if _is_recurrent(m):
                    out, new_states[i] = m(out, s)
                else:
                    out = m(out)
        except BaseException as exc:
            for restore in reversed(restores):
                restore()
            if isinstance(exc, Exception):
                raise _in_module(exc, i, m)
            raise
        self.states = new_states
        self._saved = True
        return out

    def backward(self, dy):
        """Backpropagate ``dy`` (gradient of the output) through every module.

        Gradients do not flow into the initial states; the recurrent modules' gradients of their
        initial states are discarded.  Each forward supports one backward (RuntimeError).

        Parameters
        ----------
        dy : array_like, the shape of the last output

        Returns
        -------
        dx : ndarray, gradient with respect to the input of the first module
        """
        self._take_saved()
        grad = dy
        for i in reversed(range(len(self.modules))):
            m = self.modules[i]
            try:
                grad = m.backward(grad)
            except Exception as exc:
                raise _in_module(exc, i, m)
            if _is_recurrent(m):
                grad = grad[0]
        self._saved = _USED
        return grad

    def state_dict(self):
        return {f"{i}.{k}": v for i, m in enumerate(self.modules) for k, v in m.state_dict().items()}

    def load_state_dict(self, state_dict):
        """Load ``"{index}.{name}"`` entries into each module; checks all modules before changing any."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict of arrays, got {type(state_dict).__name__}")
        expected = self.params
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict if k not in expected]
        if missing or unexpected:
            raise ValueError(f"state_dict does not match the stack: missing {missing}, unexpected {unexpected}")
        for k, p in expected.items():
            arr = check.as_float_array(state_dict[k], f"state_dict[{k!r}]", p.dtype)
            check.check_shape(arr, p.shape, f"state_dict[{k!r}]")
        for i, m in enumerate(self.modules):
            prefix = f"{i}."
            m.load_state_dict({k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)})

    def config(self):
        return {"modules": [module_spec(m) for m in self.modules]}

    def __repr__(self):
        inner = ",\n  ".join(repr(m) for m in self.modules)
        return f"Sequential(\n  {inner}\n)"


def _registry():
    from numrnn.layers import GRU, LSTM, RNN

    return {cls.__name__: cls for cls in (RNN, LSTM, GRU, Linear, LastStep, Sequential)}


def module_spec(module):
    """A JSON-able description ``{"type": name, "config": ...}`` that :func:`module_from_spec` rebuilds.

    Works for numrnn's layers, :class:`Linear`, :class:`LastStep` and :class:`Sequential` of them.
    """
    name = type(module).__name__
    if _registry().get(name) is not type(module):
        raise TypeError(f"cannot describe a {name}: only {sorted(_registry())} can be saved and rebuilt")
    return {"type": name, "config": module.config()}


def module_from_spec(spec):
    """Rebuild a module (with fresh weights) from :func:`module_spec`'s description."""
    if not isinstance(spec, dict) or "type" not in spec or "config" not in spec:
        raise ValueError(f"spec must be a dict with 'type' and 'config', got {spec!r}")
    registry = _registry()
    cls = registry.get(spec["type"])
    if cls is None:
        raise ValueError(f"unknown module type {spec['type']!r}; known: {sorted(registry)}")
    config = spec["config"]
    if not isinstance(config, dict):
        raise ValueError(f"spec['config'] must be a dict, got {type(config).__name__}")
    if cls is Sequential:
        return Sequential(*(module_from_spec(s) for s in config["modules"]))
    return cls(**config)
