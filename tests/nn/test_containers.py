"""nn.Sequential: gradients, PyTorch parity, state, failed calls, stacks with Embedding and LSTM."""

from __future__ import annotations

import numpy as np
import pytest

import numrnn
from numrnn import nn
from numrnn.train import gradcheck, make_closure
from nn_helpers import Picky, make_stack, unequal


@pytest.mark.parametrize("cell", [numrnn.LSTM, numrnn.GRU, numrnn.RNN])
def test_sequential_gradcheck(cell, rng):
    model = make_stack(cell)
    x, target = rng.normal(size=(6, 4, 3)), rng.normal(size=(4, 2))
    report = gradcheck(make_closure(model, "mse", x, target), model.params, max_per_param=6)
    assert "0.weight_hh_l0" in report and "2.weight" in report


def test_sequential_params_are_views_and_dx(rng):
    model = make_stack()
    model.params["2.weight"][0, 0] = 42.0
    assert model[2].params["weight"][0, 0] == 42.0
    x = rng.normal(size=(6, 4, 3))
    out = model(x)
    dx = model.backward(np.ones_like(out))
    assert dx.shape == x.shape
    assert model.grads["0.weight_ih_l0"] is model[0].grads["weight_ih_l0"]
    assert len(model) == 3 and model.states[0].shape == (1, 4, 5) and model.states[1] is None


def test_sequential_states_carry_over(rng):
    model = nn.Sequential(numrnn.LSTM(3, 4, dtype=np.float64, seed=0), nn.Linear(4, 1, dtype=np.float64, seed=1))
    x = rng.normal(size=(10, 2, 3))
    whole = model(x)
    first = model(x[:6])
    second = model(x[6:], states=model.states)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-12)
    with pytest.raises(ValueError, match="states must be a list of 2"):
        model(x, states=[None])
    with pytest.raises(ValueError, match=r"states\[1\] must be None"):
        model(x, states=[None, np.zeros(1)])


def test_sequential_state_dict_round_trip_all_or_nothing(rng):
    a, b = make_stack(seed=0), make_stack(seed=5)
    x = rng.normal(size=(6, 2, 3))
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x), b(x))
    before = b.state_dict()
    bad = a.state_dict()
    bad["2.weight"] = np.ones((3, 3))
    with pytest.raises(ValueError, match="2.weight"):
        b.load_state_dict(bad)
    bad = a.state_dict()
    del bad["2.bias"]
    with pytest.raises(ValueError, match="missing"):
        b.load_state_dict(bad)
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    rebuilt = nn.module_from_spec(nn.module_spec(a))
    rebuilt.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(rebuilt(x), a(x))
    assert "Sequential(" in repr(rebuilt)


def test_train_eval_propagate():
    model = make_stack()
    model.eval()
    assert not model[0].training and not model[2].training
    model.train()
    assert model[0].training


@pytest.mark.torch
def test_batch_first_stack_torch_parity(rng):
    torch = pytest.importorskip("torch")
    model = nn.Sequential(numrnn.GRU(3, 5, batch_first=True, dtype=np.float64, seed=0), nn.LastStep(batch_first=True),
                          nn.Linear(5, 2, dtype=np.float64, seed=1))
    gru, head = torch.nn.GRU(3, 5, batch_first=True).double(), torch.nn.Linear(5, 2).double()
    gru.load_state_dict({k: torch.tensor(v) for k, v in model[0].state_dict().items()})
    head.load_state_dict({k: torch.tensor(v) for k, v in model[2].state_dict().items()})
    x, dy = rng.normal(size=(4, 6, 3)), rng.normal(size=(4, 2))
    tx = torch.tensor(x, requires_grad=True)
    out = head(gru(tx)[0][:, -1])
    out.backward(torch.tensor(dy))
    np.testing.assert_allclose(model(x), out.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(model.backward(dy), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.grads["2.weight"], head.weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(model.grads["0.weight_hh_l0"], gru.weight_hh_l0.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_sequential_failed_forward_leaves_every_module_as_it_was(rng):
    def make():  # dropout between the GRU's layers: the failed call must not move its masks on
        return nn.Sequential(numrnn.GRU(3, 5, num_layers=2, dropout=0.5, dtype=np.float64, seed=0), nn.LastStep(),
                             nn.Linear(5, 2, dtype=np.float64, seed=1), Picky())
    x1, x2, x3 = (rng.normal(size=(6, 4, 3)) for _ in range(3))
    dy = rng.normal(size=(4, 2))
    want = make()
    want(x1)
    want_dx = want.backward(dy)
    want_next = want(x3)
    model = make()
    model(x1)
    states = model.states
    model[3].reject = ValueError("x rejected")
    with pytest.raises(ValueError, match=r"Sequential module 3 \(Picky\): x rejected"):
        model(x2)  # same shapes: the GRU reuses its buffers, the Linear saves x2
    model[3].reject = None
    assert model.states is states
    np.testing.assert_array_equal(model.backward(dy), want_dx)  # the backward of the x1 call
    for k, g in want.grads.items():
        np.testing.assert_array_equal(model.grads[k], g, err_msg=k)
    np.testing.assert_array_equal(model(x3), want_next)


def test_sequential_failed_forward_after_a_pending_one_keeps_its_buffers(rng):
    # no backward between the calls: the GRU's next forward would overwrite what the first saved
    model = nn.Sequential(numrnn.GRU(3, 5, dtype=np.float64, seed=0), Picky())
    want = nn.Sequential(numrnn.GRU(3, 5, dtype=np.float64, seed=0), Picky())
    x1, x2 = rng.normal(size=(6, 4, 3)), rng.normal(size=(6, 4, 3))
    dy = rng.normal(size=(6, 4, 5))
    for _ in range(3):  # fail, succeed, fail: each call runs on the buffers the pending backward does not read
        model(x1)
        model[1].reject = ValueError("x rejected")
        with pytest.raises(ValueError, match="x rejected"):
            model(x2)
        model[1].reject = None
    want(x1)
    np.testing.assert_array_equal(model.backward(dy), want.backward(dy))
    for k, g in want.grads.items():
        np.testing.assert_array_equal(model.grads[k], g, err_msg=k)


def test_sequential_errors_name_the_module():
    model = nn.Sequential(nn.Linear(3, 4, seed=0), nn.Linear(5, 2, seed=1))
    with pytest.raises(ValueError, match=r"^Sequential module 1 \(Linear\): x must have 5 features") as info:
        model(np.ones((2, 3)))
    assert isinstance(info.value.__cause__, ValueError)
    model = nn.Sequential(nn.Linear(3, 2, seed=0), nn.Sequential(nn.LastStep(), nn.Linear(2, 2, seed=1)))
    with pytest.raises(ValueError, match=r"^Sequential module 1 \(Sequential\): Sequential module 0 \(LastStep\)"):
        model(np.ones(3))  # the 1-D output of module 0 is no sequence
    model = nn.Sequential(nn.Linear(3, 4, seed=0), nn.Linear(4, 2, seed=1))
    model(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"^Sequential module 1 \(Linear\): dy must have shape"):
        model.backward(np.ones((2, 3)))

    class TwoArgs(Exception):
        def __init__(self, a, b):
            super().__init__(a, b)

    picky = Picky()
    picky.reject = TwoArgs(1, 2)
    with pytest.raises(TwoArgs) as info:  # a type that takes other arguments: raised as it was
        nn.Sequential(nn.Linear(3, 4, seed=0), picky)(np.ones((2, 3)))
    assert info.value is picky.reject


def test_second_backward_says_one_backward_per_forward(rng):
    x = rng.normal(size=(6, 2, 3))
    for module, inp in [(nn.Linear(3, 2, seed=0), x), (nn.LastStep(), x), (make_stack(), x)]:
        out = module(inp)
        module.backward(np.ones_like(out))
        grads = {k: g.copy() for k, g in module.grads.items()}
        with pytest.raises(RuntimeError, match="already ran for the last forward.*each forward supports one backward"):
            module.backward(np.ones_like(out))
        for k, g in grads.items():  # the refused call changed nothing
            np.testing.assert_array_equal(module.grads[k], g, err_msg=k)
    with pytest.raises(RuntimeError, match="Sequential.backward.. called before forward"):
        make_stack().backward(np.ones((2, 2)))


def test_sequential_failed_call_keeps_the_dropout_stream(rng):
    def make():
        return nn.Sequential(nn.Linear(3, 6, dtype=np.float64, seed=0), nn.Dropout(0.5, seed=1), nn.ReLU(),
                             nn.LayerNorm(6, dtype=np.float64), Picky())

    x1, x2, x3 = (rng.normal(size=(5, 3)) for _ in range(3))
    dy = rng.normal(size=(5, 6))
    want = make()
    want(x1)
    want_dx = want.backward(dy)
    want_next = want(x3)
    model = make()
    model(x1)
    model[4].reject = ValueError("x rejected")
    with pytest.raises(ValueError, match=r"Sequential module 4 \(Picky\): x rejected"):
        model(x2)  # the dropout drew a mask for x2: the restore puts its generator back
    model[4].reject = None
    np.testing.assert_array_equal(model.backward(dy), want_dx)  # the backward of the x1 call, its mask
    for k, g in want.grads.items():
        np.testing.assert_array_equal(model.grads[k], g, err_msg=k)
    np.testing.assert_array_equal(model(x3), want_next)
    with pytest.raises(ValueError, match=r"^Sequential module 1 \(LayerNorm\): x must end in the normalized_shape"):
        nn.Sequential(nn.Linear(3, 4, seed=0), nn.LayerNorm(6))(x1)


def embedding_lstm_stack(seed=0, padding_idx=2):
    model = nn.Sequential(nn.Embedding(11, 4, padding_idx=padding_idx, dtype=np.float64, seed=seed),
                          numrnn.LSTM(4, 5, dtype=np.float64, seed=seed + 1),
                          nn.Linear(5, 3, dtype=np.float64, seed=seed + 2))
    for k, v in model.params.items():  # non-zero, unequal biases
        if "bias" in k:
            v[:] = np.random.default_rng(len(k)).normal(size=v.shape)
    return model


@pytest.mark.torch
def test_embedding_lstm_linear_stack_torch_parity(rng):
    torch = pytest.importorskip("torch")
    model = embedding_lstm_stack()
    emb = torch.nn.Embedding(11, 4, padding_idx=2).double()
    lstm, head = torch.nn.LSTM(4, 5).double(), torch.nn.Linear(5, 3).double()
    for i, ref in enumerate((emb, lstm, head)):
        ref.load_state_dict({k: torch.tensor(v) for k, v in model[i].state_dict().items()})
    idx = rng.integers(0, 11, size=(7, 3))  # (T, B): repeated indices and the padding row
    idx[0, :] = 2
    idx[3, 1] = idx[4, 2] = 5
    dy = rng.normal(size=(7, 3, 3))
    out = head(lstm(emb(torch.tensor(idx)))[0])
    out.backward(torch.tensor(dy))
    np.testing.assert_allclose(model(idx), out.detach().numpy(), rtol=1e-12, atol=1e-13)
    assert model.backward(dy) is None
    refs = {"0": emb, "1": lstm, "2": head}
    for key, grad in model.grads.items():
        index, name = key.split(".", 1)
        np.testing.assert_allclose(grad, getattr(refs[index], name).grad.numpy(), rtol=1e-12, atol=1e-13, err_msg=key)
    assert not model.grads["0.weight"][2].any()


def test_embedding_stack_gradcheck_float64(rng):
    model = nn.Sequential(nn.Embedding(7, 3, padding_idx=0, dtype=np.float64, seed=0),
                          numrnn.GRU(3, 5, dtype=np.float64, seed=1), nn.LastStep(), nn.LayerNorm(5, dtype=np.float64),
                          nn.Tanh(), nn.Dropout(0.5, seed=2), nn.Linear(5, 2, dtype=np.float64, seed=3))
    unequal(rng, model[3], 0.5)
    model.eval()  # dropout off: every evaluation of the closure sees the same function
    idx, target = rng.integers(1, 7, size=(6, 4)), rng.normal(size=(4, 2))  # no padding: it gets no gradient
    report = gradcheck(make_closure(model, "mse", idx, target), model.params, max_per_param=8)
    assert {"0.weight", "3.weight", "3.bias", "6.weight"} <= set(report)


def test_embedding_stack_trains_with_fit(rng):
    from numrnn.train import fit

    # the class of a sequence is whether token 1 occurs in it
    idx = rng.integers(1, 6, size=(5, 64))
    target = (idx == 1).any(axis=0).astype(np.float64)[:, None]
    model = nn.Sequential(nn.Embedding(6, 4, padding_idx=0, seed=0), nn.Dropout(0.1, seed=1), numrnn.GRU(4, 8, seed=2),
                          nn.LastStep(), nn.ReLU(), nn.Linear(8, 1, seed=3), nn.Sigmoid())
    before = float(np.mean((model.eval()(idx) - target) ** 2))
    history = fit(model, idx, target, optimizer=numrnn.optim.Adam(lr=0.05), epochs=15, batch_size=16, seed=0)
    after = float(np.mean((model(idx) - target) ** 2))
    assert not model.training and not model[1].training  # fit ends in evaluation mode
    assert after < 0.5 * before and history["train_loss"][-1] < history["train_loss"][0]
    assert not model.params["0.weight"][0].any()  # the padding row never moved
