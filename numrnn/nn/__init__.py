r"""Building blocks for your own models: a dense head and a way to stack modules.

* :class:`Linear`: :math:`y = x W^T + b` over the last axis, with PyTorch's names ``weight``
  (out, in) and ``bias`` (out,) and PyTorch's initialisation U(-1/sqrt(in), 1/sqrt(in)).
* :class:`Embedding`: a lookup table of vectors indexed by integers (PyTorch's ``weight``, N(0, 1)
  initialisation and ``padding_idx``), with a deterministic scatter-add backward.
* :class:`LayerNorm`: normalisation over the trailing ``normalized_shape`` axes, with ``weight``
  and ``bias`` as PyTorch.
* :class:`Dropout` (seeded inverted dropout, active in training mode only), :class:`Flatten`,
  and the activations :class:`Tanh`, :class:`ReLU` and :class:`Sigmoid`.
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
import numbers
import weakref

import numpy as np

from numrnn import _validation as check
from numrnn.backends.cpu_nn import embedding_scatter_add
from numrnn.recurrent_cells import GRUCell, LSTMCell, RNNCell

__all__ = [
    "Module",
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
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "module_spec",
    "module_from_spec",
]


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


def _as_float(value, name, dtype):
    """:func:`numrnn._validation.as_float_array` that keeps a 0-d input 0-d (it returns 1-d)."""
    arr = check.as_float_array(value, name, dtype)
    return arr.reshape(()) if np.ndim(value) == 0 else arr


def _float_input(x, name):
    """``x`` as a C-contiguous float array: float32 and float64 keep their dtype, anything else
    (integers, bools, lists of numbers) becomes float64; NaN/inf and non-real data are refused."""
    dtype = getattr(x, "dtype", None)
    if not (isinstance(dtype, np.dtype) and dtype in check.FLOAT_DTYPES):
        dtype = np.float64
    return _as_float(x, name, dtype)


def _fresh(arr, x):
    """``arr`` (the checked ``x``), copied if it is the caller's array or a view of one."""
    return arr.copy() if arr is x or not arr.flags.owndata else arr


def _check_real(value, name, ok, wanted):
    """A real number (bools refused) for which ``ok(float(value))`` holds; ``wanted`` says which."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {wanted}, got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not (math.isfinite(value) and ok(value)):
        raise ValueError(f"{name} must be {wanted}, got {value}")
    return value


class Embedding(Module):
    r"""A lookup table of ``num_embeddings`` vectors, indexed by integers (as ``torch.nn.Embedding``).

    :math:`y[\ldots, :] = W[x[\ldots], :]`: integer indices of any shape ``S`` give vectors of
    shape ``S + (embedding_dim,)``.  The gradient of the table is a scatter-add,
    :math:`\partial L / \partial W_r = \sum_{k : x_k = r} \partial L / \partial y_k`: repeated indices
    accumulate, and the row ``padding_idx`` receives none.

    Parameters
    ----------
    num_embeddings : int
        Size of the vocabulary: indices lie in ``[0, num_embeddings)``.
    embedding_dim : int
        Length of each vector.
    padding_idx : int or None, default None
        A row initialised to zero that receives no gradient (so it stays zero under training
        unless set otherwise).  Negative values count from the end, as in PyTorch, and are stored
        as ``num_embeddings + padding_idx``.
    dtype : {np.float32, np.float64}, default np.float32
        Dtype of the table and of the output.
    seed : int or None
        Seed for the initial table, N(0, 1) as in PyTorch; None draws one
        (:func:`numrnn._validation.check_seed`), kept in :attr:`seed` and :meth:`config`.

    Attributes
    ----------
    params : dict
        ``weight`` (num_embeddings, embedding_dim).
    grads : dict
        Same key; :meth:`backward` accumulates into it.
    seed : int
        The seed of the current table.

    Notes
    -----
    The backward is a serial Numba kernel (:func:`numrnn.backends.cpu_nn.embedding_scatter_add`):
    the rows hitting one index are summed in float64 in their input order, so the gradient has
    the same bits for any thread count.  Indices carry no gradient: :meth:`backward` returns None.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype=np.float32, seed=None):
        super().__init__()
        self.num_embeddings = check.check_positive_int(num_embeddings, "num_embeddings")
        self.embedding_dim = check.check_positive_int(embedding_dim, "embedding_dim")
        if padding_idx is not None:
            if isinstance(padding_idx, (bool, np.bool_)) or not isinstance(padding_idx, numbers.Integral):
                raise TypeError(
                    f"padding_idx must be an integer or None, got {padding_idx!r} of type {type(padding_idx).__name__}"
                )
            n = self.num_embeddings
            if not -n <= int(padding_idx) < n:
                raise ValueError(f"padding_idx must lie in [{-n}, {n}) (num_embeddings {n}), got {padding_idx}")
            padding_idx = int(padding_idx) % n
        self.padding_idx = padding_idx
        self.dtype = check.check_dtype(dtype)
        self.reset_parameters(seed)

    def reset_parameters(self, seed=None):
        """Draw a new table from N(0, 1) (row ``padding_idx`` zero) and zero the gradient.

        ``seed`` (None draws one) becomes :attr:`seed`, so :meth:`config` rebuilds this table.
        """
        seed = check.check_seed(seed, "seed")
        weight = np.random.default_rng(seed).standard_normal((self.num_embeddings, self.embedding_dim))
        weight = weight.astype(self.dtype)
        if self.padding_idx is not None:
            weight[self.padding_idx] = 0
        self.params = {"weight": weight}
        self.grads = {"weight": np.zeros_like(weight)}
        self.seed = seed
        self._saved = None

    def _indices(self, x):
        if isinstance(x, np.ma.MaskedArray):
            raise TypeError("x is a masked array, and Embedding would ignore its mask: pass np.ma.filled(x, index)")
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise ValueError(f"x could not be converted to an array: {exc}") from exc
        if arr.dtype.kind not in "iu":
            raise TypeError(f"x must hold integer indices, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= self.num_embeddings):
            raise ValueError(
                f"x must hold indices in [0, {self.num_embeddings}) (num_embeddings), "
                f"got min {arr.min()}, max {arr.max()}"
            )
        return arr.astype(np.int64)  # a copy: the caller may change theirs before backward reads it

    def forward(self, x):
        """Look the indices up.

        Parameters
        ----------
        x : array_like of int, any shape S
            Indices in ``[0, num_embeddings)``.

        Returns
        -------
        ndarray, shape S + (embedding_dim,)
        """
        idx = self._indices(x)
        y = self.params["weight"][idx]
        self._saved = idx.reshape(-1), idx.shape
        return y

    def backward(self, dy):
        """Scatter-add ``dy`` into ``grads["weight"]`` (rows of ``padding_idx`` skipped).

        Parameters
        ----------
        dy : array_like, shape S + (embedding_dim,), the shape of the last output

        Returns
        -------
        None
            Integer indices have no gradient (as in PyTorch).
        """
        idx, shape = self._take_saved()
        dy = check.as_float_array(dy, "dy", self.dtype)
        check.check_shape(dy, shape + (self.embedding_dim,), "dy")
        order = np.argsort(idx, kind="stable")
        padding = -1 if self.padding_idx is None else self.padding_idx
        embedding_scatter_add(self.grads["weight"], idx, order, dy.reshape(-1, self.embedding_dim), padding)
        self._saved = _USED
        return None

    def config(self):
        return {
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "padding_idx": self.padding_idx,
            "dtype": self.dtype.name,
            "seed": self.seed,
        }


class Dropout(Module):
    r"""Inverted dropout (as ``torch.nn.Dropout``): in training mode each entry is zeroed with
    probability ``p`` and the others are scaled by :math:`1/(1-p)`; in evaluation mode it is the
    identity.

    :math:`y = x \odot m / (1 - p)` with :math:`m_k \sim \mathrm{Bernoulli}(1 - p)`, so
    :math:`E[y] = x`; the backward is :math:`dx = dy \odot m / (1 - p)` with the mask of the
    forward.  ``p = 1`` zeroes everything (and every gradient).

    Parameters
    ----------
    p : float in [0, 1], default 0.5
        Probability of zeroing an entry.
    seed : int or None
        Seed of the masks; None draws one (:func:`numrnn._validation.check_seed`), kept in
        :attr:`seed` and :meth:`config`.  A module rebuilt from its config draws the same
        sequence of masks as a new module with that seed.

    Notes
    -----
    Input of any shape; float32 and float64 keep their dtype, other numbers become float64.
    Each training-mode forward draws a new mask; a failed :class:`Sequential` call puts the
    generator back, so the masks that follow are those of a run without the failure.
    """

    def __init__(self, p=0.5, seed=None):
        super().__init__()
        self.p = _check_real(p, "p", lambda v: 0.0 <= v <= 1.0, "a probability in [0, 1]")
        self.seed = check.check_seed(seed, "seed")
        self._rng = np.random.default_rng(self.seed)

    def forward(self, x):
        """Apply dropout (training mode) or pass ``x`` on (evaluation mode, or ``p = 0``).

        Parameters
        ----------
        x : array_like, any shape

        Returns
        -------
        ndarray, the shape of ``x``
        """
        arr = _float_input(x, "x")
        if not self.training or self.p == 0.0:
            self._saved = None, arr.shape, arr.dtype
            return _fresh(arr, x)
        keep = 1.0 - self.p
        draws = self._rng.random(arr.shape)  # drawn for p = 1 too: the stream does not depend on p
        if keep == 0.0:
            mask = np.zeros(arr.shape, dtype=arr.dtype)
        else:
            mask = (draws < keep).astype(arr.dtype) / arr.dtype.type(keep)
        self._saved = mask, arr.shape, arr.dtype
        return np.asarray(arr * mask)  # asarray: NumPy makes a scalar of a 0-d product

    def backward(self, dy):
        """Gradient of ``sum(y * dy)``: ``dy`` times the last forward's scaled mask.

        Parameters
        ----------
        dy : array_like, the shape of the last output

        Returns
        -------
        dx : ndarray, the shape of the last input
        """
        mask, shape, dtype = self._take_saved()
        grad = _as_float(dy, "dy", dtype)
        check.check_shape(grad, shape, "dy")
        dx = _fresh(grad, dy) if mask is None else np.asarray(grad * mask)
        self._saved = _USED
        return dx

    def config(self):
        return {"p": self.p, "seed": self.seed}


class Flatten(Module):
    """Merge the axes ``start_dim`` to ``end_dim`` (both included) into one (as ``torch.nn.Flatten``).

    (B, C, H, W) -> (B, C*H*W) with the defaults.  Negative axes count from the end.

    Parameters
    ----------
    start_dim : int, default 1
        First axis to merge.
    end_dim : int, default -1
        Last axis to merge.
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        for value, name in ((start_dim, "start_dim"), (end_dim, "end_dim")):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}")
        self.start_dim = int(start_dim)
        self.end_dim = int(end_dim)
        if self.start_dim >= 0 and self.end_dim >= 0 and self.start_dim > self.end_dim:
            raise ValueError(f"start_dim ({self.start_dim}) must not come after end_dim ({self.end_dim})")

    def _axes(self, ndim, shape):
        rank = max(ndim, 1)  # as PyTorch: a 0-d input flattens like a 1-d one
        axes = []
        for value, name in ((self.start_dim, "start_dim"), (self.end_dim, "end_dim")):
            if not -rank <= value < rank:
                raise ValueError(f"{name} {value} is out of range for x with {ndim} axes, shape {shape}")
            axes.append(value % rank)
        if axes[0] > axes[1]:
            raise ValueError(
                f"start_dim ({self.start_dim}) must not come after end_dim ({self.end_dim}) for x with {ndim} axes"
            )
        return axes

    def forward(self, x):
        """Flatten the axes.

        Parameters
        ----------
        x : array_like, shape (d0, ..., d[start], ..., d[end], ...)

        Returns
        -------
        ndarray, shape (d0, ..., d[start] * ... * d[end], ...): a view of ``x`` where NumPy can
        """
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        start, end = self._axes(x.ndim, x.shape)
        shape = x.shape if x.ndim else (1,)
        out_shape = shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]
        self._saved = x.shape, out_shape
        return x.reshape(out_shape)

    def backward(self, dy):
        """Reshape ``dy`` back to the shape of the last input.

        Parameters
        ----------
        dy : array_like, the shape of the last output

        Returns
        -------
        dx : ndarray, the shape of the last input
        """
        in_shape, out_shape = self._take_saved()
        dy = np.asarray(dy)
        check.check_shape(dy, out_shape, "dy")
        self._saved = _USED
        return dy.reshape(in_shape)

    def config(self):
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}


class _Elementwise(Module):
    """An activation applied entry by entry; subclasses define ``_apply(x) -> y`` and
    ``_derivative(y, dy) -> dx``."""

    def forward(self, x):
        """Apply the activation.

        Parameters
        ----------
        x : array_like, any shape (float32 and float64 keep their dtype, other numbers become
            float64)

        Returns
        -------
        ndarray, the shape of ``x``
        """
        arr = _float_input(x, "x")
        y = np.asarray(self._apply(arr))  # asarray: ufuncs make a scalar of a 0-d input
        self._saved = y  # the derivatives need only y (ReLU's: y > 0 where x > 0)
        return y.copy()  # the caller may change it; backward reads the module's own

    def backward(self, dy):
        """Gradient of ``sum(y * dy)`` with respect to ``x``.

        Parameters
        ----------
        dy : array_like, the shape of the last output

        Returns
        -------
        dx : ndarray, the shape of the last input
        """
        y = self._take_saved()
        dy = _as_float(dy, "dy", y.dtype)
        check.check_shape(dy, y.shape, "dy")
        dx = np.asarray(self._derivative(y, dy))
        self._saved = _USED
        return dx

    def config(self):
        return {}


class Tanh(_Elementwise):
    r""":math:`y = \tanh(x)`, :math:`dx = dy\,(1 - y^2)` (as ``torch.nn.Tanh``); any shape."""

    @staticmethod
    def _apply(x):
        return np.tanh(x)

    @staticmethod
    def _derivative(y, dy):
        return dy * (1 - y * y)


class ReLU(_Elementwise):
    r""":math:`y = \max(x, 0)`, :math:`dx = dy\,[x > 0]` (as ``torch.nn.ReLU``: no gradient at 0); any
    shape."""

    @staticmethod
    def _apply(x):
        return np.maximum(x, 0)

    @staticmethod
    def _derivative(y, dy):
        return np.where(y > 0, dy, dy.dtype.type(0))


class Sigmoid(_Elementwise):
    r""":math:`y = 1 / (1 + e^{-x})`, :math:`dx = dy\,y\,(1 - y)` (as ``torch.nn.Sigmoid``); any shape.

    Evaluated without overflow for large :math:`|x|` (through :math:`e^{-|x|}`)."""

    @staticmethod
    def _apply(x):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))

    @staticmethod
    def _derivative(y, dy):
        return dy * (1 - y) * y


class LayerNorm(Module):
    r"""Layer normalisation over the last ``len(normalized_shape)`` axes (as ``torch.nn.LayerNorm``).

    For each slice :math:`x` of ``N = prod(normalized_shape)`` entries,

    .. math::

        \mu = \frac1N \sum_k x_k, \quad \sigma^2 = \frac1N \sum_k (x_k - \mu)^2, \quad
        \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \quad y = \hat x \odot \gamma + \beta

    (the biased variance, as PyTorch), and the backward with :math:`g = dy \odot \gamma` is

    .. math::

        dx = \frac{1}{\sqrt{\sigma^2 + \epsilon}} \left(g - \overline{g} - \hat x\, \overline{g \odot \hat x}
        \right),
        \quad d\gamma = \sum dy \odot \hat x, \quad d\beta = \sum dy

    (bars: means over the slice; the sums run over the leading axes).

    Parameters
    ----------
    normalized_shape : int or sequence of int
        The trailing shape normalised over, e.g. ``F`` or ``(H, W)``.
    eps : float > 0, default 1e-5
        Added to the variance.
    elementwise_affine : bool, default True
        Learn ``weight`` (:math:`\gamma`, initialised to ones) and, with ``bias``, ``bias``
        (:math:`\beta`, zeros), both of shape ``normalized_shape``.
    bias : bool, default True
        Whether to learn ``bias`` (with ``elementwise_affine``).
    dtype : {np.float32, np.float64}, default np.float32
        Dtype of parameters and computation; inputs are cast.  Means and sums accumulate in
        float64.

    Attributes
    ----------
    params : dict
        ``weight`` and ``bias`` (shape ``normalized_shape``), or none without elementwise_affine.
    grads : dict
        Same keys; :meth:`backward` accumulates into them.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=np.float32):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, (bool, np.bool_)):
            normalized_shape = (normalized_shape,)
        if not isinstance(normalized_shape, (tuple, list)) or not normalized_shape:
            raise TypeError(
                f"normalized_shape must be an integer >= 1 or a non-empty sequence of them, got {normalized_shape!r}"
            )
        self.normalized_shape = tuple(
            check.check_positive_int(n, f"normalized_shape[{i}]") for i, n in enumerate(normalized_shape)
        )
        self.eps = _check_real(eps, "eps", lambda v: v > 0.0, "a finite number > 0")
        self.elementwise_affine = check.check_bool(elementwise_affine, "elementwise_affine")
        self.bias = check.check_bool(bias, "bias")
        self.dtype = check.check_dtype(dtype)
        self.reset_parameters()

    def reset_parameters(self):
        """Set ``weight`` to ones and ``bias`` to zeros, and zero the gradients."""
        params = {}
        if self.elementwise_affine:
            params["weight"] = np.ones(self.normalized_shape, dtype=self.dtype)
            if self.bias:
                params["bias"] = np.zeros(self.normalized_shape, dtype=self.dtype)
        self.params = params
        self.grads = {k: np.zeros_like(v) for k, v in params.items()}
        self._saved = None

    def forward(self, x):
        """Normalise.

        Parameters
        ----------
        x : array_like, shape (..., *normalized_shape)

        Returns
        -------
        ndarray, the shape of ``x``
        """
        arr = check.as_float_array(x, "x", self.dtype)
        k = len(self.normalized_shape)
        if arr.ndim < k or arr.shape[arr.ndim - k:] != self.normalized_shape:
            raise ValueError(
                f"x must end in the normalized_shape {self.normalized_shape}, got shape {arr.shape}"
            )
        n = math.prod(self.normalized_shape)
        x2 = arr.reshape(-1, n)
        mean = x2.mean(axis=1, keepdims=True, dtype=np.float64).astype(self.dtype)
        centred = x2 - mean
        var = np.mean(centred * centred, axis=1, keepdims=True, dtype=np.float64)
        rstd = (1.0 / np.sqrt(var + self.eps)).astype(self.dtype)
        xhat = centred * rstd
        if self.elementwise_affine:
            y = xhat * self.params["weight"].reshape(-1)
            if self.bias:
                y += self.params["bias"].reshape(-1)
        else:
            y = xhat.copy()  # xhat is kept for backward
        self._saved = xhat, rstd, arr.shape
        return y.reshape(arr.shape)

    def backward(self, dy):
        """Gradient of ``sum(y * dy)``: returns dx and accumulates ``grads``.

        Parameters
        ----------
        dy : array_like, the shape of the last output

        Returns
        -------
        dx : ndarray, the shape of the last input
        """
        xhat, rstd, shape = self._take_saved()
        dy = check.as_float_array(dy, "dy", self.dtype)
        check.check_shape(dy, shape, "dy")
        dy2 = dy.reshape(xhat.shape)
        g = dy2 * self.params["weight"].reshape(-1) if self.elementwise_affine else dy2
        mean_g = g.mean(axis=1, keepdims=True, dtype=np.float64).astype(self.dtype)
        mean_gx = np.mean(g * xhat, axis=1, keepdims=True, dtype=np.float64).astype(self.dtype)
        dx = (g - mean_g - xhat * mean_gx) * rstd
        if self.elementwise_affine:
            self.grads["weight"] += np.sum(dy2 * xhat, axis=0, dtype=np.float64).reshape(self.normalized_shape)
            if self.bias:
                self.grads["bias"] += dy2.sum(axis=0, dtype=np.float64).reshape(self.normalized_shape)
        self._saved = _USED
        return dx.reshape(shape)

    def config(self):
        return {
            "normalized_shape": list(self.normalized_shape),
            "eps": self.eps,
            "elementwise_affine": self.elementwise_affine,
            "bias": self.bias,
            "dtype": self.dtype.name,
        }


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

    classes = (RNN, LSTM, GRU, Linear, Embedding, LayerNorm, Dropout, Flatten, Tanh, ReLU, Sigmoid, LastStep,
               Sequential)
    return {cls.__name__: cls for cls in classes}


def module_spec(module):
    """A JSON-able description ``{"type": name, "config": ...}`` that :func:`module_from_spec` rebuilds.

    Works for numrnn's layers, the modules of this module and :class:`Sequential` of them.
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
