"""Optimisers: hand-computed updates, PyTorch parity, state round trips, clipping, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from numrnn.optim import SGD, Adam, AdamW, clip_grad_norm, clip_grad_value, get_optimizer


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


def test_clip_grad_norm_matches_torch_and_returns_norm_before(rng):
    grads = {"a": rng.normal(size=(3, 3)), "b": rng.normal(size=4)}
    expected = math.sqrt(sum(float(np.sum(g**2)) for g in grads.values()))
    copies = {k: v.copy() for k, v in grads.items()}
    total = clip_grad_norm(grads, 1.0)
    assert total == pytest.approx(expected)
    after = math.sqrt(sum(float(np.sum(g**2)) for g in grads.values()))
    assert after == pytest.approx(1.0, rel=1e-5)
    torch = pytest.importorskip("torch")
    tensors = [torch.tensor(v, requires_grad=True) for v in copies.values()]
    for t, v in zip(tensors, copies.values()):
        t.grad = torch.tensor(v)
    torch.nn.utils.clip_grad_norm_(tensors, 1.0)
    for t, g in zip(tensors, grads.values()):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_leaves_small_and_nonfinite_alone():
    g = {"a": np.array([0.3, 0.4])}
    assert clip_grad_norm(g, 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(g["a"], [0.3, 0.4])
    g = {"a": np.array([np.inf, 1.0])}
    assert clip_grad_norm(g, 1.0) == math.inf
    np.testing.assert_array_equal(g["a"], [np.inf, 1.0])
    assert clip_grad_norm({"a": np.array([3.0, -4.0])}, 10.0, norm_type=math.inf) == 4.0
    assert clip_grad_norm({"a": np.array([3.0, -4.0])}, 10.0, norm_type=1) == pytest.approx(7.0)
    assert clip_grad_norm({}, 1.0) == 0.0


def test_clip_grad_value():
    g = [np.array([-3.0, 0.5, 2.0])]
    clip_grad_value(g, 1.0)
    np.testing.assert_array_equal(g[0], [-1.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="clip_value"):
        clip_grad_value(g, 0)
    with pytest.raises(TypeError, match="grads must be a dict or list"):
        clip_grad_value(np.ones(2), 1.0)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(g, -1.0)


@pytest.mark.parametrize(
    "value, norm_type",
    [(3e19, 2.0), (3e19, 3.0), (2e38, 1.0), (3e38, math.inf)],  # squares, cubes, sums past float32's 3.4e38
)
def test_clip_grad_norm_float32_reduces_in_float64(value, norm_type):
    g = np.full(10, value, dtype=np.float32)
    g64 = np.abs(g.astype(np.float64))
    exact = float(g64.max()) if math.isinf(norm_type) else float(np.sum(g64**norm_type)) ** (1 / norm_type)
    grads = {"a": g[:3].copy(), "b": np.repeat(g[3:], 2)[::2]}  # "b" strided
    total = clip_grad_norm(grads, 1.0, norm_type=norm_type)
    assert total == pytest.approx(exact, rel=1e-12)
    for a in grads.values():  # clipped: every entry scaled to the same value
        np.testing.assert_allclose(a, float(value) / exact, rtol=1e-6)


def test_clip_grad_norm_float32_large_array_is_accurate(rng):
    g = rng.normal(size=200_003).astype(np.float32)  # a float32 sum of squares is off by ~1e-6
    exact = math.sqrt(float(np.sum(g.astype(np.float64) ** 2)))
    assert clip_grad_norm([g], 1e9) == pytest.approx(exact, rel=1e-12)


# ------------------------------------------------------------------------------- LBFGS

from numrnn.optim import LBFGS  # noqa: E402


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
