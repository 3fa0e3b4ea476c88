r"""Conversion to and from PyTorch modules, and import of Keras recurrent weights.

* :func:`from_torch` builds the numrnn twin of a PyTorch module, :func:`to_torch` the PyTorch twin
  of a numrnn module: same configuration, same weights (copied, bit for bit), same mode
  (training or evaluation), so the same outputs up to rounding.
* :func:`from_keras_weights` builds a numrnn layer from the arrays of a Keras ``LSTM``, ``GRU``
  or ``SimpleRNN`` layer (``layer.get_weights()``), rearranged into PyTorch's layout.

Twins
-----
========================================== ==============================================
PyTorch                                    numrnn
========================================== ==============================================
``torch.nn.RNN`` / ``LSTM`` / ``GRU``      :class:`numrnn.RNN` / ``LSTM`` / ``GRU``
``torch.nn.Linear``                        :class:`numrnn.nn.Linear`
``torch.nn.Embedding``                     :class:`numrnn.nn.Embedding`
``torch.nn.LayerNorm``                     :class:`numrnn.nn.LayerNorm`
``torch.nn.Dropout``                       :class:`numrnn.nn.Dropout`
``torch.nn.Flatten``                       :class:`numrnn.nn.Flatten`
``torch.nn.Tanh`` / ``ReLU`` / ``Sigmoid`` :class:`numrnn.nn.Tanh` / ``ReLU`` / ``Sigmoid``
``torch.nn.Sequential``                    :class:`numrnn.nn.Sequential`
========================================== ==============================================

The recurrent layers carry every option (``num_layers``, ``bias``, ``batch_first``,
``dropout``, ``bidirectional``, the RNN's ``nonlinearity``); the dtype (float32 or float64)
comes from the parameters.  A module whose class or options have no twin is refused with an
error that names it: :class:`numrnn.nn.LastStep`, a GRU with ``reset_after=False`` (the Cho
form, absent from PyTorch), an LSTM with ``proj_size``, an Embedding with ``max_norm``, any
other class (subclasses included: only these exact classes are known).

Sequential stacks
-----------------
A PyTorch recurrent layer returns ``(output, h_n)``, and ``torch.nn.Sequential`` hands that
pair to the next module, which then fails; numrnn's :class:`~numrnn.nn.Sequential` passes the
output on and keeps ``h_n`` in :attr:`~numrnn.nn.Sequential.states`.  So a stack with a
recurrent layer anywhere but at its end has no twin and is refused (convert its layers one by
one); one that ends in a recurrent layer converts, and returns ``(output, h_n)`` in PyTorch
where numrnn returns ``output``.

PyTorch is imported by :func:`from_torch` and :func:`to_torch` only: importing this module
does not import it.  Keras is never imported: :func:`from_keras_weights` takes NumPy arrays.

Examples
--------
>>> import numpy as np, numrnn
>>> from numrnn import nn
>>> from numrnn.convert import to_torch, from_torch
>>> model = nn.Sequential(nn.Linear(3, 8, dtype=np.float64, seed=0), nn.Tanh(),
...                       nn.Linear(8, 2, dtype=np.float64, seed=1))
>>> twin = to_torch(model)                          # doctest: +SKIP
>>> back = from_torch(twin)                         # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Callable, NamedTuple

import numpy as np

from numrnn import _validation as check
from numrnn.cells import cell_family, gru_family, rnn_family

__all__ = ["from_torch", "to_torch", "from_keras_weights", "KERAS_LAYERS"]


def _import_torch(function):
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - the tests run with torch or skip
        raise ImportError(f"numrnn.convert.{function} needs PyTorch: pip install torch") from exc
    return torch


def _numpy_dtype(torch, torch_dtype, what):
    dtypes = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}
    if torch_dtype not in dtypes:
        raise TypeError(
            f"{what} has parameters of dtype {torch_dtype}: numrnn computes in float32 or float64 "
            "(convert the module with .float() or .double() first)"
        )
    return dtypes[torch_dtype]


def _module_dtype(torch, module, default, what):
    """The dtype of ``module``'s parameters (one dtype for all), or ``default`` without any."""
    found = {p.dtype for p in module.parameters()}
    if len(found) > 1:
        raise TypeError(f"{what} mixes parameter dtypes {sorted(str(d) for d in found)}: numrnn needs one")
    if not found:
        return default
    return _numpy_dtype(torch, found.pop(), what)


def _numpy_state(module):
    """``{name: ndarray}`` from a PyTorch module's state_dict (detached host views; numrnn's
    ``load_state_dict`` copies them into its own arrays)."""
    return {name: tensor.detach().cpu().numpy() for name, tensor in module.state_dict().items()}


def _child_seeds(seed, count):
    """One seed per child module, drawn from ``seed`` (None: each child draws its own)."""
    if seed is None:
        return [None] * count
    return [int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))
            for child in np.random.SeedSequence(seed).spawn(count)]


def _is_recurrent(module):
    return hasattr(module, "step") and hasattr(module, "state_size")


def _in_child(exc, where):
    """``exc`` (same type) with ``where`` before its message; ``exc`` itself if that fails."""
    try:
        new = type(exc)(f"{where}: {exc}")
    except Exception:  # pragma: no cover - exception types with other signatures
        return exc
    new.__cause__ = exc
    return new


# ---------------------------------------------------------------------------------- from torch


def from_torch(module, *, backend="auto", seed=None, dtype=None):
    """Build the numrnn twin of a PyTorch module, with a copy of its weights.

    Parameters
    ----------
    module : torch.nn.Module
        One of ``torch.nn.RNN``, ``LSTM``, ``GRU``, ``Linear``, ``Embedding``, ``LayerNorm``,
        ``Dropout``, ``Flatten``, ``Tanh``, ``ReLU``, ``Sigmoid``, or a ``torch.nn.Sequential``
        of them (nested stacks too).
    backend : {"auto", "cpu", "cuda"}, default "auto"
        Backend of the recurrent layers (:func:`numrnn.backends.get_backend`).
    seed : int or None
        Seed of the numrnn modules (their dropout masks, which are not PyTorch's; the weights
        are copied).  In a stack each module gets its own seed drawn from this one.
    dtype : {None, np.float32, np.float64}
        Dtype of the modules without parameters that have one in numrnn (a LayerNorm without
        ``elementwise_affine``, which PyTorch computes in the input's dtype).  None: that of
        the first parameter of ``module`` (the enclosing stack), else
        ``torch.get_default_dtype()``.  Modules with parameters keep their parameters' dtype.

    Returns
    -------
    numrnn module
        With the module's configuration; the dtype (float32 or float64) of its parameters
        (see ``dtype`` for modules without); a copy of every parameter, bit for bit; its
        training or evaluation mode.

    Raises
    ------
    TypeError
        For an object that is not a ``torch.nn.Module``, a module class with no numrnn twin
        (named in the message), parameters of another dtype than float32/float64 or of mixed
        dtypes, or a recurrent layer inside a stack before its end (no PyTorch stack runs it).
    ValueError
        For options with no numrnn counterpart (``proj_size`` of an LSTM, ``max_norm`` or
        ``scale_grad_by_freq`` of an Embedding), or values numrnn refuses (e.g. a recurrent
        ``dropout`` of 1).

    Notes
    -----
    ``sparse=True`` of an Embedding is accepted (it changes only how PyTorch stores the
    gradient).  ``inplace`` of Dropout and ReLU is ignored.
    """
    torch = _import_torch("from_torch")
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if dtype is not None:
        default = check.check_dtype(dtype)
    else:  # the dtype of modules without parameters
        first = next(iter(module.parameters()), None)
        default = _numpy_dtype(torch, torch.get_default_dtype() if first is None else first.dtype,
                               "torch's default dtype" if first is None else type(module).__name__)
    check.check_seed(0 if seed is None else seed, "seed")
    return _from_torch(torch, module, default, backend, seed)


def _from_torch(torch, module, default_dtype, backend, seed):
    tnn = torch.nn
    kind = type(module)
    name = kind.__name__
    from numrnn import nn
    from numrnn.nn import recurrent as layers

    if kind is tnn.Sequential:
        children = list(module)
        if not children:
            raise ValueError("module is an empty torch.nn.Sequential: numrnn's Sequential needs a module")
        for i, child in enumerate(children[:-1]):
            if _ends_recurrent_torch(tnn, child):
                raise TypeError(
                    f"torch.nn.Sequential module {i} ({type(child).__name__}) is recurrent and not last: in PyTorch "
                    "it hands its (output, h_n) pair to the next module, so the stack has no numrnn twin; "
                    "convert its layers one by one"
                )
        converted = []
        for i, (child, child_seed) in enumerate(zip(children, _child_seeds(seed, len(children)))):
            try:
                converted.append(_from_torch(torch, child, default_dtype, backend, child_seed))
            except (TypeError, ValueError) as exc:
                raise _in_child(exc, f"torch.nn.Sequential module {i} ({type(child).__name__})") from exc
        names = [n for n, _ in module.named_children()]
        stack = nn.Sequential(dict(zip(names, converted)))  # PyTorch's names ("0", "1", ... or its own)
        stack.training = bool(module.training)  # the children keep their own modes
        return stack

    dtype = _module_dtype(torch, module, default_dtype, name)
    if kind in (tnn.RNN, tnn.LSTM, tnn.GRU):
        if getattr(module, "proj_size", 0):
            raise ValueError(f"{name} with proj_size={module.proj_size} has no numrnn twin (numrnn has no projections)")
        kwargs = dict(num_layers=module.num_layers, bias=bool(module.bias), batch_first=bool(module.batch_first),
                      dropout=float(module.dropout), bidirectional=bool(module.bidirectional), dtype=dtype,
                      backend=backend, seed=seed)
        if kind is tnn.RNN:
            result = layers.RNN(module.input_size, module.hidden_size, nonlinearity=module.nonlinearity, **kwargs)
        else:
            result = getattr(layers, name)(module.input_size, module.hidden_size, **kwargs)
    elif kind is tnn.Linear:
        result = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None, dtype=dtype,
                           seed=seed)
    elif kind is tnn.Embedding:
        if module.max_norm is not None:
            raise ValueError(f"Embedding with max_norm={module.max_norm} has no numrnn twin (rows are not renormalised)")
        if module.scale_grad_by_freq:
            raise ValueError("Embedding with scale_grad_by_freq=True has no numrnn twin")
        result = nn.Embedding(module.num_embeddings, module.embedding_dim, padding_idx=module.padding_idx,
                              dtype=dtype, seed=seed)
    elif kind is tnn.LayerNorm:
        affine = bool(module.elementwise_affine)
        result = nn.LayerNorm(tuple(module.normalized_shape), eps=float(module.eps), elementwise_affine=affine,
                              bias=(module.bias is not None) if affine else True, dtype=dtype)
    elif kind is tnn.Dropout:
        result = nn.Dropout(p=float(module.p), seed=seed)
    elif kind is tnn.Flatten:
        result = nn.Flatten(start_dim=module.start_dim, end_dim=module.end_dim)
    elif kind in (tnn.Tanh, tnn.ReLU, tnn.Sigmoid):
        result = getattr(nn, name)()
    else:
        raise TypeError(
            f"{kind.__module__}.{kind.__qualname__} has no numrnn twin; from_torch converts "
            f"torch.nn.{', torch.nn.'.join(_TORCH_TWINS)} (those exact classes)"
        )
    if result.params:
        result.load_state_dict(_numpy_state(module))
    result.train(bool(module.training))
    return result


_TORCH_TWINS = ("RNN", "LSTM", "GRU", "Linear", "Embedding", "LayerNorm", "Dropout", "Flatten", "Tanh", "ReLU",
                "Sigmoid", "Sequential")


def _ends_recurrent_torch(tnn, module):
    """Whether ``module`` (a PyTorch module) returns a recurrent layer's (output, state) pair."""
    if isinstance(module, (tnn.RNNBase,)):
        return True
    if type(module) is tnn.Sequential and len(module):
        return _ends_recurrent_torch(tnn, module[len(module) - 1])
    return False


# ------------------------------------------------------------------------------------ to torch


def to_torch(model):
    """Build the PyTorch twin of a numrnn module, with a copy of its weights.

    Parameters
    ----------
    model : numrnn module
        :class:`numrnn.RNN`, ``LSTM``, ``GRU`` (``reset_after=True``), or a module of
        :mod:`numrnn.nn` with a PyTorch twin (``Linear``, ``Embedding``, ``LayerNorm``,
        ``Dropout``, ``Flatten``, ``Tanh``, ``ReLU``, ``Sigmoid``), or a ``Sequential`` of them.

    Returns
    -------
    torch.nn.Module
        On the CPU, with the model's configuration and dtype, a copy of every parameter (bit
        for bit, also from device parameters) and the model's training or evaluation mode.

    Raises
    ------
    TypeError
        For a module with no PyTorch twin (:class:`numrnn.nn.LastStep`, your own modules),
        named in the message, or a stack with a recurrent layer before its end.
    ValueError
        For a GRU with ``reset_after=False`` (the Cho form, which PyTorch lacks).

    Notes
    -----
    PyTorch's recurrent layers warn when ``dropout > 0`` with one layer (where it does
    nothing); numrnn takes that silently, and so does this conversion.
    """
    torch = _import_torch("to_torch")
    return _to_torch(torch, model)


def _to_torch(torch, model):
    from numrnn import nn
    from numrnn.nn import recurrent as layers

    tnn = torch.nn
    kind = type(model)
    tdtype = None
    if getattr(model, "dtype", None) is not None:
        tdtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(model.dtype)]

    if kind is nn.Sequential:
        for i, child in enumerate(model.modules[:-1]):
            if _ends_recurrent_numrnn(nn, child):
                raise TypeError(
                    f"Sequential module {i} ({type(child).__name__}) is recurrent and not last: torch.nn.Sequential "
                    "would hand its (output, h_n) pair to the next module, so the stack has no PyTorch twin; "
                    "convert its layers one by one"
                )
        converted = []
        for i, child in enumerate(model.modules):
            try:
                converted.append(_to_torch(torch, child))
            except (TypeError, ValueError) as exc:
                raise _in_child(exc, f"Sequential module {i} ({type(child).__name__})") from exc
        names = [n for n, _ in model.named_children()]
        stack = tnn.Sequential(OrderedDict(zip(names, converted)))  # the same names as the numrnn stack
        stack.training = bool(model.training)  # the children keep their own modes
        return stack

    if kind in (layers.RNN, layers.LSTM, layers.GRU):
        if kind is layers.GRU and not model.reset_after:
            raise ValueError(
                "GRU with reset_after=False (the Cho et al. form, reset gate before the recurrent product) has no "
                "PyTorch twin: torch.nn.GRU applies the reset gate after it"
            )
        kwargs = dict(num_layers=model.num_layers, bias=model.bias, batch_first=model.batch_first,
                      dropout=model.dropout, bidirectional=model.bidirectional, dtype=tdtype)
        if kind is layers.RNN:
            kwargs["nonlinearity"] = model.nonlinearity
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*dropout option adds dropout after all but last",
                                    category=UserWarning)
            result = getattr(tnn, kind.__name__)(model.input_size, model.hidden_size, **kwargs)
    elif kind is nn.Linear:
        result = tnn.Linear(model.in_features, model.out_features, bias=model.bias, dtype=tdtype)
    elif kind is nn.Embedding:
        result = tnn.Embedding(model.num_embeddings, model.embedding_dim, padding_idx=model.padding_idx, dtype=tdtype)
    elif kind is nn.LayerNorm:
        result = tnn.LayerNorm(model.normalized_shape, eps=model.eps, elementwise_affine=model.elementwise_affine,
                               bias=model.bias, dtype=tdtype)
    elif kind is nn.Dropout:
        result = tnn.Dropout(p=model.p)
    elif kind is nn.Flatten:
        result = tnn.Flatten(start_dim=model.start_dim, end_dim=model.end_dim)
    elif kind in (nn.Tanh, nn.ReLU, nn.Sigmoid):
        result = getattr(tnn, kind.__name__)()
    elif kind is nn.LastStep:
        raise TypeError(
            "LastStep has no PyTorch twin: in PyTorch take output[-1] (output[:, -1] with batch_first), or "
            "h_n[-1] for the last layer's final state, after the recurrent module"
        )
    else:
        raise TypeError(
            f"{kind.__module__}.{kind.__qualname__} has no PyTorch twin; to_torch converts numrnn.RNN, LSTM, GRU "
            "and numrnn.nn.Linear, Embedding, LayerNorm, Dropout, Flatten, Tanh, ReLU, Sigmoid, Sequential"
        )
    state = model.state_dict()  # copies (host copies of device parameters)
    if state:
        result.load_state_dict({name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in state.items()})
    result.train(bool(model.training))
    return result


def _ends_recurrent_numrnn(nn, module):
    if _is_recurrent(module):
        return True
    if type(module) is nn.Sequential:
        return _ends_recurrent_numrnn(nn, module.modules[-1])
    return False


# ---------------------------------------------------------------------------------------- Keras


class KerasLayer(NamedTuple):
    """What :func:`from_keras_weights` knows of one Keras recurrent layer class.

    Attributes
    ----------
    name : str
        The Keras class name (``"LSTM"``, ``"GRU"``, ``"SimpleRNN"``).
    noun : str
        The name with its article, for messages (``"an LSTM"``).
    gates : int
        Gate blocks per unit, that of the numrnn cell family.
    gate_order : str
        Keras' gate order along the last axis of ``kernel``, ``recurrent_kernel`` and ``bias``.
    gate_blocks : tuple of int
        For each numrnn (PyTorch) gate block, in order, the Keras block it is.
    family : callable
        ``(activation, reset_after) -> CellFamily`` of the numrnn layer (its ``layer`` names
        the class of :mod:`numrnn.nn.recurrent` to build).
    options : callable
        ``(activation, family) -> dict`` of the numrnn layer's own constructor options.
    activations : tuple of str
        The Keras ``activation`` values with a numrnn counterpart.
    activation_rule : str
        The message's rule when ``activation`` is not one of them.
    recurrent_activations : tuple of str
        The Keras ``recurrent_activation`` values with a numrnn counterpart besides None (Keras'
        default, always taken).
    recurrent_rule : str
        The message's rule when ``recurrent_activation`` is not one of them.
    takes_reset_after : bool
        Whether Keras' ``reset_after`` applies (the GRU: its bias is (2, G*H) with it).
    """

    name: str
    noun: str
    gates: int
    gate_order: str
    gate_blocks: tuple
    family: Callable
    options: Callable
    activations: tuple
    activation_rule: str
    recurrent_activations: tuple
    recurrent_rule: str
    takes_reset_after: bool

    def order(self, hidden):
        """Column indices taking Keras' gate blocks (of ``hidden`` units) to numrnn's order."""
        return np.concatenate([np.arange(block * hidden, (block + 1) * hidden) for block in self.gate_blocks])


#: The Keras recurrent layers :func:`from_keras_weights` reads, one :class:`KerasLayer` each.
_KERAS_RECORDS = {
    record.name: record
    for record in (
        KerasLayer(
            name="LSTM", noun="an LSTM", gates=cell_family("lstm").gates, gate_order="i, f, c, o",
            gate_blocks=(0, 1, 2, 3),  # Keras' i, f, c, o is PyTorch's i, f, g, o
            family=lambda activation, reset_after: cell_family("lstm"),
            options=lambda activation, family: {},
            activations=("tanh",), activation_rule="of a Keras LSTM must be 'tanh' for numrnn",
            recurrent_activations=("sigmoid",),
            recurrent_rule="of a Keras LSTM must be 'sigmoid' (or None) for numrnn",
            takes_reset_after=False,
        ),
        KerasLayer(
            name="GRU", noun="a GRU", gates=gru_family(True).gates, gate_order="z, r, h",
            gate_blocks=(1, 0, 2),  # Keras' z, r, h -> PyTorch's r, z, n
            family=lambda activation, reset_after: gru_family(reset_after),
            options=lambda activation, family: {"reset_after": family.variant},
            activations=("tanh",), activation_rule="of a Keras GRU must be 'tanh' for numrnn",
            recurrent_activations=("sigmoid",),
            recurrent_rule="of a Keras GRU must be 'sigmoid' (or None) for numrnn",
            takes_reset_after=True,
        ),
        KerasLayer(
            name="SimpleRNN", noun="a SimpleRNN", gates=rnn_family("tanh").gates, gate_order="",
            gate_blocks=(0,),
            family=lambda activation, reset_after: rnn_family(activation),
            options=lambda activation, family: {"nonlinearity": activation},
            activations=("tanh", "relu"),
            activation_rule="of a SimpleRNN must be 'tanh' or 'relu' (numrnn.RNN's nonlinearity)",
            recurrent_activations=(), recurrent_rule="must be None for a SimpleRNN (it has none)",
            takes_reset_after=False,
        ),
    )
}

#: The Keras recurrent layers :func:`from_keras_weights` reads: gates per unit, and Keras' gate
#: order along the last axis of ``kernel``, ``recurrent_kernel`` and ``bias``.
KERAS_LAYERS = {name: (record.gates, record.gate_order) for name, record in _KERAS_RECORDS.items()}

_KERAS_BY_LOWER_NAME = {name.lower(): record for name, record in _KERAS_RECORDS.items()}


def _keras_layer(layer_type):
    """The :class:`KerasLayer` of ``layer_type`` (any case)."""
    if not isinstance(layer_type, str):
        raise TypeError(f"layer_type must be one of {sorted(KERAS_LAYERS)}, got {type(layer_type).__name__}")
    record = _KERAS_BY_LOWER_NAME.get(layer_type.lower())
    if record is None:
        raise ValueError(f"layer_type must be one of {sorted(KERAS_LAYERS)} (Keras layer names), got {layer_type!r}")
    return record


def _keras_arrays(weights, dtype):
    if isinstance(weights, np.ndarray) or not isinstance(weights, (list, tuple)):
        raise TypeError(
            f"weights must be a list of arrays as Keras' layer.get_weights() returns "
            f"([kernel, recurrent_kernel, bias]), got {type(weights).__name__}"
        )
    arrays = []
    for i, w in enumerate(weights):
        arr = np.asarray(w)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"weights[{i}] must hold real numbers, got dtype {arr.dtype}")
        arrays.append(arr)
    if dtype is None:
        found = {a.dtype for a in arrays}
        if found <= {np.dtype(np.float32)}:
            dtype = np.float32
        elif found <= {np.dtype(np.float64)}:
            dtype = np.float64
        else:
            raise TypeError(
                f"weights have dtypes {sorted(str(d) for d in found)}: pass dtype=np.float32 or np.float64 "
                "(numrnn computes in one of them)"
            )
    dtype = check.check_dtype(dtype)
    return [check.as_float_array(a, f"weights[{i}]", dtype) for i, a in enumerate(arrays)], dtype


def from_keras_weights(layer_type, weights, *, reset_after=None, activation="tanh", recurrent_activation=None,
                       bidirectional=False, batch_first=True, dtype=None, backend="auto", seed=None):
    r"""Build a numrnn layer from the weights of a Keras ``LSTM``, ``GRU`` or ``SimpleRNN`` layer.

    Keras stores, per direction, ``kernel`` (I, G*H) (the input weights, as columns),
    ``recurrent_kernel`` (H, G*H) and ``bias``, with the gates side by side along the last
    axis; numrnn (PyTorch) stores ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H), ``bias_ih``
    and ``bias_hh`` (G*H,).  The arrays are transposed, the GRU's gates reordered, and Keras'
    single bias becomes ``bias_ih`` with ``bias_hh = 0``:

    ========== ================== ===================== ===============================================
    layer_type Keras gate order   numrnn layer          biases
    ========== ================== ===================== ===============================================
    LSTM       i, f, c, o         LSTM (i, f, g, o)     bias (4H,) -> bias_ih; bias_hh = 0
    GRU        z, r, h            GRU (r, z, n),        reset_after (bias (2, 3H)): bias[0] -> bias_ih,
                                  same reset_after      bias[1] -> bias_hh; reset before (bias (3H,)):
                                                        bias -> bias_ih, bias_hh = 0
    SimpleRNN  (one)              RNN (tanh or relu)    bias (H,) -> bias_ih; bias_hh = 0
    ========== ================== ===================== ===============================================

    Keras' equations are then those of the numrnn layer:

    .. math::

        \text{LSTM:}\quad & [i, f, \tilde c, o] = x K + h U + b, \quad
            c' = \sigma(f) c + \sigma(i) \tanh(\tilde c), \quad h' = \sigma(o) \tanh(c') \\
        \text{GRU, reset\_after:}\quad & z = \sigma(x K_z + b^x_z + h U_z + b^h_z), \quad
            r = \sigma(x K_r + b^x_r + h U_r + b^h_r), \\
            & \tilde h = \tanh(x K_h + b^x_h + r \odot (h U_h + b^h_h)), \quad
            h' = z \odot h + (1 - z) \odot \tilde h \\
        \text{GRU, reset before:}\quad & \tilde h = \tanh(x K_h + b_h + (r \odot h) U_h)
            \text{ (} z, r \text{ without } b^h \text{)} \\
        \text{SimpleRNN:}\quad & h' = \phi(x K + h U + b)

    Parameters
    ----------
    layer_type : {"LSTM", "GRU", "SimpleRNN"}
        The Keras layer class (any case).
    weights : list of array_like
        ``layer.get_weights()``: ``[kernel, recurrent_kernel, bias]``, or without the bias for
        ``use_bias=False``; with ``bidirectional``, those of the forward layer followed by
        those of the backward layer (the order of ``Bidirectional(...).get_weights()``).
    reset_after : bool or None, default None
        GRU only: Keras' ``reset_after``.  None reads it from the bias shape ((2, 3H): True,
        (3H,): False), or takes Keras' default True without a bias.
    activation : {"tanh", "relu"}, default "tanh"
        Keras' ``activation``: "tanh" for LSTM and GRU; "tanh" or "relu" for SimpleRNN.
    recurrent_activation : {None, "sigmoid"}, default None
        Keras' ``recurrent_activation`` of an LSTM or GRU (None: Keras' default, "sigmoid";
        "hard_sigmoid", Keras 1's default, has no numrnn counterpart).  Must be None for a
        SimpleRNN.
    bidirectional : bool, default False
        Weights of a ``Bidirectional`` wrapper with ``merge_mode="concat"`` (its default):
        the numrnn layer concatenates the directions in the same order.
    batch_first : bool, default True
        Input layout of the numrnn layer: True takes Keras' (B, T, F).
    dtype : {None, np.float32, np.float64}
        None: that of the weights (all float32, or all float64).
    backend, seed
        Of the numrnn layer (the seed draws dropout masks; the weights are the given ones).

    Returns
    -------
    numrnn.LSTM, numrnn.GRU or numrnn.RNN
        One layer (``num_layers=1``); for a stack of Keras layers, convert each and chain them
        in :class:`numrnn.nn.Sequential`.  Keras' ``return_sequences`` output is the layer's
        ``y``, its final state ``h_n[-1]`` (``h_n[0]``, ``h_n[1]`` for the two directions).

    Raises
    ------
    TypeError
        For ``weights`` that are not a list of real arrays, or of mixed dtypes without
        ``dtype``.
    ValueError
        For a wrong number of arrays, shapes that do not fit together (expected and actual
        shapes are named), a ``reset_after`` that contradicts the bias shape, or activations
        with no numrnn counterpart.

    Notes
    -----
    Keras' ``dropout`` and ``recurrent_dropout`` (masks on the inputs and the state within one
    layer) have no counterpart: the weights give the inference-time layer.  ``go_backwards``
    alone (without ``Bidirectional``) is not covered: reverse the sequence instead.
    """
    record = _keras_layer(layer_type)
    bidirectional = check.check_bool(bidirectional, "bidirectional")
    batch_first = check.check_bool(batch_first, "batch_first")
    _check_keras_options(record, activation, recurrent_activation, reset_after)
    if reset_after is not None:
        reset_after = check.check_bool(reset_after, "reset_after")
    arrays, dtype = _keras_arrays(weights, dtype)
    directions = 2 if bidirectional else 1
    if len(arrays) not in (2 * directions, 3 * directions):
        expected = "[kernel, recurrent_kernel, bias] or [kernel, recurrent_kernel]"
        if bidirectional:
            expected = f"{expected} for each direction (6 or 4 arrays, forward first)"
        raise ValueError(f"weights must be {expected}, got {len(arrays)} arrays")
    per_direction = len(arrays) // directions
    inputs, hidden, reset_after = _keras_sizes(record, arrays, per_direction, bidirectional, reset_after)
    state = _keras_state(record, arrays, hidden, directions, per_direction, reset_after, dtype)

    from numrnn.nn import recurrent

    family = record.family(activation, reset_after)
    layer = getattr(recurrent, family.layer)(inputs, hidden, bias=per_direction == 3, batch_first=batch_first,
                                             bidirectional=bidirectional, dtype=dtype, backend=backend, seed=seed,
                                             **record.options(activation, family))
    layer.load_state_dict(state)
    return layer


def _check_keras_options(record, activation, recurrent_activation, reset_after):
    """Refuse Keras activations with no numrnn counterpart, and ``reset_after`` outside a GRU."""
    if not isinstance(activation, str):
        raise TypeError(f"activation must be a str, got {type(activation).__name__}")
    if activation not in record.activations:
        raise ValueError(f"activation {record.activation_rule}, got {activation!r}")
    if recurrent_activation is not None and recurrent_activation not in record.recurrent_activations:
        raise ValueError(f"recurrent_activation {record.recurrent_rule}, got {recurrent_activation!r}")
    if not record.takes_reset_after and reset_after is not None:
        raise ValueError(f"reset_after applies to a GRU only, got reset_after={reset_after!r} for {record.noun}")


def _keras_sizes(record, arrays, per_direction, bidirectional, reset_after):
    """``(I, H, reset_after)`` from the shapes of Keras' arrays, which must fit together.

    ``reset_after`` (a GRU's; None: read from the bias shape, or Keras' default True without
    a bias) comes back checked against the bias.
    """
    name, gates = record.name, record.gates
    recurrent = arrays[1]
    if recurrent.ndim != 2 or recurrent.shape[1] != gates * recurrent.shape[0] or recurrent.shape[0] == 0:
        raise ValueError(
            f"weights[1] (recurrent_kernel) of a {name} must have shape (H, {gates}*H), got {recurrent.shape}"
        )
    hidden = recurrent.shape[0]
    kernel = arrays[0]
    if kernel.ndim != 2 or kernel.shape[1] != gates * hidden or kernel.shape[0] == 0:
        raise ValueError(
            f"weights[0] (kernel) of a {name} with H = {hidden} must have shape (I, {gates * hidden}), "
            f"got {kernel.shape}"
        )
    if per_direction == 3:
        bias = arrays[2]
        if record.takes_reset_after:
            if reset_after is None:
                reset_after = bias.ndim == 2
            shape = (2, gates * hidden) if reset_after else (gates * hidden,)
            if bias.shape != shape:
                raise ValueError(
                    f"weights[2] (bias) of a {name} with reset_after={reset_after} and H = {hidden} must have shape "
                    f"{shape}, got {bias.shape}"
                )
        elif bias.shape != (gates * hidden,):
            raise ValueError(f"weights[2] (bias) of a {name} with H = {hidden} must have shape "
                             f"({gates * hidden},), got {bias.shape}")
    elif record.takes_reset_after and reset_after is None:
        reset_after = True  # Keras' default
    if bidirectional:
        for i in range(per_direction):
            if arrays[per_direction + i].shape != arrays[i].shape:
                raise ValueError(
                    f"weights[{per_direction + i}] (backward layer) must have the shape of weights[{i}] "
                    f"{arrays[i].shape}, got {arrays[per_direction + i].shape}"
                )
    return kernel.shape[0], hidden, reset_after


def _keras_state(record, arrays, hidden, directions, per_direction, reset_after, dtype):
    """The numrnn ``state_dict`` of Keras' (checked) arrays: transposed, the GRU's gates reordered
    (z, r, h -> r, z, n), Keras' single bias as ``bias_ih`` with ``bias_hh = 0``."""
    order = record.order(hidden)
    state = {}
    for direction in range(directions):
        k, u, *b = arrays[direction * per_direction:(direction + 1) * per_direction]
        suffix = "_l0" + ("_reverse" if direction else "")
        state[f"weight_ih{suffix}"] = k[:, order].T.copy()
        state[f"weight_hh{suffix}"] = u[:, order].T.copy()
        if b:
            if record.takes_reset_after and reset_after:
                state[f"bias_ih{suffix}"] = b[0][0, order].copy()
                state[f"bias_hh{suffix}"] = b[0][1, order].copy()
            else:
                state[f"bias_ih{suffix}"] = b[0][order].copy()
                state[f"bias_hh{suffix}"] = np.zeros(record.gates * hidden, dtype=dtype)
    return state
