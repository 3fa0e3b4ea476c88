"""numrnn.to_onnx: onnxruntime runs the exported graph to numrnn's outputs (float32, 1e-6)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import numrnn
from numrnn import nn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

#: The largest difference allowed between onnxruntime's outputs and numrnn's, in float32.
TOL = 1e-6

LAYERS = {
    "rnn_tanh": lambda **kw: numrnn.RNN(3, 5, nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: numrnn.RNN(3, 5, nonlinearity="relu", **kw),
    "lstm": lambda **kw: numrnn.LSTM(3, 5, **kw),
    "gru": lambda **kw: numrnn.GRU(3, 5, reset_after=True, **kw),
    "gru_cho": lambda **kw: numrnn.GRU(3, 5, reset_after=False, **kw),
}


def randomised(model, seed=0):
    """``model`` with every parameter drawn from U(-0.6, 0.6): unequal, non-zero biases."""
    rng = np.random.default_rng(seed)
    for v in model.params.values():
        v[...] = rng.uniform(-0.6, 0.6, v.shape)
    return model


def run_onnx(model, x, tmp_path):
    path = tmp_path / "model.onnx"
    proto = numrnn.to_onnx(model, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return proto, session.run(None, {"x": x})


def assert_close(got, want, what):
    assert got.shape == want.shape and got.dtype == want.dtype == np.float32, what
    assert np.std(want) > 0.05, f"{what}: a degenerate output tests nothing"
    err = float(np.max(np.abs(got - want)))
    assert err <= TOL, f"{what}: onnxruntime differs from numrnn by {err:.2e} > {TOL}"
    return err


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("mode", list(LAYERS))
def test_layer_matches_onnxruntime(tmp_path, mode, num_layers, bidirectional):
    layer = randomised(LAYERS[mode](num_layers=num_layers, bidirectional=bidirectional, seed=1))
    x = np.random.default_rng(2).normal(size=(9, 4, 3)).astype(np.float32) * 1.5
    with numrnn.no_grad():
        y, state = layer(x)
    proto, got = run_onnx(layer, x, tmp_path)
    want = [y, *state] if mode == "lstm" else [y, state]
    assert [o.name for o in proto.graph.output] == ["y", "h_n", "c_n"][: len(want)]
    for name, g, w in zip(["y", "h_n", "c_n"], got, want):
        assert_close(g, w, name)
    op = {"lstm": "LSTM", "gru": "GRU", "gru_cho": "GRU"}.get(mode, "RNN")
    nodes = [n for n in proto.graph.node if n.op_type == op]
    assert len(nodes) == num_layers  # one node per layer, both directions in it
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs["direction"] == (b"bidirectional" if bidirectional else b"forward")
    if op == "GRU":
        assert attrs["linear_before_reset"] == (1 if mode == "gru" else 0)
    if op == "RNN":
        assert attrs["activations"] == [b"Tanh" if mode == "rnn_tanh" else b"Relu"] * (1 + bidirectional)


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
def test_batch_first_and_no_bias(tmp_path, mode):
    layer = randomised(LAYERS[mode](num_layers=2, bias=False, batch_first=True, bidirectional=True, seed=3))
    x = np.random.default_rng(4).normal(size=(4, 6, 3)).astype(np.float32)  # (B, T, I)
    with numrnn.no_grad():
        y, state = layer(x)
    proto, got = run_onnx(layer, x, tmp_path)
    assert not [i for i in proto.graph.initializer if "_B_" in i.name]
    for name, g, w in zip(["y", "h_n", "c_n"], got, [y, *state] if mode == "lstm" else [y, state]):
        assert_close(g, w, name)


@pytest.mark.parametrize(
    "make, op",
    [
        (lambda: nn.Sequential(numrnn.LSTM(3, 5, num_layers=2, bidirectional=True, seed=0), nn.LastStep(),
                               nn.Linear(10, 2, seed=1)), "Gemm"),
        (lambda: nn.Sequential(numrnn.GRU(3, 5, seed=0), nn.Dropout(0.3, seed=2), nn.Linear(5, 4, seed=1),
                               nn.Tanh(), nn.Linear(4, 2, bias=False, seed=3)), "MatMul"),
        (lambda: nn.Sequential(numrnn.RNN(3, 5, nonlinearity="relu", batch_first=True, seed=0),
                               nn.LastStep(batch_first=True), nn.Linear(5, 2, seed=1), nn.Sigmoid()), "Gemm"),
        (lambda: nn.Sequential(numrnn.GRU(3, 4, reset_after=False, seed=0), numrnn.LSTM(4, 5, seed=1), nn.ReLU(),
                               nn.Linear(5, 3, seed=2)), "MatMul"),
        (lambda: nn.Linear(3, 2, seed=5), "Gemm"),
    ],
    ids=["lstm-laststep-gemm", "gru-dropout-linear3d", "relu-batch_first", "gru_cho-lstm", "linear"],
)
def test_sequential_with_linear_matches_onnxruntime(tmp_path, make, op):
    model = randomised(make(), seed=7).eval()
    rng = np.random.default_rng(8)
    x = rng.normal(size=(5, 3) if isinstance(model, nn.Linear) else (6, 5, 3)).astype(np.float32)
    with numrnn.no_grad():
        y = model(x)
    proto, (got,) = run_onnx(model, x, tmp_path)
    assert op in [n.op_type for n in proto.graph.node]
    assert_close(got, y, "y")


def test_symbolic_axes_take_other_lengths_and_batches(tmp_path):
    layer = randomised(numrnn.LSTM(3, 5, seed=0))
    path = tmp_path / "m.onnx"
    numrnn.to_onnx(layer, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 1, 3), (20, 7, 3)]:
        x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
        with numrnn.no_grad():
            y, _ = layer(x)
        assert_close(session.run(["y"], {"x": x})[0], y, f"y for {shape}")
    assert [f.name for f in os.scandir(tmp_path)] == ["m.onnx"]  # no temporary left


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: nn.Sequential(nn.Embedding(5, 3, seed=0), numrnn.LSTM(3, 2, seed=0)), TypeError,
         r"cannot export model\['0'\] \(Embedding\): only RNN, LSTM, GRU, Linear"),
        (lambda: nn.Sequential(numrnn.LSTM(3, 2, seed=0), nn.LayerNorm(2)), TypeError,
         r"cannot export model\['1'\] \(LayerNorm\)"),
        (lambda: nn.LSTMCell(3, 2, seed=0), TypeError, r"cannot export model \(LSTMCell\)"),
        (lambda: nn.Sequential(nn.Sequential(nn.Linear(2, 2, seed=0))), TypeError, "a Sequential inside a Sequential"),
        (lambda: nn.Sequential(nn.Tanh()), TypeError, "needs a recurrent layer or a Linear"),
        (lambda: nn.Sequential(nn.LastStep(), nn.Linear(2, 2, seed=0)), ValueError, "LastStep before any recurrent"),
        (lambda: nn.Sequential(numrnn.LSTM(3, 2, seed=0), nn.LastStep(), numrnn.GRU(2, 2, seed=0)), ValueError,
         r"model\['2'\] \(GRU\) needs 3-D input, the module before it gives 2-D"),
        (lambda: nn.Sequential(numrnn.LSTM(3, 2, seed=0), nn.Linear(2, 2, dtype=np.float64, seed=0)), TypeError,
         r"one dtype for every layer of model, got \['float32', 'float64'\]"),
    ],
    ids=["embedding", "layernorm", "cell", "nested", "no size", "laststep first", "rank", "dtypes"],
)
def test_modules_that_cannot_be_exported_are_refused(tmp_path, make, error, message):
    path = tmp_path / "m.onnx"
    with pytest.raises(error, match=message):
        numrnn.to_onnx(make(), path)
    assert os.listdir(tmp_path) == []


def test_a_user_module_is_refused_naming_its_class(tmp_path):
    import io_user_models

    with pytest.raises(TypeError, match=r"cannot export model \(Tagger\)"):
        numrnn.to_onnx(io_user_models.Tagger(5, 2), tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        numrnn.to_onnx(numrnn.LSTM(1, 2, seed=0), 3)


@pytest.mark.parametrize("mode", list(LAYERS))
def test_state_inputs_run_step_by_step_like_step(tmp_path, mode):
    """With state_inputs=True the graph takes h0 (and c0): fed back, it streams like layer.step."""
    layer = randomised(LAYERS[mode](num_layers=2, seed=5)).eval()
    path = tmp_path / "m.onnx"
    proto = numrnn.to_onnx(layer, path, state_inputs=True)
    names = ["x", "h0", "c0"] if mode == "lstm" else ["x", "h0"]
    assert [i.name for i in proto.graph.input if i.name in names] == names
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xs = np.random.default_rng(6).normal(size=(5, 2, 3)).astype(np.float32)
    zeros = np.zeros((2, 2, 5), np.float32)
    state = (zeros, zeros) if mode == "lstm" else zeros
    feed = dict(zip(names[1:], state if mode == "lstm" else (state,)))
    for t in range(len(xs)):
        y_t, state = layer.step(xs[t], state)
        out = session.run(None, {"x": xs[t:t + 1], **feed})
        feed = dict(zip(names[1:], out[1:]))
        assert_close(out[0][0], y_t, f"y at step {t}")
        for got, want in zip(out[1:], state if mode == "lstm" else (state,)):
            assert_close(got, want, f"state at step {t}")


def test_state_inputs_need_a_recurrent_layer(tmp_path):
    with pytest.raises(TypeError, match="state_inputs=True needs a single recurrent layer as model, got Sequential"):
        numrnn.to_onnx(nn.Sequential(numrnn.GRU(2, 2, seed=0)), tmp_path / "m.onnx", state_inputs=True)
    with pytest.raises(TypeError, match="state_inputs must be a bool"):
        numrnn.to_onnx(numrnn.GRU(2, 2, seed=0), tmp_path / "m.onnx", state_inputs="yes")
