"""Optimisers (numrnn.optim.optimizers): hand-computed updates, PyTorch parity, state round trips, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from numrnn.optim import SGD, Adam, AdamW, get_optimizer


def test_sgd_plain_by_hand():
    p = {"w": np.array([1.0, 2.0])}
    SGD(lr=0.1).step(p, {"w": np.array([0.5, -1.0])})
    np.testing.assert_allclose(p["w"], [0.95, 2.1])


def test_sgd_momentum_weight_decay_by_hand():
    p = {"w": np.array([1.0])}
    opt = SGD(lr=0.1, momentum=0.9, weight_decay=0.5)
    opt.step(p, {"w": np.array([1.0])})  # g = 1 + 0.5*1 = 1.5; buf = 1.5; p = 1 - 0.15
    np.testing.assert_allclose(p["w"], [0.85])
    opt.step(p, {"w": np.array([1.0])})  # g = 1 + 0.425 = 1.425; buf = 1.35 + 1.425 = 2.775
    np.testing.assert_allclose(p["w"], [0.85 - 0.2775])


def test_sgd_nesterov_by_hand():
    p = {"w": np.array([0.0])}
    opt = SGD(lr=1.0, momentum=0.5, nesterov=True)
    opt.step(p, {"w": np.array([1.0])})  # buf = 1; step = 1 + 0.5 = 1.5
    opt.step(p, {"w": np.array([1.0])})  # buf = 1.5; step = 1 + 0.75 = 1.75
    np.testing.assert_allclose(p["w"], [-3.25])


def test_adam_by_hand():
    p = {"w": np.array([1.0, -1.0])}
    g = np.array([0.2, -4.0])
    opt = Adam(lr=0.01)
    opt.step(p, {"w": g})
    # after one step m_hat = g, v_hat = g^2: the step is lr * sign(g) (up to eps)
    first = np.array([1.0, -1.0]) - 0.01 * g / (np.abs(g) + 1e-8)
    np.testing.assert_allclose(p["w"], first, rtol=1e-14)
    np.testing.assert_allclose(p["w"], [0.99, -0.99], rtol=1e-7)
    opt.step(p, {"w": g})
    m = 0.9 * 0.1 * g + 0.1 * g
    v = 0.999 * 0.001 * g**2 + 0.001 * g**2
    step = 0.01 * (m / (1 - 0.9**2)) / (np.sqrt(v / (1 - 0.999**2)) + 1e-8)
    np.testing.assert_allclose(p["w"], first - step, rtol=1e-12)


def test_adamw_decouples_weight_decay():
    p = {"w": np.array([2.0])}
    AdamW(lr=0.1, weight_decay=0.5).step(p, {"w": np.array([0.0])})
    np.testing.assert_allclose(p["w"], [2.0 * (1 - 0.05)])  # zero gradient: only the decay acts


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: SGD(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01), "SGD(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)"),
        (lambda: SGD(lr=0.05, momentum=0.8, nesterov=True), "SGD(lr=0.05, momentum=0.8, nesterov=True)"),
        (lambda: Adam(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1), "Adam(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)"),
        (lambda: AdamW(lr=0.01, weight_decay=0.2), "AdamW(lr=0.01, weight_decay=0.2)"),
    ],
)
def test_torch_parity(ours, theirs, rng):
    torch = pytest.importorskip("torch")
    init = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=5)}
    grads = [{k: rng.normal(size=v.shape) for k, v in init.items()} for _ in range(5)]
    params = {k: v.copy() for k, v in init.items()}
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in init.items()}
    topt = eval("torch.optim." + theirs.replace("(", "(list(tparams.values()), ", 1))
    opt = ours()
    for g in grads:
        opt.step(params, g)
        for k, t in tparams.items():
            t.grad = torch.tensor(g[k])
        topt.step()
    for k in init:
        np.testing.assert_allclose(params[k], tparams[k].detach().numpy(), rtol=1e-12, atol=1e-14)


def test_float32_params_updated_in_place(rng):
    w = rng.normal(size=(3, 3)).astype(np.float32)
    before = w.copy()
    params = {"w": w}
    Adam(lr=0.1).step(params, {"w": np.ones((3, 3), dtype=np.float32)})
    assert params["w"] is w and w.dtype == np.float32 and not np.array_equal(w, before)


@pytest.mark.parametrize("make", [lambda: SGD(lr=0.1, momentum=0.9), lambda: Adam(lr=0.1), lambda: AdamW(lr=0.1)])
def test_state_dict_resumes_exactly(make, rng):
    init = {"w": rng.normal(size=4)}
    grads = [{"w": rng.normal(size=4)} for _ in range(4)]
    straight, resumed = {"w": init["w"].copy()}, {"w": init["w"].copy()}
    opt = make()
    for g in grads:
        opt.step(straight, g)
    first = make()
    for g in grads[:2]:
        first.step(resumed, g)
    second = make()
    second.load_state_dict(first.state_dict())
    for g in grads[2:]:
        second.step(resumed, g)
    np.testing.assert_array_equal(straight["w"], resumed["w"])


def test_state_dict_is_a_copy():
    opt = Adam()
    opt.step({"w": np.zeros(2)}, {"w": np.ones(2)})
    sd = opt.state_dict()
    sd["state"]["w"]["exp_avg"][:] = 99
    assert np.all(opt.state["w"]["exp_avg"] != 99)


def test_load_state_dict_rejects_mismatch():
    opt = Adam()
    opt.step({"w": np.zeros(2)}, {"w": np.ones(2)})
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="is for 'Adam', not 'SGD'"):
        SGD().load_state_dict(sd)
    bad = dict(sd, state={"w": {"exp_avg": np.zeros(2)}})
    other = Adam(lr=0.5)
    with pytest.raises(ValueError, match="must hold"):
        other.load_state_dict(bad)
    assert other.lr == 0.5 and other.steps == 0  # unchanged after the failure
    with pytest.raises(ValueError, match="missing"):
        other.load_state_dict({"type": "Adam"})


def test_bad_step_leaves_everything_unchanged():
    opt = Adam(lr=0.1)
    params = {"a": np.ones(2), "b": np.ones(3)}
    opt.step(params, {"a": np.ones(2), "b": np.ones(3)})
    before = ({k: v.copy() for k, v in params.items()}, opt.state_dict())
    cases = [
        ({"a": np.ones(2)}, ValueError, "same keys"),
        ({"a": np.ones(2), "b": np.ones(4)}, ValueError, r"grads\['b'\] must have shape \(3,\)"),
        ({"a": np.ones(2), "b": np.array([1.0, np.nan, 1.0])}, ValueError, "NaN or inf"),
        ({"a": np.ones(2), "b": "x"}, TypeError, "must be a real ndarray"),
    ]
    for grads, exc, match in cases:
        with pytest.raises(exc, match=match):
            opt.step(params, grads)
    for k in params:
        np.testing.assert_array_equal(params[k], before[0][k])
    assert opt.steps == before[1]["steps"]
    with pytest.raises(ValueError, match="optimiser state for 'a' has shape"):
        opt.step({"a": np.ones(5), "b": np.ones(3)}, {"a": np.ones(5), "b": np.ones(3)})
    with pytest.raises(TypeError, match="params must be a dict"):
        opt.step([np.ones(2)], {"a": np.ones(2)})
    with pytest.raises(TypeError, match=r"params\['a'\] must be a float ndarray"):
        opt.step({"a": np.ones(2, dtype=int)}, {"a": np.ones(2)})


@pytest.mark.parametrize(
    "factory, exc, match",
    [
        (lambda: SGD(lr=0), ValueError, "lr must be"),
        (lambda: SGD(lr="0.1"), TypeError, "lr must be a real number"),
        (lambda: SGD(momentum=1.0), ValueError, "momentum"),
        (lambda: SGD(nesterov=True), ValueError, "nesterov=True needs momentum"),
        (lambda: SGD(nesterov=1), TypeError, "nesterov must be a bool"),
        (lambda: Adam(betas=(0.9,)), TypeError, "betas must be a pair"),
        (lambda: Adam(betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
        (lambda: Adam(eps=0), ValueError, "eps"),
        (lambda: AdamW(weight_decay=-1), ValueError, "weight_decay"),
        (lambda: Adam(lr=math.inf), ValueError, "lr must be a finite"),
        (lambda: Adam(lr=10**400), ValueError, "lr must be a finite"),  # was an OverflowError
    ],
)
def test_bad_hyperparameters(factory, exc, match):
    with pytest.raises(exc, match=match):
        factory()


def test_get_optimizer():
    assert isinstance(get_optimizer("ADAM", lr=0.5), Adam)
    opt = SGD()
    assert get_optimizer(opt) is opt
    with pytest.raises(ValueError, match="optimizer must be one of"):
        get_optimizer("rmsprop")
    with pytest.raises(TypeError, match="optimizer must be a name"):
        get_optimizer(None)
