"""Gradient clipping (numrnn.optim.clip): PyTorch parity, the norm returned, float64 reduction, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from numrnn.optim import clip_grad_norm, clip_grad_value


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
