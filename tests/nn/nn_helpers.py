"""Helpers shared by the tests of numrnn.nn: stacks, a module that can fail, finite differences."""

from __future__ import annotations

import numpy as np

import numrnn
from numrnn import nn


def make_stack(cell=numrnn.GRU, seed=0):
    model = nn.Sequential(cell(3, 5, dtype=np.float64, seed=seed), nn.LastStep(), nn.Linear(5, 2, dtype=np.float64, seed=seed + 1))
    for k, v in model.params.items():  # non-zero, unequal biases
        if "bias" in k:
            v[:] = np.random.default_rng(len(k)).normal(size=v.shape)
    return model


class Picky(nn.Module):
    """Passes its input on, or raises ``reject`` (an exception) as a later module of a stack may."""

    reject = None

    def forward(self, x):
        if self.reject is not None:
            raise self.reject
        return x

    def backward(self, dy):
        return dy

    def config(self):
        return {}


def numeric_input_grad(f, x, eps=1e-6):
    """Central differences of the scalar ``f(x)`` with respect to every entry of ``x`` (float64)."""
    grad = np.zeros_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for j in range(flat.size):
        original = flat[j]
        flat[j] = original + eps
        plus = f(x)
        flat[j] = original - eps
        minus = f(x)
        flat[j] = original
        out[j] = (plus - minus) / (2 * eps)
    return grad


def check_input_grad(module, x, rng, rtol=1e-6, atol=1e-8):
    """``module.backward(w)`` against central differences of ``sum(module(x) * w)``."""
    w = rng.normal(size=np.shape(module(x)))
    numerical = numeric_input_grad(lambda z: float(np.sum(module(z) * w)), x.copy())
    module(x)
    np.testing.assert_allclose(module.backward(w), numerical, rtol=rtol, atol=atol)


def unequal(rng, module, scale=1.0):
    """Give every parameter non-zero, unequal values (weights near 1 for LayerNorm)."""
    for k, v in module.params.items():
        v[...] = (1.0 if k == "weight" and isinstance(module, nn.LayerNorm) else 0.0) + scale * rng.normal(size=v.shape)
    return module
