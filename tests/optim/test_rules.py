"""The update rules (numrnn.optim.rules): a leaf module, one function for arrays and for scalars."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

import numrnn
from numrnn.optim import rules

PACKAGE = pathlib.Path(numrnn.__file__).parent


def _imported_modules(path):
    """Every module named by an import statement of the file (at any depth)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_rules_is_a_leaf():
    imported = _imported_modules(pathlib.Path(rules.__file__))
    allowed = {"__future__", "__future__.annotations", "math", "numpy", "numrnn._jit"}
    assert imported <= allowed, sorted(imported - allowed)


def test_cuda_optimiser_kernels_import_only_the_rules_of_optim():
    path = PACKAGE / "backends" / "cuda" / "optim.py"
    from_optim = {name for name in _imported_modules(path) if name.startswith("numrnn.optim")}
    assert from_optim == {"numrnn.optim.rules"}, sorted(from_optim)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_rule_on_scalars_equals_the_rule_on_arrays(dtype, rng):
    """The CUDA kernels apply the rule per element: element by element it gives the array result."""
    p, g, m, v = (rng.normal(size=5).astype(dtype) for _ in range(4))
    v = np.abs(v)
    coefficients = dict(beta1=dtype(0.9), grad_scale1=dtype(0.1), beta2=dtype(0.999), grad_scale2=dtype(0.001),
                        step_size=dtype(0.01), bias_correction2_sqrt=dtype(0.05), eps=dtype(1e-8),
                        weight_decay=dtype(0.1), decoupled=False, decay_scale=dtype(0.999))
    whole = rules.adam_rule(p, g, m, v, **coefficients)
    for i in range(p.size):
        one = rules.adam_rule(p[i], g[i], m[i], v[i], **coefficients)
        for a, b in zip(whole, one):
            assert a[i] == b and np.asarray(b).dtype == dtype


def test_sgd_and_clamp_rules_on_scalars_equal_the_rules_on_arrays(rng):
    p, g, buf = (rng.normal(size=4) for _ in range(3))
    settings = dict(lr=0.1, weight_decay=0.01, momentum=0.9, grad_scale=0.8, nesterov=True, first_step=False)
    new_p, new_buf = rules.sgd_rule(p, g, buf, **settings)
    clamped = rules.clamp_rule(g, 0.5)
    for i in range(p.size):
        assert rules.sgd_rule(p[i], g[i], buf[i], **settings) == (new_p[i], new_buf[i])
        assert rules.clamp_rule(g[i], 0.5) == clamped[i]
    assert np.all(np.abs(clamped) <= 0.5)
