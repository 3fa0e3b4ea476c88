r"""Export to ONNX: :func:`to_onnx` writes standard ``LSTM``, ``GRU`` and ``RNN`` nodes.

What is exported
----------------
* a recurrent layer (:class:`numrnn.RNN` with ``tanh`` or ``relu``, :class:`numrnn.LSTM`,
  :class:`numrnn.GRU` in both forms), any number of layers, uni- or bidirectional, with or
  without biases, ``batch_first`` or not;
* :class:`numrnn.nn.Linear` (``Gemm`` on 2-D input, ``MatMul`` + ``Add`` on 3-D input);
* :class:`numrnn.nn.Sequential` of those and of :class:`~numrnn.nn.LastStep` (``Gather`` of the
  last timestep), :class:`~numrnn.nn.Tanh`, :class:`~numrnn.nn.ReLU`, :class:`~numrnn.nn.Sigmoid`
  and :class:`~numrnn.nn.Dropout` (the identity, as in inference).

Each layer and direction pair of a recurrent layer becomes one ONNX node per layer
(``direction="bidirectional"`` holding both directions), with the weights reordered from
PyTorch's gate order to ONNX's:

========== ========================== ========================== ==========================
cell       numrnn / PyTorch blocks    ONNX blocks                attributes
========== ========================== ========================== ==========================
LSTM       i, f, g, o                 i, o, f, c                 (defaults: sigmoid, tanh)
GRU        r, z, n                    z, r, h                    ``linear_before_reset=1``
GRU (Cho)  r, z, n                    z, r, h                    ``linear_before_reset=0``
RNN        one block                  one block                  ``activations=[Tanh|Relu]``
========== ========================== ========================== ==========================

ONNX's ``B`` input is ``concat(bias_ih, bias_hh)`` per direction, which is exactly the two
PyTorch biases; ONNX's ``Y`` (T, D, B, H) is transposed and reshaped to numrnn's (T, B, D*H).

The graph runs from a zero initial state over full-length sequences (no ``lengths``): its
input is ``x`` with symbolic ``seq_len`` and ``batch`` axes, and its outputs are those of
numrnn's forward in inference: ``y``, ``h_n`` (and ``c_n`` for the LSTM) for one recurrent
layer, the last module's output ``y`` for a :class:`~numrnn.nn.Sequential` or a Linear.

``onnx`` is imported only inside :func:`to_onnx`; install it with the ``onnx`` extra
(``pip install numrnn[onnx]``, which also brings ``onnxruntime``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["to_onnx", "OPSET"]

#: The ONNX operator set the exported graphs declare (LSTM/GRU/RNN are unchanged since 14).
OPSET = 17
#: IR version written with :data:`OPSET` (what ONNX 1.12, the first with opset 17, writes).
_IR_VERSION = 8

#: ONNX's gate blocks, as indices of numrnn's (PyTorch's) blocks, by kernel name of the cell.
_GATE_ORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "gru_reset_before": [1, 0, 2], "rnn_tanh": [0],
               "rnn_relu": [0]}
#: The ONNX operator of each cell and its attributes (besides hidden_size and direction).
_CELL_OPS = {
    "lstm": ("LSTM", {}),
    "gru": ("GRU", {"linear_before_reset": 1}),
    "gru_reset_before": ("GRU", {"linear_before_reset": 0}),
    "rnn_tanh": ("RNN", {"activations": ["Tanh"]}),
    "rnn_relu": ("RNN", {"activations": ["Relu"]}),
}


def _exportable():
    from numrnn import nn

    return (nn.RNN, nn.LSTM, nn.GRU, nn.Linear, nn.Sequential, nn.LastStep, nn.Tanh, nn.ReLU, nn.Sigmoid,
            nn.Dropout)


class _Graph:
    """The nodes, initializers and fresh names of the graph being built."""

    def __init__(self, helper, numpy_helper, dtype):
        self.helper, self.numpy_helper, self.dtype = helper, numpy_helper, dtype
        self.nodes, self.initializers, self._count = [], [], 0

    def name(self, stem):
        self._count += 1
        return f"{stem}_{self._count}"

    def constant(self, stem, value, dtype=None):
        """An initializer holding ``value`` (in the graph's dtype unless ``dtype``); returns its name."""
        name = self.name(stem)
        arr = np.array(value, dtype=self.dtype if dtype is None else dtype, order="C")  # 0-d stays 0-d
        self.initializers.append(self.numpy_helper.from_array(arr, name))
        return name

    def node(self, op, inputs, stem, outputs=1, **attrs):
        """Add an ``op`` node; returns the name of its output (a list if ``outputs`` > 1)."""
        names = [self.name(f"{stem}_{op.lower()}") for _ in range(outputs)]
        self.nodes.append(self.helper.make_node(op, inputs, names, name=self.name(f"{stem}_{op}"), **attrs))
        return names[0] if outputs == 1 else names


def _recurrent(graph, layer, x, stem, initial=None):
    """Nodes of a recurrent layer on ``x`` (its own layout), from the graph inputs ``initial``
    (``[h0]`` or ``[h0, c0]``, each (L*D, B, H)) or zeros; returns ``(y, [h_n] or [h_n, c_n])``."""
    op, attrs = _CELL_OPS[layer.cell]
    order = _GATE_ORDER[layer.cell]
    hidden, directions = layer.hidden_size, layer.num_directions
    params = layer.state_dict()

    def reorder(w):
        return np.concatenate([w[k * hidden:(k + 1) * hidden] for k in order], axis=0)

    if layer.batch_first:
        x = graph.node("Transpose", [x], stem, perm=[1, 0, 2])
    suffixes = ["", "_reverse"][:directions]
    finals = [[] for _ in range(layer.state_size)]
    activations = attrs.get("activations")
    attrs = dict(attrs, hidden_size=hidden, direction="bidirectional" if directions == 2 else "forward")
    if activations is not None:
        attrs["activations"] = activations * directions
    for k in range(layer.num_layers):
        where = f"{stem}_l{k}"
        w = graph.constant(f"{where}_W", [reorder(params[f"weight_ih_l{k}{s}"]) for s in suffixes])
        r = graph.constant(f"{where}_R", [reorder(params[f"weight_hh_l{k}{s}"]) for s in suffixes])
        inputs = [x, w, r]
        if layer.bias:
            inputs.append(graph.constant(f"{where}_B", [
                np.concatenate([reorder(params[f"bias_ih_l{k}{s}"]), reorder(params[f"bias_hh_l{k}{s}"])])
                for s in suffixes
            ]))
        if initial is not None:  # inputs B (if no bias) and sequence_lens left out, then initial_h (, initial_c)
            inputs += [""] * (5 - len(inputs))
            for state in initial:
                if layer.num_layers == 1:
                    inputs.append(state)
                    continue
                bounds = [graph.constant(f"{where}_{n}", [v], np.int64)
                          for n, v in (("start", k * directions), ("end", (k + 1) * directions), ("axis", 0))]
                inputs.append(graph.node("Slice", [state, *bounds], where))
        outputs = graph.node(op, inputs, where, outputs=1 + layer.state_size, **attrs)
        y, states = outputs[0], outputs[1:]  # Y (T, D, B, H); Y_h (and Y_c) (D, B, H)
        if directions == 1:
            x = graph.node("Squeeze", [y, graph.constant(f"{where}_axis", [1], np.int64)], where)
        else:
            y = graph.node("Transpose", [y], where, perm=[0, 2, 1, 3])
            x = graph.node("Reshape", [y, graph.constant(f"{where}_shape", [0, 0, -1], np.int64)], where)
        for final, state in zip(finals, states):
            final.append(state)
    if layer.batch_first:
        x = graph.node("Transpose", [x], stem, perm=[1, 0, 2])
    finals = [f[0] if len(f) == 1 else graph.node("Concat", f, stem, axis=0) for f in finals]
    return x, finals


def _linear(graph, layer, x, rank, stem):
    """Nodes of a Linear on ``x`` of rank ``rank``: Gemm for 2-D input, MatMul + Add otherwise."""
    params = layer.state_dict()
    if rank == 2:
        inputs = [x, graph.constant(f"{stem}_weight", params["weight"])]
        if layer.bias:
            inputs.append(graph.constant(f"{stem}_bias", params["bias"]))
        return graph.node("Gemm", inputs, stem, transB=1)
    y = graph.node("MatMul", [x, graph.constant(f"{stem}_weight_t", params["weight"].T)], stem)
    if layer.bias:
        y = graph.node("Add", [y, graph.constant(f"{stem}_bias", params["bias"])], stem)
    return y


def _module(graph, module, x, shape, where, initial=None):
    """Nodes of one module (not a Sequential) on ``x`` of (symbolic) ``shape``; returns
    ``(output, its shape, final states or None)``."""
    from numrnn import nn

    stem = where.replace("[", "_").replace("]", "").replace("'", "")
    if isinstance(module, (nn.RNN, nn.LSTM, nn.GRU)):
        if len(shape) != 3:
            raise ValueError(f"to_onnx: {where} ({type(module).__name__}) needs 3-D input, the module before it "
                             f"gives {len(shape)}-D")
        y, finals = _recurrent(graph, module, x, stem, initial)
        return y, shape[:2] + [module.num_directions * module.hidden_size], finals
    if isinstance(module, nn.Linear):
        return _linear(graph, module, x, len(shape), stem), shape[:-1] + [module.out_features], None
    if isinstance(module, nn.LastStep):
        if len(shape) != 3:
            raise ValueError(f"to_onnx: {where} (LastStep) needs 3-D input, the module before it gives {len(shape)}-D")
        axis = 1 if module.batch_first else 0
        index = graph.constant(f"{stem}_last", -1, np.int64)
        return graph.node("Gather", [x, index], stem, axis=axis), shape[:axis] + shape[axis + 1:], None
    ops = {nn.Tanh: "Tanh", nn.ReLU: "Relu", nn.Sigmoid: "Sigmoid"}
    if type(module) in ops:
        return graph.node(ops[type(module)], [x], stem), shape, None
    if isinstance(module, nn.Dropout):  # inference: the identity
        return x, shape, None
    raise AssertionError(type(module))  # _check_exportable let through a module it does not list


def _check_exportable(model, where="model"):
    """``TypeError`` naming the first module (by its place in the tree) that cannot be exported."""
    from numrnn import nn

    exportable = _exportable()
    if type(model) not in exportable:
        names = ", ".join(cls.__name__ for cls in exportable)
        raise TypeError(
            f"to_onnx cannot export {where} ({type(model).__name__}): only {names} (and Sequentials of them) "
            "have an ONNX form"
        )
    if isinstance(model, nn.Sequential):
        for name, child in model.named_children():
            if isinstance(child, nn.Sequential):
                raise TypeError(f"to_onnx cannot export {where}[{name!r}]: a Sequential inside a Sequential")
            _check_exportable(child, f"{where}[{name!r}]")
    dtype = getattr(model, "dtype", None)
    if dtype is not None and np.dtype(dtype) not in (np.float32, np.float64):
        raise TypeError(f"to_onnx cannot export {where}: dtype {dtype}")


def to_onnx(model, path, state_inputs=False):
    """Write ``model`` to ``path`` as an ONNX graph of standard ``LSTM``/``GRU``/``RNN`` nodes.

    See :mod:`numrnn.onnx` for what is exported and how the weights are laid out.

    Parameters
    ----------
    model : numrnn.RNN, numrnn.LSTM, numrnn.GRU, numrnn.nn.Linear or numrnn.nn.Sequential
        A Sequential may hold those layers and LastStep, Tanh, ReLU, Sigmoid and Dropout.  Its
        weights are read once (``state_dict()``); the graph holds them in the model's dtype.
    path : str or os.PathLike
        Destination ``.onnx`` file; written atomically (a temporary file renamed over it).
    state_inputs : bool, default False
        For a single recurrent layer: the graph also takes the initial state, inputs ``h0``
        (and ``c0`` for the LSTM), each (L*D, batch, H) as numrnn's ``state``, so that it can
        be run step by step with the state fed back (streaming).  False: a zero initial state.

    Returns
    -------
    onnx.ModelProto
        The model written (checked with ``onnx.checker.check_model``).

    Raises
    ------
    ImportError
        If ``onnx`` is not installed.
    TypeError
        If ``model`` or a module in it has no ONNX form here (the message names it and its place),
        e.g. an Embedding, a LayerNorm, a trainable cell or a module class of your own.
    ValueError
        If the modules of a Sequential do not fit (a recurrent layer after a LastStep).

    Notes
    -----
    The graph's input is ``x``: (seq_len, batch, I), or (batch, seq_len, I) if the first
    recurrent layer is ``batch_first``; (batch, in_features) when the first module is a Linear.  Outputs: ``y``
    (numrnn's output), and for a single recurrent layer also ``h_n`` (L*D, batch, H) and, for
    the LSTM, ``c_n``.  The initial state is zero (or ``h0``/``c0``, see ``state_inputs``) and
    every sequence is full length.

    Examples
    --------
    >>> import numrnn, numpy as np, os, tempfile                     # doctest: +SKIP
    >>> model = numrnn.nn.Sequential(numrnn.LSTM(1, 32, seed=0), numrnn.nn.Linear(32, 1, seed=1))  # doctest: +SKIP
    >>> path = os.path.join(tempfile.mkdtemp(), "model.onnx")      # doctest: +SKIP
    >>> _ = numrnn.to_onnx(model, path)                             # doctest: +SKIP
    >>> import onnxruntime                                         # doctest: +SKIP
    >>> session = onnxruntime.InferenceSession(path)               # doctest: +SKIP
    >>> y, = session.run(None, {"x": np.zeros((10, 4, 1), np.float32)})  # doctest: +SKIP
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise ImportError(
            "numrnn.to_onnx needs the onnx package: pip install onnx (or numrnn[onnx], which adds onnxruntime)"
        ) from exc
    from numrnn import _validation as check
    from numrnn import nn
    from numrnn.io import _check_path, write_atomically

    path = _check_path(path)
    state_inputs = check.check_bool(state_inputs, "state_inputs")
    _check_exportable(model)
    recurrent = (nn.RNN, nn.LSTM, nn.GRU)
    if state_inputs and not isinstance(model, recurrent):
        raise TypeError(f"state_inputs=True needs a single recurrent layer as model, got {type(model).__name__}")
    modules = list(model.named_children()) if isinstance(model, nn.Sequential) else [("", model)]
    if all(isinstance(m, (nn.Dropout, nn.Tanh, nn.ReLU, nn.Sigmoid)) for _, m in modules):
        raise TypeError("to_onnx needs a recurrent layer or a Linear in model: it has no input size")
    dtypes = {np.dtype(m.dtype) for _, m in modules if hasattr(m, "dtype")}
    if len(dtypes) != 1:
        raise TypeError(f"to_onnx needs one dtype for every layer of model, got {sorted(str(d) for d in dtypes)}")
    dtype = dtypes.pop()
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE

    first = next(m for _, m in modules if isinstance(m, (nn.RNN, nn.LSTM, nn.GRU, nn.Linear)))
    leading = next(m for _, m in modules if not isinstance(m, (nn.Dropout, nn.Tanh, nn.ReLU, nn.Sigmoid)))
    if isinstance(leading, nn.Linear):
        x_shape = ["batch", first.in_features]
    elif isinstance(leading, nn.LastStep):
        raise ValueError("to_onnx: a LastStep before any recurrent layer has no input size to export")
    else:
        x_shape = ["batch", "seq_len", first.input_size] if first.batch_first else ["seq_len", "batch", first.input_size]

    graph = _Graph(helper, numpy_helper, dtype)
    inputs = [helper.make_tensor_value_info("x", elem, x_shape)]
    initial = None
    if state_inputs:
        initial = ["h0", "c0"][: model.state_size]
        state_shape = [model.num_layers * model.num_directions, "batch", model.hidden_size]
        inputs += [helper.make_tensor_value_info(n, elem, state_shape) for n in initial]
    x, shape, finals = "x", x_shape, None
    for name, module in modules:
        x, shape, finals = _module(graph, module, x, shape, f"model[{name!r}]" if name else "model", initial)

    outputs, shapes = [x], [shape]
    if not isinstance(model, nn.Sequential) and finals is not None:
        outputs += finals
        shapes += [[model.num_layers * model.num_directions, "batch", model.hidden_size]] * len(finals)
    out_names = ["y", "h_n", "c_n"][: len(outputs)]
    for src, dst in zip(outputs, out_names):  # the graph's outputs under fixed names
        graph.nodes.append(helper.make_node("Identity", [src], [dst], name=f"output_{dst}"))
    value_infos = [helper.make_tensor_value_info(n, elem, s) for n, s in zip(out_names, shapes)]
    onnx_graph = helper.make_graph(
        graph.nodes, f"numrnn_{type(model).__name__}", inputs, value_infos, initializer=graph.initializers,
    )
    proto = helper.make_model(onnx_graph, producer_name="numrnn", opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = _IR_VERSION
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    write_atomically(path, lambda fh: fh.write(data))
    return proto
