"""Parity with PyTorch's ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (skipped without torch).

The same parameters are loaded into both; outputs, final states, the gradients of
the input and initial states and every weight gradient must agree to 1e-9 relative
in float64 and 2e-4 in float32 (relative to each value and to the array's scale, see
:func:`helpers.assert_rel_close`).  ``lengths`` is compared with
``pack_padded_sequence(enforce_sorted=False)`` / ``pad_packed_sequence``.  The Cho
form of the GRU has no PyTorch counterpart (it is held to the naive reference and
finite differences instead).
"""

from __future__ import annotations

import numpy as np
import pytest

import naive
from helpers import (
    Case,
    assert_rel_close,
    backward,
    forward,
    make_layer,
    option_grid,
    random_inputs,
    random_params,
    set_params,
)

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

TORCH_MODES = ("rnn_tanh", "rnn_relu", "lstm", "gru")
GRID = option_grid(TORCH_MODES)
FLOAT32_GRID = [
    case
    for mode in TORCH_MODES
    for case in (
        Case(mode, input_size=7, hidden_size=7, steps=6, batch=4),
        Case(mode, num_layers=2, bidirectional=True, lengths=True, batch_first=True),
        Case(mode, unbatched=True, num_layers=2),
    )
]
TOLERANCE = {np.float64: 1e-9, np.float32: 2e-4}


def torch_module(case, params, dtype):
    """The PyTorch module for ``case`` holding ``params`` (cast to ``dtype``)."""
    nn = torch.nn
    kwargs = dict(num_layers=case.num_layers, bias=case.bias, batch_first=case.batch_first,
                  bidirectional=case.bidirectional, dtype=torch.float64)
    if case.mode == "lstm":
        module = nn.LSTM(case.input_size, case.hidden_size, **kwargs)
    elif case.mode == "gru":
        module = nn.GRU(case.input_size, case.hidden_size, **kwargs)
    else:
        module = nn.RNN(case.input_size, case.hidden_size,
                        nonlinearity=case.mode.split("_")[1], **kwargs)
    module = module.to({np.float64: torch.float64, np.float32: torch.float32}[dtype])
    module.load_state_dict({k: torch.tensor(np.asarray(v, dtype=dtype)) for k, v in params.items()})
    return module


def torch_run(case, module, inp, dtype):
    """Forward and backward of the scalar loss in PyTorch; returns NumPy arrays by name."""
    def leaf(array):
        return torch.tensor(np.asarray(array, dtype=dtype), requires_grad=True)

    x, h0 = leaf(inp["x"]), leaf(inp["h0"])
    c0 = leaf(inp["c0"]) if case.is_lstm else None
    state = (h0, c0) if case.is_lstm else h0
    if inp["lengths"] is not None:
        rnn_utils = torch.nn.utils.rnn
        packed = rnn_utils.pack_padded_sequence(x, torch.as_tensor(inp["lengths"]),
                                                batch_first=case.batch_first,
                                                enforce_sorted=False)
        packed_y, final = module(packed, state)
        y, _ = rnn_utils.pad_packed_sequence(packed_y, batch_first=case.batch_first,
                                             total_length=case.steps)
    else:
        y, final = module(x, state)
    h_n, c_n = final if case.is_lstm else (final, None)
    loss = (y * leaf(inp["dy"]).detach()).sum() + (h_n * leaf(inp["dh_n"]).detach()).sum()
    if case.is_lstm:
        loss = loss + (c_n * leaf(inp["dc_n"]).detach()).sum()
    loss.backward()
    out = dict(y=y, h_n=h_n, x_grad=x.grad, h0_grad=h0.grad)
    if case.is_lstm:
        out.update(c_n=c_n, c0_grad=c0.grad)
    out.update({f"grad_{name}": p.grad for name, p in module.named_parameters()})
    return {k: v.detach().numpy() for k, v in out.items()}


def numrnn_run(case, layer, inp):
    """The same as :func:`torch_run` with the numrnn layer."""
    y, h_n, c_n = forward(layer, case, inp["x"], inp["h0"], inp["c0"], inp["lengths"])
    dx, dh0, dc0 = backward(layer, case, inp["dy"], inp["dh_n"], inp["dc_n"])
    out = dict(y=y, h_n=h_n, x_grad=dx, h0_grad=dh0)
    if case.is_lstm:
        out.update(c_n=c_n, c0_grad=dc0)
    out.update({f"grad_{name}": grad for name, grad in layer.grads.items()})
    return out


def _check_parity(case, dtype, rng):
    params = random_params(case, rng)
    inp = random_inputs(case, rng, dtype=dtype)
    layer = make_layer(case, dtype=dtype)
    set_params(layer, params)
    got = numrnn_run(case, layer, inp)
    want = torch_run(case, torch_module(case, params, dtype), inp, dtype)
    assert set(got) == set(want)
    for name in want:
        assert got[name].dtype == dtype, name
        assert_rel_close(got[name], want[name], TOLERANCE[dtype], name=name)


@pytest.mark.parametrize("case", GRID, ids=Case.id)
def test_parity_float64(case, rng):
    _check_parity(case, np.float64, rng)


@pytest.mark.parametrize("case", FLOAT32_GRID, ids=Case.id)
def test_parity_float32(case, rng):
    _check_parity(case, np.float32, rng)


@pytest.mark.parametrize("case", [c for c in GRID if not c.unbatched], ids=Case.id)
def test_naive_reference_matches_torch(case, rng):
    """The oracle itself is checked against PyTorch (so it cannot share a bug with numrnn)."""
    params = random_params(case, rng)
    inp = random_inputs(case, rng)
    want = torch_run(case, torch_module(case, params, np.float64), inp, np.float64)
    x = inp["x"].transpose(1, 0, 2) if case.batch_first else inp["x"]
    y, h_n, c_n = naive.forward(case.cell, params, x, inp["h0"], inp["c0"],
                                num_layers=case.num_layers, bidirectional=case.bidirectional,
                                lengths=inp["lengths"])
    if case.batch_first:
        y = y.transpose(1, 0, 2)
    np.testing.assert_allclose(y, want["y"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_n, want["h_n"], rtol=1e-12, atol=1e-12)
    if case.is_lstm:
        np.testing.assert_allclose(c_n, want["c_n"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", TORCH_MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loads_torch_state_dict(mode, dtype, rng):
    """A PyTorch ``state_dict`` (PyTorch's own initialisation) converted to NumPy loads
    unchanged and gives the same outputs and gradients."""
    case = Case(mode, num_layers=2, bidirectional=True, input_size=3, hidden_size=7)
    torch.manual_seed(int(rng.integers(2**31)))
    module = torch_module(case, random_params(case, rng), dtype)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.uniform_(-1.0 / np.sqrt(case.hidden_size), 1.0 / np.sqrt(case.hidden_size))
    state = {name: value.detach().numpy().copy() for name, value in module.state_dict().items()}
    layer = make_layer(case, dtype=dtype, seed=123)
    layer.load_state_dict(state)
    for name, value in state.items():
        np.testing.assert_array_equal(layer.params[name], value)
    inp = random_inputs(case, rng, dtype=dtype)
    got = numrnn_run(case, layer, inp)
    want = torch_run(case, module, inp, dtype)
    for name in want:
        assert_rel_close(got[name], want[name], TOLERANCE[dtype], name=name)


def test_torch_thread_count_is_left_alone():
    """Numba's OpenMP layer shares PyTorch's runtime and set its thread count on its first
    parallel launch, undoing ``torch.set_num_threads(1)``; numrnn restores the OpenMP thread
    counts it finds (run in a child, as the first launch is what changed it)."""
    import subprocess
    import sys

    code = (
        "import torch, numpy as np, numrnn\n"
        "torch.set_num_threads(1)\n"
        "assert torch.get_num_threads() == 1\n"  # (reading it first is what made the loss show)
        "layer = numrnn.LSTM(3, 8, seed=0, backend='cpu')\n"
        "y, _ = layer(np.ones((5, 4, 3)))\n"
        "layer.backward(np.ones_like(y))\n"
        "print(torch.get_num_threads())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                            env=dict(__import__("os").environ, NUMBA_NUM_THREADS="2"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
