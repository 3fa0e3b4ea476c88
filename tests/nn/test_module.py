"""nn.Module trees: named children, dotted names, recursive modes, atomic loads, no_grad, to(dtype)."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import pytest

import numrnn
from numrnn import io, nn


class Model(nn.Module):
    """A user module with attribute children, as in PyTorch."""

    def __init__(self, seed=0):
        super().__init__()
        self.encoder = nn.Linear(3, 4, dtype=np.float64, seed=seed)
        self.rnn = numrnn.LSTM(4, 5, dtype=np.float64, seed=seed + 1)
        self.decoder = nn.Linear(5, 2, dtype=np.float64, seed=seed + 2)
        self.scale = 2.0  # a plain attribute: no child

    def forward(self, x):
        y, _ = self.rnn(self.encoder(x))
        return self.decoder(y) * self.scale

    def backward(self, dy):
        dx, _ = self.rnn.backward(self.decoder.backward(dy * self.scale))
        return self.encoder.backward(dx)


WANT_KEYS = ["encoder.weight", "encoder.bias", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0",
             "rnn.bias_hh_l0", "decoder.weight", "decoder.bias"]


def test_attribute_children_give_dotted_names():
    model = Model()
    assert [n for n, _ in model.named_children()] == ["encoder", "rnn", "decoder"]
    assert list(model.children())[0] is model.encoder
    assert [n for n, _ in model.named_parameters()] == WANT_KEYS
    assert list(model.params) == WANT_KEYS and list(model.grads) == WANT_KEYS
    assert list(model.state_dict()) == WANT_KEYS
    assert model.params["decoder.bias"] is model.decoder.params["bias"]  # the arrays themselves
    assert model.params["rnn.weight_hh_l0"] is model.rnn.params["weight_hh_l0"]
    assert all(a is b for a, b in zip(model.parameters(), model.params.values()))
    assert [n for n, _ in model.named_modules()] == ["", "encoder", "rnn", "decoder"]
    assert len(list(model.modules())) == 4
    model.decoder = 3  # rebinding to a non-module drops the child
    assert [n for n, _ in model.named_children()] == ["encoder", "rnn"]
    del model.rnn
    assert [n for n, _ in model.named_children()] == ["encoder"]


def test_tree_trains_with_one_optimiser(rng):
    model = Model()
    x, dy = rng.normal(size=(6, 2, 3)), rng.normal(size=(6, 2, 2))
    model.backward(np.ones_like(model(x)))
    assert model.grads["encoder.weight"].any() and model.grads["rnn.weight_ih_l0"].any()
    assert model.zero_grad() is None
    assert not any(g.any() for g in model.grads.values())
    opt = numrnn.optim.SGD(lr=0.1)
    model(x)
    model.backward(dy)
    before = model.encoder.params["weight"].copy()
    opt.step(model.params, model.grads)
    assert not np.array_equal(model.encoder.params["weight"], before)


def test_train_eval_recurse_and_return_self():
    model = Model()
    assert model.eval() is model
    assert not model.training and not model.encoder.training and not model.rnn.training
    assert model.train() is model
    assert all(m.training for m in model.modules())
    with pytest.raises(TypeError, match="mode must be a bool"):
        model.train("yes")


def test_load_state_dict_round_trip_and_atomic(rng):
    model, other = Model(seed=0), Model(seed=10)
    other.load_state_dict(model.state_dict())
    x = rng.normal(size=(5, 2, 3))
    np.testing.assert_array_equal(other(x), model(x))
    sd = {k: v + 1.0 for k, v in model.state_dict().items()}
    before = other.state_dict()
    for bad, err, match in [
        ({**sd, "decoder.bias": np.ones(3)}, ValueError, r"state_dict\['decoder.bias'\] must have shape"),
        ({**sd, "decoder.bias": np.array([np.nan, 0.0])}, ValueError, "NaN or inf"),
        ({**sd, "decoder.bias": np.array(["a", "b"])}, TypeError, "real numbers"),
        ({k: v for k, v in sd.items() if k != "rnn.bias_hh_l0"}, ValueError, r"missing \['rnn.bias_hh_l0'\]"),
        ({**sd, "extra": np.ones(1)}, ValueError, r"unexpected \['extra'\]"),
        ([1, 2], TypeError, "must be a dict"),
    ]:
        with pytest.raises(err, match=match):
            other.load_state_dict(bad)
        for k, v in other.state_dict().items():
            np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_load_failing_in_a_later_child_restores_the_earlier_ones():
    class Refuses(nn.Linear):
        def load_state_dict(self, state_dict):
            raise RuntimeError("refused")

    model = Model()
    model.decoder = Refuses(5, 2, dtype=np.float64, seed=3)
    before = model.state_dict()
    with pytest.raises(RuntimeError, match="refused"):
        model.load_state_dict({k: v + 1.0 for k, v in before.items()})
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_add_module_checks_name_and_module():
    model = nn.Module()
    assert model.add_module("head", nn.Linear(2, 2, seed=0)) is model.head
    with pytest.raises(ValueError, match="contain no '.'"):
        model.add_module("a.b", nn.Linear(2, 2, seed=0))
    with pytest.raises(TypeError, match="module name must be a str"):
        model.add_module(1, nn.Linear(2, 2, seed=0))
    with pytest.raises(TypeError, match=r"module 'x' \(str\) must be a numrnn Module"):
        model.add_module("x", "not a module")
    with pytest.raises(ValueError, match="already an attribute"):
        model.add_module("train", nn.Linear(2, 2, seed=0))
    assert list(model.params) == ["head.weight", "head.bias"]


def test_named_sequential(rng, tmp_path):
    model = nn.Sequential(OrderedDict(embed=nn.Embedding(7, 3, seed=0), rnn=numrnn.GRU(3, 4, seed=1),
                                      last=nn.LastStep(), head=nn.Linear(4, 2, seed=2)))
    assert model["head"] is model[3] is model.head is model.modules[3]
    assert list(model.state_dict())[:2] == ["embed.weight", "rnn.weight_ih_l0"]
    assert list(model.params)[-2:] == ["head.weight", "head.bias"]
    assert "(head): Linear(" in repr(model)
    x = rng.integers(0, 7, size=(5, 2))
    path = tmp_path / "named.npz"
    io.save(path, model)
    loaded, _ = io.load(path)
    assert list(loaded.state_dict()) == list(model.state_dict())
    np.testing.assert_array_equal(loaded(x), model(x))
    assert nn.module_from_spec(nn.module_spec(model)).config() == model.config()
    plain = nn.Sequential(nn.Linear(2, 2, seed=0))
    assert "names" not in plain.config()  # unnamed stacks keep the config saved files have


def test_nested_sequential_names():
    inner = nn.Sequential(OrderedDict(fc=nn.Linear(3, 3, seed=0), act=nn.Tanh()))
    model = nn.Sequential(OrderedDict(block=inner, out=nn.Linear(3, 1, seed=1)))
    assert list(model.state_dict()) == ["block.fc.weight", "block.fc.bias", "out.weight", "out.bias"]
    assert [n for n, _ in model.named_modules()] == ["", "block", "block.fc", "block.act", "out"]
    model.eval()
    assert not inner.fc.training


@pytest.mark.torch
def test_torch_checkpoint_of_the_same_tree_loads_without_a_key_map(rng):
    torch = pytest.importorskip("torch")

    class TorchModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Linear(3, 4)
            self.rnn = torch.nn.LSTM(4, 5)
            self.decoder = torch.nn.Linear(5, 2)

        def forward(self, x):
            return self.decoder(self.rnn(self.encoder(x))[0]) * 2.0

    ref = TorchModel().double()
    model = Model(seed=42)
    model.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    assert list(model.state_dict()) == list(ref.state_dict())
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in ref.named_parameters()]
    x = rng.normal(size=(6, 2, 3))
    np.testing.assert_allclose(model(x), ref(torch.tensor(x)).detach().numpy(), rtol=1e-10, atol=1e-12)
    seq = torch.nn.Sequential(OrderedDict(fc=torch.nn.Linear(3, 2), act=torch.nn.Tanh()))
    ours = nn.Sequential(OrderedDict(fc=nn.Linear(3, 2, dtype=np.float64, seed=0), act=nn.Tanh()))
    assert list(ours.state_dict()) == list(seq.state_dict())


def test_no_grad_saves_nothing_and_backward_says_so(rng):
    x = rng.normal(size=(4, 3))
    for module in [nn.Linear(3, 2, seed=0), nn.Tanh(), nn.LayerNorm(3), nn.Dropout(0.5, seed=0),
                   nn.Sequential(nn.Linear(3, 3, seed=0), nn.ReLU(), nn.Linear(3, 1, seed=1))]:
        want = module(x)
        with nn.no_grad():
            assert not nn.is_grad_enabled()
            got = module(x) if not isinstance(module, nn.Dropout) else module.eval()(x)
        assert nn.is_grad_enabled()
        if not isinstance(module, nn.Dropout):
            np.testing.assert_array_equal(got, want)
        with pytest.raises(RuntimeError, match=r"after a forward\(\) run under numrnn.nn.no_grad\(\)"):
            module.backward(np.ones_like(got))
        module.train()
        out = module(x)  # outside no_grad the next forward saves again
        module.backward(np.ones_like(out))


def test_no_grad_nests_is_per_thread_and_decorates():
    with nn.no_grad():
        with nn.no_grad():
            assert not nn.is_grad_enabled()
        assert not nn.is_grad_enabled()
        seen = []
        t = threading.Thread(target=lambda: seen.append(nn.is_grad_enabled()))
        t.start()
        t.join()
        assert seen == [True]
    assert nn.is_grad_enabled()

    @nn.no_grad()
    def infer():
        return nn.is_grad_enabled()

    assert infer() is False and nn.is_grad_enabled()
    with pytest.raises(KeyError):
        with nn.no_grad():
            raise KeyError("x")
    assert nn.is_grad_enabled()


@pytest.mark.torch
def test_no_grad_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(4, 3))
    lin = nn.Linear(3, 2, dtype=np.float64, seed=0)
    ref = torch.nn.Linear(3, 2).double()
    ref.load_state_dict({k: torch.tensor(v) for k, v in lin.state_dict().items()})
    with torch.no_grad():
        tout = ref(torch.tensor(x))
    with nn.no_grad():
        out = lin(x)
    np.testing.assert_allclose(out, tout.numpy(), rtol=1e-12)
    with pytest.raises(RuntimeError):  # both refuse a backward through an inference-mode forward
        tout.sum().backward()
    with pytest.raises(RuntimeError):
        lin.backward(np.ones_like(out))


def test_to_dtype_converts_the_tree(rng):
    model = nn.Sequential(OrderedDict(embed=nn.Embedding(7, 3, seed=0), norm=nn.LayerNorm(3),
                                      head=nn.Linear(3, 2, seed=1)))
    x = rng.integers(0, 7, size=(4, 5))
    want = model(x).astype(np.float64)
    assert model.to(np.float64) is model
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert all(g.dtype == np.float64 for g in model.grads.values())
    assert model.head.dtype == np.float64 and model.head.config()["dtype"] == "float64"
    got = model(x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    model.backward(np.ones_like(got))
    assert model.grads["head.weight"].dtype == np.float64
    with pytest.raises(TypeError, match="dtype"):
        model.to(np.int32)


@pytest.mark.torch
def test_to_dtype_matches_torch_double(rng):
    torch = pytest.importorskip("torch")
    ours = nn.Sequential(nn.Linear(3, 4, seed=0), nn.Tanh(), nn.Linear(4, 2, seed=1))
    ref = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    ref.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    ours.to(np.float64)
    ref.double()
    assert [str(v.dtype) for v in ours.state_dict().values()] == [
        str(v.dtype).replace("torch.", "") for v in ref.state_dict().values()]
    x = rng.normal(size=(5, 3))
    np.testing.assert_allclose(ours(x), ref(torch.tensor(x)).detach().numpy(), rtol=1e-12)


def test_no_grad_reaches_the_trainable_cells(rng):
    cell = nn.LSTMCell(3, 4, dtype=np.float64, seed=0)
    x = rng.normal(size=(2, 3))
    want = cell(x)
    cell.clear_saved()
    with nn.no_grad():
        got = cell(x)
    assert cell.saved_calls == 0
    np.testing.assert_array_equal(got[0], want[0])
    with pytest.raises(RuntimeError, match="nothing to backpropagate"):
        cell.backward(np.ones((2, 4)))


@pytest.mark.torch
def test_named_sequential_converts_with_its_names(rng):
    torch = pytest.importorskip("torch")
    ref = torch.nn.Sequential(OrderedDict(fc=torch.nn.Linear(3, 4), act=torch.nn.Tanh(), out=torch.nn.Linear(4, 1)))
    ours = numrnn.convert.from_torch(ref.double())
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["fc.weight", "fc.bias", "out.weight", "out.bias"]
    back = numrnn.convert.to_torch(ours)
    assert [n for n, _ in back.named_children()] == ["fc", "act", "out"]
    x = rng.normal(size=(2, 3))
    np.testing.assert_allclose(ours(x), back(torch.tensor(x)).detach().numpy(), rtol=1e-12)


def test_io_refuses_a_user_module_naming_its_class(tmp_path):
    path = tmp_path / "user.npz"
    with pytest.raises(TypeError, match="cannot describe a Model: only .* can be saved and rebuilt"):
        io.save(path, Model())
    assert not path.exists()
