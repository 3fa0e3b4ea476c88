"""numrnn._jit: compile_scalar compiles one plain-Python formula per target, replacing the
cell functions it calls by their compiled forms; the compile options live in one place."""

from __future__ import annotations

import types

import numba
import numpy as np
import pytest

from numrnn import _jit


@pytest.fixture(autouse=True)
def _no_disk_cache(monkeypatch):
    # functions defined by exec have no source file for Numba's on-disk cache to key on
    monkeypatch.setitem(_jit.CPU_OPTIONS, "cache", False)


def _cell_function(source, name, namespace):
    """A plain function defined as if in a module of numrnn.cells (what compile_scalar treats
    as cell code), with its globals in ``namespace``."""
    exec(compile(source, f"<numrnn.cells.{name}>", "exec"), namespace)
    fn = namespace[name]
    fn.__module__ = "numrnn.cells._jit_test"
    return fn


def test_callees_are_compiled_recursively_and_the_original_stays_python():
    namespace = {}
    double = _cell_function("def double(x):\n    return 2.0 * x\n", "double", namespace)
    outer = _cell_function("def outer(x):\n    return double(x) + 1.0\n", "outer", namespace)
    compiled = _jit.compile_scalar(outer, "cpu")
    assert isinstance(compiled, numba.core.registry.CPUDispatcher)
    assert compiled(3.0) == outer(3.0) == 7.0
    assert namespace["double"] is double  # the Python original is untouched
    assert isinstance(outer, types.FunctionType)


def test_compiled_forms_are_cached_per_target():
    namespace = {}
    fn = _cell_function("def halve(x):\n    return 0.5 * x\n", "halve", namespace)
    assert _jit.compile_scalar(fn, "cpu") is _jit.compile_scalar(fn, "cpu")


def test_override_replaces_a_callee_on_one_target_only():
    namespace = {}
    inner = _cell_function("def inner(x):\n    return x + 1.0\n", "inner", namespace)
    outer = _cell_function("def outer2(x):\n    return inner(x) * 10.0\n", "outer2", namespace)
    _jit.override_scalar("cpu", inner, numba.njit(lambda x: x + 2.0))
    assert _jit.compile_scalar(outer, "cpu")(1.0) == 30.0
    assert outer(1.0) == 20.0  # Python keeps the original formula


def test_with_globals_rebinds_names_only_in_the_copy():
    namespace = {"k": 2.0}
    fn = _cell_function("def scale(x):\n    return k * x\n", "scale", namespace)
    clone = _jit.with_globals(fn, {"k": 5.0})
    assert (fn(1.0), clone(1.0)) == (2.0, 5.0)
    assert (clone.__name__, clone.__module__, clone.__doc__) == (fn.__name__, fn.__module__, fn.__doc__)


def test_unknown_target_is_a_value_error():
    namespace = {}
    fn = _cell_function("def ident(x):\n    return x\n", "ident", namespace)
    with pytest.raises(ValueError, match="target must be 'cpu', 'cuda' or 'numpy', got 'tpu'"):
        _jit.compile_scalar(fn, "tpu")


def test_one_set_of_cpu_options():
    assert _jit.CACHE in (True, False)
    assert _jit.CPU_OPTIONS["fastmath"] == set(_jit.FASTMATH)
    assert "nsz" not in _jit.FASTMATH  # see the thread-count/cache bit-identity tests
    assert _jit.CPU_OPTIONS["error_model"] == "numpy" and _jit.CPU_OPTIONS["nogil"]
    assert "cache" not in _jit.OVERLOAD_OPTIONS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_target_runs_each_formula_on_whole_arrays(dtype):
    """The "numpy" target compiles nothing: the cell formulas, with array activations,
    give elementwise what the Python scalar functions give (NaN and the tails too)."""
    from numrnn.backends.cpu import numpy_kernels  # noqa: F401  (registers the array activations)
    from numrnn.cells import gru, lstm, rnn

    values = np.array([-1e30, -40.0, -1.5, 0.0, 0.7, 40.0, np.nan], dtype=dtype)
    for fn, arity in ((lstm.forward, 5), (lstm.backward, 8), (gru.gates, 2), (gru.candidate_update, 3),
                      (rnn.relu_forward, 1), (rnn.relu_backward, 2), (rnn.tanh_backward, 2)):
        on_arrays = _jit.compile_scalar(fn, "numpy")
        assert on_arrays is not fn and on_arrays.__code__ is fn.__code__  # the same formula
        rolled = [np.roll(values, k) for k in range(arity)]
        with np.errstate(all="ignore"):
            got = on_arrays(*rolled)
            got = got if isinstance(got, tuple) else (got,)
            for index in range(values.size):
                want = fn(*(r[index] for r in rolled))
                want = want if isinstance(want, tuple) else (want,)
                for g, w in zip(got, want):
                    assert g.dtype == dtype
                    # float32 sigmoid is (1 + tanh(x / 2)) / 2, as in the compiled float32 kernels (0
                    # below -17); and in plain Python, float32 ONE + math.exp(...) is float32 even for
                    # float64 input, so this holds both to float32 rounding (float64 exactness of the
                    # array forms: tests/backends/cpu/test_numpy_kernels.py, to 1e-12)
                    np.testing.assert_allclose(g[index], w, rtol=1e-6, atol=1e-7)


def test_numrnn_kernels_are_cached_under_the_digest_of_every_kernel_source():
    """A cached kernel is stale when any kernel source changed, not only its own file."""
    from numrnn.backends import cpu

    locator = cpu.lstm_forward._cache._impl.locator
    assert isinstance(locator, _jit.KernelSourcesLocator)
    inner_stamp, digest = locator.get_source_stamp()
    assert digest == _jit.kernel_sources_digest()
    assert locator.get_cache_path() == cpu.lstm_forward.stats.cache_path
    sources = _jit.kernel_sources()
    for name in ("_jit.py", "cells/lstm.py", "backends/cpu/step.py", "nn/cell_kernels.py"):
        assert any(path.endswith(name) for path in sources), name
    # a function of another file keeps Numba's own locator
    assert _jit.KernelSourcesLocator.from_function(test_one_set_of_cpu_options, __file__) is None


def test_the_kernel_sources_digest_follows_their_contents(tmp_path, monkeypatch):
    source = tmp_path / "formula.py"
    source.write_text("def f(x):\n    return x + 1\n")
    monkeypatch.setattr(_jit, "kernel_sources", lambda: [str(source)])
    monkeypatch.setattr(_jit, "_sources_digest", None)
    before = _jit.kernel_sources_digest()
    source.write_text("def f(x):\n    return x + 2\n")
    monkeypatch.setattr(_jit, "_sources_digest", None)
    assert _jit.kernel_sources_digest() != before
