"""Losses: values against hand formulas and PyTorch, gradients against central differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from numrnn.losses import LOSSES, GaussianNLLLoss, HuberLoss, MAELoss, MSELoss, get_loss


def numerical_grad(loss, pred, target, eps=1e-6):
    grad = np.zeros_like(pred)
    flat, gflat = pred.reshape(-1), grad.reshape(-1)
    for j in range(flat.size):
        old = flat[j]
        flat[j] = old + eps
        plus = loss(pred, target)[0]
        flat[j] = old - eps
        minus = loss(pred, target)[0]
        flat[j] = old
        gflat[j] = (plus - minus) / (2 * eps)
    return grad


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradient_matches_central_differences(name, rng):
    loss = get_loss(name)
    pred = rng.normal(size=(4, 6))
    target = rng.normal(size=(4, 6 // loss.outputs_per_target))
    value, grad = loss(pred, target)
    assert isinstance(value, float)
    assert grad.shape == pred.shape and grad.dtype == pred.dtype
    np.testing.assert_allclose(grad, numerical_grad(loss, pred, target), rtol=1e-6, atol=1e-9)


def test_values_by_hand():
    pred, target = np.array([1.0, -2.0, 0.5]), np.array([0.0, 0.0, 0.0])
    assert MSELoss()(pred, target)[0] == pytest.approx((1 + 4 + 0.25) / 3)
    assert MAELoss()(pred, target)[0] == pytest.approx(3.5 / 3)
    # Huber, delta 1: 0.5*0.25 for the small one, 1*(|d| - 0.5) for the others
    assert HuberLoss(1.0)(pred, target)[0] == pytest.approx((0.5 + 1.5 + 0.125) / 3)
    mean_logvar = np.array([[1.0, math.log(4.0)]])
    value = GaussianNLLLoss()(mean_logvar, np.array([[3.0]]))[0]
    assert value == pytest.approx(0.5 * (math.log(4.0) + 4.0 / 4.0))
    full = GaussianNLLLoss(full=True)(mean_logvar, np.array([[3.0]]))[0]
    assert full == pytest.approx(value + 0.5 * math.log(2 * math.pi))


def test_mae_gradient_is_zero_at_zero_difference():
    assert np.all(MAELoss()(np.ones(3), np.ones(3))[1] == 0)


def test_float32_keeps_dtype():
    pred = np.ones((2, 4), dtype=np.float32)
    for name in LOSSES:
        assert get_loss(name)(pred, np.zeros((2, 4 // get_loss(name).outputs_per_target)))[1].dtype == np.float32


def test_gaussian_extreme_log_variance_is_finite():
    pred = np.array([[0.0, 0.0, -1e4, 1e4]])
    with np.errstate(all="raise"):
        value, grad = GaussianNLLLoss()(pred, np.array([[1.0, 1.0]]))
    assert math.isfinite(value) and np.all(np.isfinite(grad))


def test_torch_parity(rng):
    torch = pytest.importorskip("torch")
    pred, target = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    tp, tt = torch.tensor(pred, requires_grad=True), torch.tensor(target)
    cases = [
        (MSELoss(), torch.nn.MSELoss()),
        (MAELoss(), torch.nn.L1Loss()),
        (HuberLoss(0.7), torch.nn.HuberLoss(delta=0.7)),
    ]
    for ours, theirs in cases:
        tp.grad = None
        out = theirs(tp, tt)
        out.backward()
        value, grad = ours(pred, target)
        assert value == pytest.approx(out.item(), rel=1e-12)
        np.testing.assert_allclose(grad, tp.grad.numpy(), rtol=1e-12)
    # Gaussian NLL: torch takes a variance; ours a log-variance
    mean, log_var = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    value, _ = GaussianNLLLoss()(np.concatenate([mean, log_var], axis=1), target)
    ref = torch.nn.GaussianNLLLoss(eps=1e-300)(torch.tensor(mean), tt, torch.tensor(np.exp(log_var)))
    assert value == pytest.approx(ref.item(), rel=1e-12)


def test_get_loss():
    assert isinstance(get_loss("MSE"), MSELoss)
    assert get_loss("huber", delta=2.0).delta == 2.0
    loss = MAELoss()
    assert get_loss(loss) is loss
    with pytest.raises(ValueError, match="loss must be one of"):
        get_loss("hinge")
    with pytest.raises(TypeError, match="loss must be a name"):
        get_loss(3)
    with pytest.raises(TypeError, match="only accepted with a loss name"):
        get_loss(loss, delta=1.0)


@pytest.mark.parametrize(
    "pred, target, exc, match",
    [
        (np.ones(3), np.ones(2), ValueError, "target must have shape"),
        (np.ones(3), np.array([1.0, np.nan, 1.0]), ValueError, "target contains NaN"),
        (np.array([np.inf, 1.0, 1.0]), np.ones(3), ValueError, "pred contains NaN"),
        (np.array(["a", "b"]), np.ones(2), TypeError, "pred must be a real numeric array"),
        (None, np.ones(2), TypeError, "pred must be a real numeric array"),
        (np.ones(0), np.ones(0), ValueError, "must not be empty"),
    ],
)
def test_bad_input(pred, target, exc, match):
    with pytest.raises(exc, match=match):
        MSELoss()(pred, target)


def test_gaussian_needs_even_outputs():
    with pytest.raises(ValueError, match="divisible by 2"):
        GaussianNLLLoss()(np.ones((2, 3)), np.ones((2, 1)))


@pytest.mark.parametrize("delta, exc", [(0.0, ValueError), (-1.0, ValueError), (math.nan, ValueError), ("1", TypeError)])
def test_huber_bad_delta(delta, exc):
    with pytest.raises(exc, match="delta"):
        HuberLoss(delta)
