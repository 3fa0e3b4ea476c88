"""L-BFGS (numrnn.optim.lbfgs): PyTorch parity, convergence, state round trips, failures, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from numrnn.optim import LBFGS, Adam, get_optimizer


def _rosenbrock(x):
    """Loss and gradient of the Rosenbrock function in len(x) dimensions (NumPy, float64)."""
    loss = float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))
    grad = np.zeros_like(x)
    grad[:-1] += -400 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
    grad[1:] += 200 * (x[1:] - x[:-1] ** 2)
    return loss, grad


def _rosenbrock_problem(dtype=np.float64, n=6):
    """params split in two arrays, grads, and a closure filling grads."""
    x0 = np.linspace(-1.2, 1.0, n).astype(dtype)
    params = {"a": x0[:3].copy(), "b": x0[3:].copy()}
    grads = {k: np.zeros_like(v) for k, v in params.items()}

    def closure():
        loss, g = _rosenbrock(np.concatenate([params["a"], params["b"]]).astype(np.float64))
        grads["a"][...] = g[:3]
        grads["b"][...] = g[3:]
        return loss

    return x0, params, grads, closure


# Fixed steps of lr = 1 on Rosenbrock amplify rounding (PyTorch fuses x + t d into one multiply-add,
# NumPy does not) to ~5e-10 within 20 iterations: the fixed-step cases here take shorter runs or steps.
LBFGS_SETTINGS = [
    dict(lr=0.5, history_size=3, max_iter=7),
    dict(max_iter=5),
    dict(lr=0.5, max_iter=10, tolerance_change=1e-4, tolerance_grad=1e-1),
    dict(line_search_fn="strong_wolfe"),
    dict(line_search_fn="strong_wolfe", history_size=2, max_iter=4, max_eval=6),
    dict(line_search_fn="strong_wolfe", max_iter=3, max_eval=1),  # no evaluation left for the line search
]


@pytest.mark.torch
@pytest.mark.parametrize("settings", LBFGS_SETTINGS, ids=[str(s) for s in LBFGS_SETTINGS])
def test_lbfgs_rosenbrock_matches_torch(settings):
    """The same closure values on both sides: the optimisers' arithmetic is compared."""
    torch = pytest.importorskip("torch")
    x0, params, grads, closure = _rosenbrock_problem()
    ta = torch.tensor(x0[:3].copy(), requires_grad=True)
    tb = torch.tensor(x0[3:].copy(), requires_grad=True)
    topt = torch.optim.LBFGS([ta, tb], **settings)

    def tclosure():
        loss, g = _rosenbrock(np.concatenate([ta.detach().numpy(), tb.detach().numpy()]))
        ta.grad, tb.grad = torch.tensor(g[:3]), torch.tensor(g[3:])
        return loss

    opt = LBFGS(**settings)
    for _ in range(8):
        ours, theirs = opt.step(params, grads, closure), topt.step(tclosure)
        assert abs(ours - theirs) <= 1e-9
        np.testing.assert_allclose(params["a"], ta.detach().numpy(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(params["b"], tb.detach().numpy(), rtol=0, atol=1e-9)
        tstate = topt.state[ta]
        assert opt.state["func_evals"] == tstate["func_evals"] and opt.state["n_iter"] == tstate["n_iter"]
        if "old_dirs" in tstate:
            assert len(opt.state["old_dirs"]) == len(tstate["old_dirs"])
    assert opt.steps == 8


def _regression_data(rng, steps=5, batch=6, inputs=2):
    x = rng.normal(size=(steps, batch, inputs))
    target = np.sin(x.sum(axis=(0, 2)))[:, None] + 0.1 * x[-1, :, :1]
    return x, target


@pytest.mark.torch
@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("kind", ["linear", "rnn"])
def test_lbfgs_regression_matches_torch(kind, line_search_fn, rng):
    """A tiny linear and a tiny RNN regression, each side computing its own loss and gradients."""
    torch = pytest.importorskip("torch")
    import numrnn
    from numrnn import losses, nn

    x, target = _regression_data(rng)
    if kind == "linear":
        model = nn.Linear(2, 1, dtype=np.float64, seed=0)
        head = torch.nn.Linear(2, 1, dtype=torch.float64)
        modules = [head]
        inp = x[-1]

        def tforward(tx):
            return head(tx)
    else:
        model = nn.Sequential(numrnn.RNN(2, 4, dtype=np.float64, seed=0, backend="cpu"), nn.LastStep(),
                              nn.Linear(4, 1, dtype=np.float64, seed=1))
        rnn, head = torch.nn.RNN(2, 4, dtype=torch.float64), torch.nn.Linear(4, 1, dtype=torch.float64)
        rnn.load_state_dict({k: torch.tensor(v) for k, v in model[0].state_dict().items()})
        modules = [rnn, head]
        inp = x

        def tforward(tx):
            return head(rnn(tx)[0][-1])
    head.load_state_dict({k: torch.tensor(v) for k, v in (model if kind == "linear" else model[2]).state_dict().items()})
    loss = losses.MSELoss()

    def closure():
        model.zero_grad()
        value, grad = loss(model(inp), target)
        model.backward(grad)
        return value

    tparams = [p for m in modules for p in m.parameters()]
    topt = torch.optim.LBFGS(tparams, line_search_fn=line_search_fn)
    tx, ttarget = torch.tensor(inp), torch.tensor(target)

    def tclosure():
        topt.zero_grad()
        value = torch.mean((tforward(tx) - ttarget) ** 2)
        value.backward()
        return value

    opt = LBFGS(line_search_fn=line_search_fn)
    for _ in range(3):
        ours, theirs = opt.step(model.params, model.grads, closure), float(topt.step(tclosure).detach())
        assert abs(ours - theirs) <= 1e-9
    tvalues = np.concatenate([p.detach().numpy().ravel() for p in tparams])
    ovalues = np.concatenate([v.ravel() for v in model.params.values()])
    np.testing.assert_allclose(ovalues, tvalues, rtol=0, atol=1e-9)
    assert opt.state["func_evals"] == topt.state[tparams[0]]["func_evals"]


def test_lbfgs_converges_on_rosenbrock_and_keeps_dtype():
    for dtype in (np.float64, np.float32):
        _, params, grads, closure = _rosenbrock_problem(dtype)
        arrays = dict(params)
        opt = LBFGS(line_search_fn="strong_wolfe", max_iter=200, max_eval=400)
        first = opt.step(params, grads, closure)
        assert first == pytest.approx(_rosenbrock(np.linspace(-1.2, 1.0, 6).astype(dtype).astype(np.float64))[0])
        for k, v in params.items():
            assert v is arrays[k] and v.dtype == dtype  # in place
        np.testing.assert_allclose(np.concatenate(list(params.values())), 1.0, atol=1e-5 if dtype == np.float64 else 1e-2)
        assert opt.state["d"].dtype == dtype


def test_lbfgs_by_hand_on_a_quadratic():
    """f = 0.5 x^T A x: the first step is -min(1, 1/|g|_1) g (lr 1), and L-BFGS then solves a
    2-D quadratic within a few iterations."""
    a = np.array([[3.0, 1.0], [1.0, 2.0]])
    params = {"x": np.array([1.0, -2.0])}
    grads = {"x": np.zeros(2)}

    def closure():
        grads["x"][...] = a @ params["x"]
        return 0.5 * params["x"] @ a @ params["x"]

    g0 = a @ params["x"]
    opt = LBFGS(max_iter=1)
    opt.step(params, grads, closure)
    np.testing.assert_allclose(params["x"], np.array([1.0, -2.0]) - min(1.0, 1.0 / np.abs(g0).sum()) * g0, rtol=1e-15)
    LBFGS(line_search_fn="strong_wolfe").step(params, grads, closure)
    np.testing.assert_allclose(params["x"], 0.0, atol=1e-7)


def test_lbfgs_pair_closure_matches_filling_closure():
    from numrnn import nn
    from numrnn.train import make_closure

    rng = np.random.default_rng(0)
    x, target = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    one, two = nn.Linear(3, 2, dtype=np.float64, seed=0), nn.Linear(3, 2, dtype=np.float64, seed=0)
    pair = make_closure(one, "mse", x, target)  # returns (value, grads copies)
    LBFGS(line_search_fn="strong_wolfe").step(one.params, None, pair)
    from numrnn.losses import MSELoss

    def fill():
        two.zero_grad()
        value, grad = MSELoss()(two(x), target)
        two.backward(grad)
        return value

    LBFGS(line_search_fn="strong_wolfe").step(two.params, two.grads, fill)
    for k in one.params:
        np.testing.assert_array_equal(one.params[k], two.params[k])


@pytest.mark.parametrize("settings", [dict(), dict(line_search_fn="strong_wolfe", history_size=3)])
def test_lbfgs_state_dict_resumes_exactly(settings):
    _, straight, grads, closure_s = _rosenbrock_problem()
    opt = LBFGS(max_iter=5, **settings)
    for _ in range(4):
        opt.step(straight, grads, closure_s)
    _, resumed, grads_r, closure_r = _rosenbrock_problem()
    first = LBFGS(max_iter=5, **settings)
    for _ in range(2):
        first.step(resumed, grads_r, closure_r)
    sd = first.state_dict()
    assert sd["type"] == "LBFGS" and sd["steps"] == 2 and sd["config"]["max_eval"] == 6
    assert sd["state"]["old_dirs"].shape == sd["state"]["old_stps"].shape == (len(first.state["ro"]), 6)
    sd["state"]["d"][:] = 99  # a copy
    assert not np.any(first.state["d"] == 99)
    second = LBFGS()
    second.load_state_dict(first.state_dict())
    assert second.config() == first.config()
    for _ in range(2):
        second.step(resumed, grads_r, closure_r)
    for k in straight:
        np.testing.assert_array_equal(straight[k], resumed[k])
    assert second.state["func_evals"] == opt.state["func_evals"] and second.steps == 4
    empty = LBFGS()
    empty.load_state_dict(LBFGS().state_dict())
    assert empty.state == {} and empty.steps == 0


def test_lbfgs_load_state_dict_rejects_mismatch():
    _, params, grads, closure = _rosenbrock_problem()
    opt = LBFGS(lr=0.5, max_iter=6, history_size=5)
    opt.step(params, grads, closure)
    sd = opt.state_dict()
    assert len(sd["state"]["ro"]) >= 2
    with pytest.raises(ValueError, match="is for 'LBFGS', not 'Adam'"):
        Adam().load_state_dict(sd)
    other = LBFGS(lr=0.5)
    bad = dict(sd, state=dict(sd["state"], d=np.zeros(5)))
    with pytest.raises(ValueError, match=r"\['d'\] must be a float64 array of shape \(6,\)"):
        other.load_state_dict(bad)
    bad = dict(sd, config=dict(sd["config"], history_size=1))
    with pytest.raises(ValueError, match="<= history_size"):
        other.load_state_dict(bad)
    bad = dict(sd, state={k: v for k, v in sd["state"].items() if k != "ro"})
    with pytest.raises(ValueError, match="must hold"):
        other.load_state_dict(bad)
    assert other.lr == 0.5 and other.state == {} and other.steps == 0  # unchanged after the failures


def test_lbfgs_failure_restores_params_and_state():
    _, params, grads, closure = _rosenbrock_problem()
    opt = LBFGS(max_iter=4)
    opt.step(params, grads, closure)
    before = ({k: v.copy() for k, v in params.items()}, opt.state_dict())
    calls = [0]

    def breaks_at(n, how):
        def closure_once():
            calls[0] += 1
            value = closure()
            if calls[0] == n:
                if how == "nan_loss":
                    return math.nan
                if how == "nan_grad":
                    grads["b"][1] = np.inf
                if how == "raise":
                    raise RuntimeError("boom")
            return value
        return closure_once

    for how, exc, match in [("nan_loss", ValueError, r"the loss is nan .* closure evaluation 3 of this step"),
                            ("nan_grad", ValueError, r"grads\['b'\] contains NaN or inf at closure evaluation 3"),
                            ("raise", RuntimeError, "boom")]:
        calls[0] = 0
        with pytest.raises(exc, match=match):
            opt.step(params, grads, breaks_at(3, how))
        for k in params:
            np.testing.assert_array_equal(params[k], before[0][k])
        after = opt.state_dict()
        assert after["steps"] == before[1]["steps"] and after["state"]["func_evals"] == before[1]["state"]["func_evals"]
        np.testing.assert_array_equal(after["state"]["d"], before[1]["state"]["d"])


def test_lbfgs_bad_calls():
    _, params, grads, closure = _rosenbrock_problem()
    opt = LBFGS()
    with pytest.raises(TypeError, match="needs a closure"):
        opt.step(params, grads)
    with pytest.raises(TypeError, match="closure must be callable"):
        opt.step(params, grads, 3.0)
    with pytest.raises(TypeError, match="closure must return the loss"):
        opt.step(params, grads, lambda: "x")
    with pytest.raises(TypeError, match="closure must return the loss"):
        opt.step(params, grads, lambda: np.ones(2))
    with pytest.raises(TypeError, match="grads is None"):
        opt.step(params, None, closure)
    with pytest.raises(ValueError, match="grads must have the same keys as params"):
        opt.step(params, {"a": grads["a"]}, closure)
    with pytest.raises(ValueError, match="params must hold at least one array"):
        opt.step({}, {}, closure)
    with pytest.raises(TypeError, match=r"params\['a'\] must be a float ndarray"):
        opt.step({"a": np.ones(3, dtype=int)}, {"a": np.ones(3)}, closure)
    with pytest.raises(ValueError, match=r"grads\['a'\] must have shape \(3,\)"):
        opt.step(params, grads, lambda: (1.0, {"a": np.ones(2), "b": np.ones(3)}))
    assert opt.state == {} and opt.steps == 0
    opt.step(params, grads, closure)
    with pytest.raises(ValueError, match="do not match the optimiser's state.*reset()"):
        opt.step({"a": np.ones(4), "b": np.ones(3)}, {"a": np.ones(4), "b": np.ones(3)}, lambda: 1.0)
    opt.reset()
    assert opt.state == {} and opt.steps == 0
    assert get_optimizer(opt) is opt


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(lr=0), ValueError, "lr must be"),
        (dict(max_iter=0), ValueError, "max_iter must be an int >= 1"),
        (dict(max_iter=2.0), TypeError, "max_iter must be an int"),
        (dict(max_eval=True), TypeError, "max_eval must be an int"),
        (dict(history_size=0), ValueError, "history_size"),
        (dict(tolerance_grad=-1), ValueError, "tolerance_grad"),
        (dict(tolerance_change=math.nan), ValueError, "tolerance_change"),
        (dict(line_search_fn="backtracking"), ValueError, "line_search_fn must be None or 'strong_wolfe'"),
        (dict(line_search_fn=1), TypeError, "line_search_fn must be None or 'strong_wolfe'"),
    ],
)
def test_lbfgs_bad_hyperparameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        LBFGS(**kwargs)


def test_lbfgs_defaults_are_torchs():
    assert LBFGS().config() == {"lr": 1.0, "max_iter": 20, "max_eval": 25, "tolerance_grad": 1e-7,
                                "tolerance_change": 1e-9, "history_size": 100, "line_search_fn": None}
    assert LBFGS(max_iter=1).max_eval == 1
