"""The CUDA backend's building blocks: matrix product, column sums, copies, device arrays
in and out of the backend, the size limit, and backend selection."""

from __future__ import annotations

import numpy as np
import pytest

from cuda_env import MODE, RTOL
from helpers import assert_rel_close


@pytest.fixture
def kernels():
    from numrnn.backends import cuda as kernels

    return kernels


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_all_layouts_with_partial_tiles(kernels, trans_a, trans_b, rng):
    """4x4 output tiles over a (6, 9) result with depth 5: partial tiles on both edges."""
    from numba import cuda

    rows, cols, depth = 6, 9, 5
    a = rng.normal(size=(depth, rows) if trans_a else (rows, depth))
    b = rng.normal(size=(cols, depth) if trans_b else (depth, cols))
    bias = rng.normal(size=cols)
    out = kernels.empty((rows, cols), np.float64)
    kernels.matmul(cuda.to_device(a), cuda.to_device(b), out, trans_a=trans_a, trans_b=trans_b,
                   bias=cuda.to_device(bias))
    expected = (a.T if trans_a else a) @ (b.T if trans_b else b) + bias
    assert_rel_close(out.copy_to_host(), expected, 1e-12)


def test_matmul_strided_operands_and_output(kernels, rng):
    """Column slices as operands and a row slice as output (the Cho-GRU weight gradient)."""
    from numba import cuda

    a_full = rng.normal(size=(7, 9)).astype(np.float32)
    b = rng.normal(size=(7, 4)).astype(np.float32)
    out_full = kernels.zeros((9, 4), np.float32)
    a_dev = cuda.to_device(a_full)
    kernels.matmul(a_dev[:, 3:], cuda.to_device(b), out_full[3:], trans_a=True)
    result = out_full.copy_to_host()
    assert_rel_close(result[3:], a_full[:, 3:].T @ b, 1e-5)
    assert not result[:3].any()


def test_column_sum_spans_chunks(kernels, rng):
    from numba import cuda

    values = rng.normal(size=(23, 6))
    out = kernels.column_sum(cuda.to_device(values))
    assert_rel_close(out.copy_to_host(), values.sum(axis=0), 1e-12)


def test_copy_swaps_and_casts(kernels, rng):
    from numba import cuda

    values = rng.normal(size=(2, 5, 3))
    swapped = kernels.copy(cuda.to_device(values), np.float32, swap01=True)
    assert swapped.shape == (5, 2, 3) and swapped.dtype == np.float32
    np.testing.assert_array_equal(swapped.copy_to_host(), values.transpose(1, 0, 2).astype(np.float32))
    strided = kernels.contiguous(cuda.to_device(values)[:, 1:4], np.float64)
    np.testing.assert_array_equal(strided.copy_to_host(), values[:, 1:4])


@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_reset_before", "rnn_tanh"])
def test_backend_device_arrays_in_and_out(kernels, cell, rng):
    """Device arrays in: device arrays out, equal to the NumPy path of the same backend."""
    from numba import cuda

    from numrnn.cells import GATES

    steps, batch, features, hidden = 3, 3, 2, 3
    gates = GATES[cell] * hidden
    x = rng.normal(size=(steps, batch, features))
    weights = (rng.normal(size=(gates, features)), rng.normal(size=(gates, hidden)),
               rng.normal(size=gates), rng.normal(size=gates))
    state0 = tuple(rng.normal(size=(batch, hidden)) for _ in range(2 if cell == "lstm" else 1))
    lengths = np.array([3, 1, 2])
    dy = rng.normal(size=(steps, batch, hidden))
    backend = kernels.CUDABackend()

    y_host = np.zeros((steps, batch, hidden))
    state_host, saved = backend.layer_forward(cell, x, lengths, True, weights, state0, y_host)
    host_grads = backend.layer_backward(saved, dy, state0)

    y_dev = kernels.zeros((steps, batch, hidden), np.float64)
    state_dev, saved = backend.layer_forward(
        cell, cuda.to_device(x), cuda.to_device(lengths), True, tuple(cuda.to_device(w) for w in weights),
        tuple(cuda.to_device(s) for s in state0), y_dev)
    assert all(kernels.is_device_array(s) for s in state_dev)
    np.testing.assert_array_equal(y_dev.copy_to_host(), y_host)
    for a, e in zip(state_dev, state_host):
        np.testing.assert_array_equal(a.copy_to_host(), e)
    dx, dstate0, grads = backend.layer_backward(saved, cuda.to_device(dy), tuple(cuda.to_device(s) for s in state0))
    assert kernels.is_device_array(dx)
    np.testing.assert_array_equal(dx.copy_to_host(), host_grads[0])
    for a, e in zip(dstate0 + grads, host_grads[1] + host_grads[2]):
        assert kernels.is_device_array(a)
        np.testing.assert_array_equal(a.copy_to_host(), e)


def test_hidden_size_beyond_shared_memory_raises(kernels, small_launch, monkeypatch):
    import numrnn

    monkeypatch.setattr(small_launch, "max_shared_bytes", 4 * 8 * 6)
    kernels.check_hidden_size("lstm", 6, np.float64)  # exactly fits
    with pytest.raises(ValueError, match="hidden_size=7 is too large"):
        kernels.check_hidden_size("lstm", 7, np.float64)
    layer = numrnn.LSTM(2, 7, dtype=np.float64, backend="cuda")
    with pytest.raises(ValueError, match="hidden_size=7 is too large"):
        layer(np.zeros((2, 1, 2)))


def test_backend_selection(monkeypatch):
    import numrnn
    from numrnn import backends

    assert numrnn.get_backend("cuda").name == "cuda"
    assert numrnn.LSTM(2, 3, backend="cuda")._backend.name == "cuda"
    monkeypatch.setenv("NUMRNN_BACKEND", "cuda")
    assert numrnn.get_backend("auto").name == "cuda"
    monkeypatch.delenv("NUMRNN_BACKEND")
    expected = "cpu" if MODE == "simulator" else "cuda"  # "auto" never picks the simulator
    assert backends.resolve_backend_name("auto") == expected
    assert backends.cuda_available() and backends.cuda_available(allow_simulator=False) == (MODE == "gpu")


def test_float32_tolerance_is_the_issue_target():
    assert RTOL[np.dtype(np.float32)] == 1e-4
