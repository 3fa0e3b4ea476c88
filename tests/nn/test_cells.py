"""numrnn.nn.RNNCell / LSTMCell / GRUCell: PyTorch parity (forward, per-call backward, a feedback
loop), central finite differences, float32, the stack of saved calls, and bad input.

Torch tests compare in float64 to 1e-9 relative (:func:`helpers.assert_rel_close`: relative to
each value and to the array's scale) and skip without torch; the finite-difference tests need no
torch and cover the Cho-form GRU, which PyTorch lacks.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import numrnn
from helpers import assert_rel_close
from numrnn import nn
from numrnn.nn.cells import CellBase

#: (name, class, keyword arguments); torch=False where PyTorch has no counterpart.
FAMILIES = [
    ("rnn_tanh", nn.RNNCell, {"nonlinearity": "tanh"}, True),
    ("rnn_relu", nn.RNNCell, {"nonlinearity": "relu"}, True),
    ("lstm", nn.LSTMCell, {}, True),
    ("gru", nn.GRUCell, {}, True),
    ("gru_reset_before", nn.GRUCell, {"reset_after": False}, False),
]
TORCH_FAMILIES = [f for f in FAMILIES if f[3]]
IDS = [f[0] for f in FAMILIES]
TORCH_IDS = [f[0] for f in TORCH_FAMILIES]
RTOL64 = 1e-9
RTOL32 = 2e-4


def make_cell(cls, kwargs, input_size, hidden_size, rng, dtype=np.float64, bias=True, seed=0):
    """A cell with random, non-zero, unequal biases (so b_ih and b_hh gradients are told apart)."""
    cell = cls(input_size, hidden_size, bias=bias, dtype=dtype, seed=seed, **kwargs)
    for name, value in cell.params.items():
        value[...] = rng.uniform(-0.6, 0.6, size=value.shape)
    return cell


def is_lstm(cell):
    return isinstance(cell, nn.LSTMCell)


def torch_cell(torch, cell):
    family = cell.cell
    size = (cell.input_size, cell.hidden_size)
    if family.startswith("rnn"):
        ref = torch.nn.RNNCell(*size, bias=cell.bias, nonlinearity=cell.nonlinearity)
    elif family == "lstm":
        ref = torch.nn.LSTMCell(*size, bias=cell.bias)
    else:
        ref = torch.nn.GRUCell(*size, bias=cell.bias)
    ref = ref.to(torch.float64 if cell.dtype == np.float64 else torch.float32)
    ref.load_state_dict({k: torch.tensor(v) for k, v in cell.state_dict().items()})
    return ref


def state_parts(state):
    return list(state) if isinstance(state, tuple) else [state]


# --------------------------------------------------------------------------- torch parity


#: Batch sizes: unbatched, a small batch, and one past BLAS_MIN_ROWS (BLAS products).
BATCHES = [None, 3, 20]


@pytest.mark.torch
@pytest.mark.parametrize("family", TORCH_FAMILIES, ids=TORCH_IDS)
@pytest.mark.parametrize("batch", BATCHES, ids=["unbatched", "B3", "B20"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_loop_matches_torch(family, batch, bias, rng):
    """A 4-step loop with a loss on every output: outputs, then per-call backward in reverse."""
    torch = pytest.importorskip("torch")
    _, cls, kwargs, _ = family
    cell = make_cell(cls, kwargs, 5, 7, rng, bias=bias)
    ref = torch_cell(torch, cell)
    lead = () if batch is None else (batch,)
    steps = 4
    xs = rng.normal(size=(steps,) + lead + (5,))
    h0 = rng.normal(size=lead + (7,))
    c0 = rng.normal(size=lead + (7,))
    g_h = rng.normal(size=(steps,) + lead + (7,))
    g_c = rng.normal(size=(steps,) + lead + (7,))
    lstm = is_lstm(cell)

    txs = torch.tensor(xs, requires_grad=True)
    th0, tc0 = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    tstate = (th0, tc0) if lstm else th0
    loss = 0
    touts = []
    for t in range(steps):
        tstate = ref(txs[t], tstate)
        parts = state_parts(tstate)
        touts.append([p.detach().numpy() for p in parts])
        loss = loss + (parts[0] * torch.tensor(g_h[t])).sum()
        if lstm:
            loss = loss + (parts[1] * torch.tensor(g_c[t])).sum()
    loss.backward()

    state = (h0, c0) if lstm else h0
    for t in range(steps):
        state = cell(xs[t], state)
        for k, part in enumerate(state_parts(state)):
            assert part.shape == lead + (7,)
            assert_rel_close(part, touts[t][k], RTOL64, f"step {t} state {k}")
    assert cell.saved_calls == steps

    dxs = np.empty_like(xs)
    dh_next = dc_next = None
    for t in reversed(range(steps)):
        dh = g_h[t] + (0 if dh_next is None else dh_next)
        if lstm:
            dc = g_c[t] + (0 if dc_next is None else dc_next)
            dxs[t], (dh_next, dc_next) = cell.backward(dh, dc)
        else:
            dxs[t], dh_next = cell.backward(dh)
    assert cell.saved_calls == 0
    assert_rel_close(dxs, txs.grad.numpy(), RTOL64, "dx")
    assert_rel_close(dh_next, th0.grad.numpy(), RTOL64, "dh0")
    if lstm:
        assert_rel_close(dc_next, tc0.grad.numpy(), RTOL64, "dc0")
    assert set(cell.grads) == {name for name, _ in ref.named_parameters()}
    for name, p in ref.named_parameters():
        assert_rel_close(cell.grads[name], p.grad.numpy(), RTOL64, name)


@pytest.mark.torch
@pytest.mark.parametrize("family", TORCH_FAMILIES, ids=TORCH_IDS)
def test_feedback_loop_matches_torch_autograd(family, rng):
    """6 steps; each output goes through a Linear (H -> I) and is the next input; loss on all
    steps.  Gradients of x0, the initial state, the cell's and the readout's parameters."""
    torch = pytest.importorskip("torch")
    _, cls, kwargs, _ = family
    inputs, hidden, batch, steps = 4, 6, 3, 6
    cell = make_cell(cls, kwargs, inputs, hidden, rng)
    ref = torch_cell(torch, cell)
    w, b = rng.normal(size=(inputs, hidden)) * 0.5, rng.normal(size=inputs) * 0.1
    x0, h0, c0 = rng.normal(size=(batch, inputs)), rng.normal(size=(batch, hidden)), rng.normal(size=(batch, hidden))
    targets = rng.normal(size=(steps, batch, inputs))
    lstm = is_lstm(cell)

    # PyTorch, autograd
    tw, tb = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    tx0 = torch.tensor(x0, requires_grad=True)
    th0, tc0 = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    tstate = (th0, tc0) if lstm else th0
    x, loss = tx0, 0
    for t in range(steps):
        tstate = ref(x, tstate)
        h = tstate[0] if lstm else tstate
        out = h @ tw.T + tb
        loss = loss + ((out - torch.tensor(targets[t])) ** 2).sum()
        x = out
    loss.backward()

    # numrnn: the same loop, then its backward as a loop of backward calls
    state, x, hs, outs = ((h0, c0) if lstm else h0), x0, [], []
    for t in range(steps):
        state = cell(x, state)
        h = state[0] if lstm else state
        out = h @ w.T + b
        hs.append(h)
        outs.append(out)
        x = out
    value = sum(((outs[t] - targets[t]) ** 2).sum() for t in range(steps))
    np.testing.assert_allclose(value, loss.item(), rtol=RTOL64)
    dw, db = np.zeros_like(w), np.zeros_like(b)
    dx_next = np.zeros((batch, inputs))  # gradient reaching out_t through call t+1's x
    dh_next = dc_next = None
    for t in reversed(range(steps)):
        dout = 2 * (outs[t] - targets[t]) + dx_next
        dw += dout.T @ hs[t]
        db += dout.sum(axis=0)
        dh = dout @ w + (0 if dh_next is None else dh_next)
        if lstm:
            dx_next, (dh_next, dc_next) = cell.backward(dh, dc_next)
        else:
            dx_next, dh_next = cell.backward(dh)
    assert_rel_close(dx_next, tx0.grad.numpy(), RTOL64, "dx0")
    assert_rel_close(dh_next, th0.grad.numpy(), RTOL64, "dh0")
    if lstm:
        assert_rel_close(dc_next, tc0.grad.numpy(), RTOL64, "dc0")
    assert_rel_close(dw, tw.grad.numpy(), RTOL64, "readout weight")
    assert_rel_close(db, tb.grad.numpy(), RTOL64, "readout bias")
    for name, p in ref.named_parameters():
        assert_rel_close(cell.grads[name], p.grad.numpy(), RTOL64, name)


@pytest.mark.torch
@pytest.mark.parametrize("family", TORCH_FAMILIES, ids=TORCH_IDS)
def test_backward_all_matches_torch(family, rng):
    torch = pytest.importorskip("torch")
    _, cls, kwargs, _ = family
    cell = make_cell(cls, kwargs, 3, 5, rng)
    ref = torch_cell(torch, cell)
    lstm = is_lstm(cell)
    xs, g = rng.normal(size=(5, 2, 3)), rng.normal(size=(5, 2, 5))
    dc_last = rng.normal(size=(2, 5))
    txs = torch.tensor(xs, requires_grad=True)
    tstate, loss = None, 0
    for t in range(5):
        tstate = ref(txs[t], tstate)
        loss = loss + ((tstate[0] if lstm else tstate) * torch.tensor(g[t])).sum()
    if lstm:
        loss = loss + (tstate[1] * torch.tensor(dc_last)).sum()
    loss.backward()
    state = None
    for t in range(5):
        state = cell(xs[t], state)
    dx, dstate0 = cell.backward_all(g, (None, dc_last) if lstm else None)
    assert cell.saved_calls == 0
    assert_rel_close(dx, txs.grad.numpy(), RTOL64, "dx")
    assert all(part.shape == (2, 5) for part in state_parts(dstate0))
    for name, p in ref.named_parameters():
        assert_rel_close(cell.grads[name], p.grad.numpy(), RTOL64, name)


@pytest.mark.torch
@pytest.mark.parametrize("family", TORCH_FAMILIES, ids=TORCH_IDS)
def test_float32_matches_torch(family, rng):
    torch = pytest.importorskip("torch")
    _, cls, kwargs, _ = family
    cell = make_cell(cls, kwargs, 8, 16, rng, dtype=np.float32)
    ref = torch_cell(torch, cell)
    lstm = is_lstm(cell)
    xs = rng.normal(size=(3, 4, 8)).astype(np.float32)
    g = rng.normal(size=(3, 4, 16)).astype(np.float32)
    txs = torch.tensor(xs, requires_grad=True)
    tstate, loss = None, 0
    for t in range(3):
        tstate = ref(txs[t], tstate)
        loss = loss + ((tstate[0] if lstm else tstate) * torch.tensor(g[t])).sum()
    loss.backward()
    state = None
    for t in range(3):
        state = cell(xs[t], state)
        assert (state[0] if lstm else state).dtype == np.float32
    h = state[0] if lstm else state
    assert_rel_close(h, (tstate[0] if lstm else tstate).detach().numpy(), RTOL32, "h")
    dx, _ = cell.backward_all(g)
    assert dx.dtype == np.float32
    assert_rel_close(dx, txs.grad.numpy(), RTOL32, "dx")
    for name, p in ref.named_parameters():
        assert cell.grads[name].dtype == np.float32
        assert_rel_close(cell.grads[name], p.grad.numpy(), RTOL32, name)


# --------------------------------------------------------------------------- finite differences


def loop_loss(cell, params, xs, state0, g_h, g_c):
    """sum_t <g_h[t], h_t> (+ <g_c[t], c_t>) over the loop ``state = cell(xs[t], state)`` run with
    ``params`` (saving nothing), the cell's own parameters put back afterwards."""
    saved = {k: v.copy() for k, v in cell.params.items()}
    for k, v in params.items():
        cell.params[k][...] = v
    try:
        with cell.no_grad():
            state, total = state0, 0.0
            for t in range(len(xs)):
                state = cell(xs[t], state)
                parts = state_parts(state)
                total += float((parts[0] * g_h[t]).sum())
                if len(parts) == 2:
                    total += float((parts[1] * g_c[t]).sum())
    finally:
        for k, v in saved.items():
            cell.params[k][...] = v
    return total


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
@pytest.mark.parametrize("batch", [2, 17], ids=["B2", "B17"])
def test_finite_differences(family, batch, rng):
    """Every gradient (x of each call, h0, c0, every parameter entry) against central differences
    of the float64 loss, for odd sizes and non-zero, unequal biases; no torch.  B = 17 takes the
    BLAS products (numrnn.nn.cells.BLAS_MIN_ROWS)."""
    _, cls, kwargs, _ = family
    inputs, hidden, steps = 3, 5, 3
    cell = make_cell(cls, kwargs, inputs, hidden, rng)
    lstm = is_lstm(cell)
    xs = rng.normal(size=(steps, batch, inputs))
    h0, c0 = rng.normal(size=(batch, hidden)), rng.normal(size=(batch, hidden))
    g_h, g_c = rng.normal(size=(steps, batch, hidden)), rng.normal(size=(steps, batch, hidden))
    if cell.cell == "rnn_relu":  # keep pre-activations away from the kink
        xs += 0.5

    state = (h0, c0) if lstm else h0
    for t in range(steps):
        state = cell(xs[t], state)
    dxs = np.empty_like(xs)
    dh, dc = None, None
    for t in reversed(range(steps)):
        dh = g_h[t] + (0 if dh is None else dh)
        if lstm:
            dc = g_c[t] + (0 if dc is None else dc)
            dxs[t], (dh, dc) = cell.backward(dh, dc)
        else:
            dxs[t], dh = cell.backward(dh)

    eps = 1e-6
    params = {k: v.copy() for k, v in cell.params.items()}

    def loss_of(xs_=xs, h0_=h0, c0_=c0, params_=params):
        return loop_loss(cell, params_, xs_, (h0_, c0_) if lstm else h0_, g_h, g_c)

    def numeric(array, evaluate):
        out = np.empty_like(array)
        for idx in np.ndindex(array.shape):
            keep = array[idx]
            array[idx] = keep + eps
            up = evaluate()
            array[idx] = keep - eps
            down = evaluate()
            array[idx] = keep
            out[idx] = (up - down) / (2 * eps)
        return out

    tol = 1e-6
    assert_rel_close(dxs, numeric(xs, loss_of), tol, "dx")
    assert_rel_close(dh, numeric(h0, loss_of), tol, "dh0")
    if lstm:
        assert_rel_close(dc, numeric(c0, loss_of), tol, "dc0")
    for name in params:
        assert_rel_close(cell.grads[name], numeric(params[name], loss_of), tol, name)


# --------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_float32_close_to_float64(family, rng):
    _, cls, kwargs, _ = family
    cell64 = make_cell(cls, kwargs, 6, 9, rng)
    cell32 = cls(6, 9, dtype=np.float32, **kwargs)
    cell32.load_state_dict(cell64.state_dict())
    xs, g = rng.normal(size=(4, 3, 6)), rng.normal(size=(4, 3, 9))
    s64 = s32 = None
    for t in range(4):
        s64, s32 = cell64(xs[t], s64), cell32(xs[t].astype(np.float32), s32)
    for a, b in zip(state_parts(s32), state_parts(s64)):
        assert a.dtype == np.float32
        assert_rel_close(a, b, RTOL32, "state")
    dx32, _ = cell32.backward_all(g.astype(np.float32))
    dx64, _ = cell64.backward_all(g)
    assert dx32.dtype == np.float32
    assert_rel_close(dx32, dx64, RTOL32, "dx")
    for name in cell64.grads:
        assert_rel_close(cell32.grads[name], cell64.grads[name], RTOL32, name)


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_eval_and_no_grad_save_nothing(family, rng):
    _, cls, kwargs, _ = family
    cell = make_cell(cls, kwargs, 4, 6, rng)
    x, h = rng.normal(size=(2, 4)), rng.normal(size=(2, 6))
    hx = (h, h * 0.5) if is_lstm(cell) else h
    trained = state_parts(cell(x, hx))
    assert cell.saved_calls == 1
    with cell.no_grad():
        inside = state_parts(cell(x, hx))
    cell.eval()
    evaluated = state_parts(cell(x, hx))
    for _ in range(50):  # a long inference loop does not grow the saved calls
        cell(x, hx)
    assert cell.saved_calls == 1
    for a, b, c in zip(trained, inside, evaluated):  # the same kernel, saving or not
        np.testing.assert_array_equal(b, a)
        np.testing.assert_array_equal(c, a)
    cell.backward(*([np.ones((2, 6))] * cell.state_size))  # the call saved before eval()
    with pytest.raises(RuntimeError, match="eval mode"):
        cell.backward(*([np.ones((2, 6))] * cell.state_size))
    cell.train()
    with cell.no_grad():
        cell(x, hx)
    assert cell.saved_calls == 0


def test_backward_errors_say_why(rng):
    cell = nn.GRUCell(3, 4, dtype=np.float64, seed=0)
    with pytest.raises(RuntimeError, match="no call has been saved"):
        cell.backward(np.ones(4))
    with pytest.raises(RuntimeError, match="no call has been saved"):
        cell.backward_all(np.ones((1, 4)))
    cell(np.ones(3))
    cell.backward(np.ones(4))
    with pytest.raises(RuntimeError, match="every saved call has had its backward"):
        cell.backward(np.ones(4))


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_rows_do_not_depend_on_the_batch(family, rng):
    """A batch of 20 (BLAS products) against its rows one at a time (dot form): forward, dx,
    dh0 and the parameter gradients (summed over the rows)."""
    _, cls, kwargs, _ = family
    cell = make_cell(cls, kwargs, 6, 9, rng)
    rows = copy.deepcopy(cell)
    x, h, dh = rng.normal(size=(20, 6)), rng.normal(size=(20, 9)), rng.normal(size=(20, 9))
    hx = (h, h[::-1].copy()) if is_lstm(cell) else h
    out = state_parts(cell(x, hx))
    dx, dstate = cell.backward(*([dh] * cell.state_size))
    for r in range(20):
        row_out = state_parts(rows(x[r], tuple(p[r] for p in hx) if is_lstm(cell) else h[r]))
        for a, b in zip(row_out, out):
            assert_rel_close(a, b[r], 1e-13, "state")
        row_dx, row_dstate = rows.backward(*([dh[r]] * cell.state_size))
        assert_rel_close(row_dx, dx[r], 1e-12, "dx")
        for a, b in zip(state_parts(row_dstate), state_parts(dstate)):
            assert_rel_close(a, b[r], 1e-12, "dstate")
    for name in cell.grads:
        assert_rel_close(rows.grads[name], cell.grads[name], 1e-12, name)


def test_unbatched_matches_batched(rng):
    cell = make_cell(nn.LSTMCell, {}, 3, 4, rng)
    x, h, c = rng.normal(size=3), rng.normal(size=4), rng.normal(size=4)
    h1, c1 = cell(x, (h, c))
    assert h1.shape == c1.shape == (4,)
    hb, cb = cell(x[None], (h[None], c[None]))
    np.testing.assert_array_equal(h1, hb[0])
    dxb, (dhb, dcb) = cell.backward(np.ones((1, 4)), np.ones((1, 4)))
    dx, (dh, dc) = cell.backward(np.ones(4), np.ones(4))
    assert dx.shape == (3,) and dh.shape == dc.shape == (4,)
    np.testing.assert_array_equal(dx, dxb[0])
    np.testing.assert_array_equal(dc, dcb[0])


def test_hx_none_is_zeros(rng):
    for cls in (nn.RNNCell, nn.GRUCell, nn.LSTMCell):
        cell = make_cell(cls, {}, 3, 4, rng)
        x = rng.normal(size=(2, 3))
        zeros = np.zeros((2, 4))
        with cell.no_grad():
            a = state_parts(cell(x))
            b = state_parts(cell(x, (zeros, zeros) if cls is nn.LSTMCell else zeros))
        for p, q in zip(a, b):
            np.testing.assert_array_equal(p, q)
    lstm = make_cell(nn.LSTMCell, {}, 3, 4, rng)
    with lstm.no_grad():
        h, c = lstm(x, (None, np.zeros((2, 4))))
        np.testing.assert_array_equal(h, lstm(x)[0])


def test_gradients_accumulate_and_zero_grad(rng):
    cell = make_cell(nn.RNNCell, {}, 3, 4, rng)
    x, dh = rng.normal(size=(2, 3)), rng.normal(size=(2, 4))
    cell(x)
    cell.backward(dh)
    once = {k: v.copy() for k, v in cell.grads.items()}
    cell(x)
    cell.backward(dh)
    for k in once:
        np.testing.assert_allclose(cell.grads[k], 2 * once[k], rtol=1e-14)
    grads = dict(cell.grads)
    cell.zero_grad()
    assert all(not v.any() for v in cell.grads.values())
    assert all(cell.grads[k] is grads[k] for k in grads)  # zeroed in place


def test_caller_changes_after_a_call_do_not_change_gradients(rng):
    cell = make_cell(nn.LSTMCell, {}, 3, 4, rng)
    x, h, c = rng.normal(size=(2, 3)), rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    dh, dc = rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    cell(x, (h, c))
    expected = cell.backward(dh, dc)
    expected_grads = {k: v.copy() for k, v in cell.grads.items()}
    cell.zero_grad()
    x2, h2, c2 = x.copy(), h.copy(), c.copy()
    h_out, c_out = cell(x2, (h2, c2))
    for a in (x2, h2, c2, h_out, c_out):
        a[...] = 7.0
    got = cell.backward(dh, dc)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1][0], expected[1][0])
    np.testing.assert_array_equal(got[1][1], expected[1][1])
    for k in expected_grads:
        np.testing.assert_array_equal(cell.grads[k], expected_grads[k])


def test_stack_is_last_in_first_out(rng):
    """Backward pops the most recent call; interleaved forward/backward (truncated loops) works."""
    cell = make_cell(nn.GRUCell, {}, 3, 4, rng)
    xs, dh = rng.normal(size=(3, 2, 3)), rng.normal(size=(2, 4))
    ref = copy.deepcopy(cell)
    h = None
    for t in range(3):
        h = cell(xs[t], h)
    dx2, dh1 = cell.backward(dh)
    assert cell.saved_calls == 2
    h_ref = ref(xs[1], ref(xs[0]))
    saved_two = copy.deepcopy(ref)  # calls 0 and 1 saved
    ref.clear_saved()
    ref(xs[2], h_ref)
    dx2_ref, _ = ref.backward(dh)
    np.testing.assert_array_equal(dx2, dx2_ref)  # the last call was backpropagated
    dx1, _ = cell.backward(dh1)
    dx1_ref, _ = saved_two.backward(dh1)
    np.testing.assert_array_equal(dx1, dx1_ref)  # then the one before
    cell.clear_saved()
    assert cell.saved_calls == 0


def test_backward_all_needs_a_chain(rng):
    cell = make_cell(nn.LSTMCell, {}, 3, 4, rng)
    x = rng.normal(size=(2, 3))
    h, c = cell(x)
    cell(x, (h.copy(), c))  # not the arrays returned: not a chain
    with pytest.raises(ValueError, match="one chain"):
        cell.backward_all(np.ones((2, 2, 4)))
    assert cell.saved_calls == 2
    cell.clear_saved()
    state = cell(x)
    state = cell(x, list(state))  # a list of the returned arrays is the same state
    cell(x, state)
    with pytest.raises(ValueError, match=r"dy must have shape \(3, 2, 4\)"):
        cell.backward_all(np.ones((2, 2, 4)))
    with pytest.raises(ValueError, match="3 gradients"):
        cell.backward_all([None, None])
    assert cell.saved_calls == 3
    dx, (dh0, dc0) = cell.backward_all([None, np.ones((2, 4)), None])
    assert dx.shape == (3, 2, 3) and dh0.shape == dc0.shape == (2, 4)


def test_max_saved_and_clear_saved(rng):
    cell = nn.RNNCell(2, 3, seed=0, max_saved=2)
    x = np.ones((1, 2), np.float32)
    h = cell(x)
    h = cell(x, h)
    with pytest.raises(RuntimeError, match="max_saved=2"):
        cell(x, h)
    assert cell.saved_calls == 2
    with cell.no_grad():
        cell(x, h)  # saves nothing: allowed
    cell.clear_saved()
    cell(x, h)
    assert cell.saved_calls == 1


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_parameters_state_dict_and_config(family, rng):
    name, cls, kwargs, _ = family
    cell = cls(3, 5, seed=11, **kwargs)
    gates = numrnn.cells.GATES[name] * 5
    assert {k: v.shape for k, v in cell.params.items()} == {
        "weight_ih": (gates, 3), "weight_hh": (gates, 5), "bias_ih": (gates,), "bias_hh": (gates,)}
    assert all(v.dtype == np.float32 for v in cell.params.values())
    assert max(np.abs(v).max() for v in cell.params.values()) <= 1 / np.sqrt(5)
    assert cell.cell == name
    rebuilt = cls(**cell.config())
    for k in cell.params:
        np.testing.assert_array_equal(rebuilt.params[k], cell.params[k])
    assert repr(cell).startswith(cls.__name__ + "(")
    # the layer of the same family with the same seed has the same weights
    layer_cls = {"rnn": numrnn.RNN, "lstm": numrnn.LSTM, "gru": numrnn.GRU}[name.split("_")[0]]
    layer_kwargs = {"nonlinearity": kwargs["nonlinearity"]} if "nonlinearity" in kwargs else dict(kwargs)
    layer = layer_cls(3, 5, seed=11, **layer_kwargs)
    for k in cell.params:
        np.testing.assert_array_equal(layer.params[k + "_l0"], cell.params[k])
    # state_dict: copies; load_state_dict: in place, cast, and drops the saved calls
    sd = cell.state_dict()
    sd["weight_ih"][...] = 0
    assert cell.params["weight_ih"].any()
    arrays = dict(cell.params)
    cell(np.ones(3))
    cell.load_state_dict({k: v.astype(np.float64) for k, v in sd.items()})
    assert cell.saved_calls == 0
    assert all(cell.params[k] is arrays[k] for k in arrays)
    assert not cell.params["weight_ih"].any()
    nobias = cls(3, 5, bias=False, seed=0, **kwargs)
    assert set(nobias.params) == set(nobias.grads) == {"weight_ih", "weight_hh"}
    cell.reset_parameters(seed=11)
    np.testing.assert_array_equal(cell.params["weight_ih"], rebuilt.params["weight_ih"])
    clone = copy.deepcopy(cell)
    clone(np.ones(3))
    assert cell.saved_calls == 0 and clone.saved_calls == 1


def test_reachable_from_nn():
    assert nn.RNNCell is numrnn.nn.cells.RNNCell
    assert {"RNNCell", "LSTMCell", "GRUCell"} <= set(nn.__all__)
    assert issubclass(nn.LSTMCell, CellBase)


# --------------------------------------------------------------------------- bad input


def snapshot(cell):
    return ({k: v.copy() for k, v in cell.params.items()}, {k: v.copy() for k, v in cell.grads.items()},
            cell.saved_calls)


def assert_unchanged(cell, before):
    params, grads, saved = before
    assert cell.saved_calls == saved
    for k in params:
        np.testing.assert_array_equal(cell.params[k], params[k])
        np.testing.assert_array_equal(cell.grads[k], grads[k])


BAD_CALLS = [
    ("x 3-D", lambda rng: (np.ones((1, 2, 3)), None), ValueError, "x must be 2-D"),
    ("x features", lambda rng: (np.ones((2, 4)), None), ValueError, r"3 features \(input_size\).*got 4"),
    ("x empty batch", lambda rng: (np.ones((0, 3)), None), ValueError, "batch of size 0"),
    ("x NaN", lambda rng: (np.full((2, 3), np.nan), None), ValueError, "x contains NaN"),
    ("x complex", lambda rng: (np.ones((2, 3), complex), None), TypeError, "x must hold real numbers"),
    ("x None", lambda rng: (None, None), TypeError, "x must be an array"),
    ("x strings", lambda rng: (np.array([["a"] * 3]), None), TypeError, "x must hold real numbers"),
    ("hx shape", lambda rng: (np.ones((2, 3)), np.ones((2, 5))), ValueError, r"must have shape \(2, 4\), got \(2, 5\)"),
    ("hx unbatched for batched x", lambda rng: (np.ones((2, 3)), np.ones(4)), ValueError, "2-D of shape"),
    ("hx batched for unbatched x", lambda rng: (np.ones(3), np.ones((1, 4))), ValueError, "1-D of shape"),
    ("hx inf", lambda rng: (np.ones((2, 3)), np.full((2, 4), np.inf)), ValueError, "contains NaN or inf"),
]


@pytest.mark.parametrize("case", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
@pytest.mark.parametrize("cls", [nn.RNNCell, nn.GRUCell, nn.LSTMCell])
def test_bad_call_leaves_cell_unchanged(case, cls, rng):
    _, make, error, message = case
    cell = make_cell(cls, {}, 3, 4, rng)
    cell(np.ones((2, 3)))  # one call saved beforehand
    before = snapshot(cell)
    x, h = make(rng)
    hx = None if h is None else ((h, np.zeros_like(h)) if cls is nn.LSTMCell else h)
    with pytest.raises(error, match=message):
        cell(x, hx)
    assert_unchanged(cell, before)


def test_bad_state_kinds(rng):
    lstm = make_cell(nn.LSTMCell, {}, 3, 4, rng)
    gru = make_cell(nn.GRUCell, {}, 3, 4, rng)
    x = np.ones((2, 3))
    with pytest.raises(TypeError, match=r"hx of an LSTMCell must be a pair \(h, c\)"):
        lstm(x, np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"hx\[1\] \(c\) must have shape \(2, 4\)"):
        lstm(x, (np.zeros((2, 4)), np.zeros((2, 3))))
    with pytest.raises(TypeError, match="GRUCell must be one array h"):
        gru(x, (np.zeros((2, 4)), np.zeros((2, 4))))
    assert lstm.saved_calls == gru.saved_calls == 0


def test_bad_params_are_named(rng):
    cell = make_cell(nn.GRUCell, {}, 3, 4, rng)
    good = cell.params["weight_hh"]
    for bad, error, message in [
        (good.astype(np.float32), TypeError, r"params\['weight_hh'\] must have the cell's dtype float64"),
        (good[:, :2], ValueError, r"must have shape \(12, 4\), got \(12, 2\)"),
        (np.asfortranarray(good), ValueError, "C-contiguous"),
        (np.full_like(good, np.nan), ValueError, "NaN or inf"),
        (good.tolist(), TypeError, "must be a NumPy array"),
    ]:
        cell.params["weight_hh"] = bad
        with pytest.raises(error, match=message):
            cell(np.ones(3))
        assert cell.saved_calls == 0
    del cell.params["weight_hh"]
    with pytest.raises(ValueError, match="no entry 'weight_hh'"):
        cell(np.ones(3))
    cell.params["weight_hh"] = good
    cell(np.ones(3))


def test_bad_backward_gradient_leaves_the_call_saved(rng):
    cell = make_cell(nn.LSTMCell, {}, 3, 4, rng)
    ref = copy.deepcopy(cell)
    x = rng.normal(size=(2, 3))
    cell(x)
    ref(x)
    before = snapshot(cell)
    with pytest.raises(ValueError, match=r"dh must have shape \(2, 4\), got \(4,\)"):
        cell.backward(np.ones(4))
    with pytest.raises(ValueError, match="dc contains NaN"):
        cell.backward(np.ones((2, 4)), np.full((2, 4), np.nan))
    with pytest.raises(TypeError, match="dh must hold real numbers"):
        cell.backward(np.ones((2, 4), complex))
    assert_unchanged(cell, before)
    got = cell.backward(np.ones((2, 4)))
    expected = ref.backward(np.ones((2, 4)))
    np.testing.assert_array_equal(got[0], expected[0])


def test_bad_constructor_arguments():
    with pytest.raises(TypeError, match="input_size"):
        nn.LSTMCell(2.5, 3)
    with pytest.raises(ValueError, match="hidden_size"):
        nn.GRUCell(2, 0)
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNNCell(2, 3, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="reset_after"):
        nn.GRUCell(2, 3, reset_after=1)
    with pytest.raises(TypeError, match="dtype"):
        nn.LSTMCell(2, 3, dtype=np.int32)
    with pytest.raises(ValueError, match="seed"):
        nn.LSTMCell(2, 3, seed=-1)
    with pytest.raises(ValueError, match="max_saved"):
        nn.LSTMCell(2, 3, max_saved=0)


# --------------------------------------------------------------------------- first use


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
@pytest.mark.parametrize("batch", [None, 3], ids=["unbatched", "B3"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_first_use_numpy_kernels_equal_the_compiled_kernels(family, batch, bias, first_use_tier, rng):
    """Before the cells' kernels are compiled the NumPy kernels run the calls and their
    backward (per call, and backward_all): the same results to rounding."""
    _, cls, kwargs, _ = family
    steps, inputs, hidden = 3, 3, 5
    shape = (steps, inputs) if batch is None else (steps, batch, inputs)
    xs = rng.normal(size=shape)
    g_h = rng.normal(size=shape[:-1] + (hidden,))
    params = make_cell(cls, kwargs, inputs, hidden, rng, bias=bias).state_dict()
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        results = {}
        for tier in ("compiled", "numpy"):
            launched = first_use_tier(tier)
            asked_before = len(launched)
            cell = cls(inputs, hidden, bias=bias, dtype=dtype, seed=0, **kwargs)
            cell.load_state_dict(params)
            outs = []
            for backward_all in (False, True):
                state = None
                for t in range(steps):
                    state = cell(xs[t].astype(dtype), state)
                    outs += state_parts(state)
                if backward_all:
                    dx, dstate = cell.backward_all(g_h.astype(dtype))
                    outs += [dx] + state_parts(dstate)
                else:
                    dh = dc = None
                    for t in reversed(range(steps)):
                        dh = g_h[t].astype(dtype) + (0 if dh is None else dh)
                        dx, dstate = cell.backward(dh, dc) if is_lstm(cell) else cell.backward(dh)
                        dh, dc = (dstate if is_lstm(cell) else (dstate, None))
                        outs += [dx, dh]
            outs += [cell.grads[name] for name in sorted(cell.grads)]
            results[tier] = outs
            assert (len(launched) > asked_before) == (tier == "numpy")  # the NumPy kernels ran, and only then
        for k, (on_numpy, compiled) in enumerate(zip(results["numpy"], results["compiled"])):
            assert on_numpy.dtype == dtype
            assert_rel_close(on_numpy, compiled, rtol, f"output {k} {np.dtype(dtype).name}")
