"""The CUDA backend equals the CPU backend, layer by layer, for every cell and option.

Each test builds the same layer twice (same seed, so the same weights and the same
dropout masks), once with ``backend="cpu"`` and once with ``backend="cuda"``, and
compares outputs, final states, ``dx``, initial-state gradients and every parameter
gradient (relative tolerances in ``conftest.RTOL``).  Weights get random, non-zero,
unequal biases first.
"""

from __future__ import annotations

import numpy as np
import pytest

from cuda_env import RTOL
from helpers import MODES, Case, assert_rel_close, backward, forward, make_layer, random_inputs, random_params, set_params


def _cases():
    cases = []
    for mode in MODES:
        cases += [
            (Case(mode, num_layers=2, bidirectional=True, lengths=True), np.float64),
            (Case(mode, batch_first=True, bidirectional=True, lengths=True, bias=False, input_size=1, hidden_size=5), np.float64),
            (Case(mode, unbatched=True, input_size=2, hidden_size=3), np.float64),
            (Case(mode, num_layers=2, lengths=True, input_size=4, hidden_size=3), np.float32),
        ]
    return cases


def _pair(case, dtype, rng, **kwargs):
    """The CPU and CUDA layer for ``case``, with the same random parameters."""
    params = random_params(case, rng)
    layers = []
    for backend in ("cpu", "cuda"):
        layer = make_layer(case, dtype=dtype, backend=backend, **kwargs)
        set_params(layer, params)
        layers.append(layer)
    return layers


def _compare(case, dtype, cpu, gpu, data, rtol):
    x, h0, c0, lengths = data["x"], data["h0"], data["c0"], data["lengths"]
    expected = forward(cpu, case, x, h0, c0, lengths)
    actual = forward(gpu, case, x, h0, c0, lengths)
    for name, a, e in zip(("y", "h_n", "c_n"), actual, expected):
        if e is not None:
            assert isinstance(a, np.ndarray) and a.dtype == dtype, name
            assert_rel_close(a, e, rtol, name)
    grads_expected = backward(cpu, case, data["dy"], data["dh_n"], data["dc_n"])
    grads_actual = backward(gpu, case, data["dy"], data["dh_n"], data["dc_n"])
    for name, a, e in zip(("dx", "dh0", "dc0"), grads_actual, grads_expected):
        if e is not None:
            assert_rel_close(a, e, rtol, name)
    assert list(gpu.grads) == list(cpu.grads)
    for name in cpu.grads:
        assert_rel_close(gpu.grads[name], cpu.grads[name], rtol, name)


@pytest.mark.parametrize("case,dtype", _cases(), ids=lambda v: v.id() if isinstance(v, Case) else np.dtype(v).name)
def test_cuda_equals_cpu(case, dtype, rng, quick_matmul):
    cpu, gpu = _pair(case, dtype, rng)
    data = random_inputs(case, rng, dtype)
    _compare(case, np.dtype(dtype), cpu, gpu, data, RTOL[np.dtype(dtype)])


def test_cuda_equals_cpu_with_tiny_matrix_tiles_and_no_initial_state(rng):
    """2x2-thread matrix tiles (several tiles, partial edges); zero initial state."""
    case = Case("gru_cho", bidirectional=True, lengths=True, hidden_size=5)
    cpu, gpu = _pair(case, np.float64, rng)
    data = dict(random_inputs(case, rng), h0=None, c0=None, dh_n=None, dc_n=None)
    _compare(case, np.dtype(np.float64), cpu, gpu, data, RTOL[np.dtype(np.float64)])


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_relu"])
def test_dropout_masks_match(mode, rng, quick_matmul):
    """Same seed, same dropout masks (drawn on the host), same results; twice in a row."""
    case = Case(mode, num_layers=3, lengths=True, hidden_size=4)
    cpu, gpu = _pair(case, np.float64, rng, dropout=0.5)
    for _ in range(2):
        data = random_inputs(case, rng)
        _compare(case, np.dtype(np.float64), cpu, gpu, data, RTOL[np.dtype(np.float64)])


@pytest.mark.parametrize("mode", ["lstm", "gru_cho", "rnn_tanh"])
def test_step_matches_cpu_and_forward(mode, rng, quick_matmul):
    case = Case(mode, num_layers=2, input_size=3, hidden_size=4, steps=3)
    cpu, gpu = _pair(case, np.float64, rng)
    data = random_inputs(case, rng)
    rtol = RTOL[np.dtype(np.float64)]
    state_cpu = state_gpu = (data["h0"], data["c0"]) if case.is_lstm else data["h0"]
    outputs = []
    for t in range(case.steps):
        h_cpu, state_cpu = cpu.step(data["x"][t], state_cpu)
        h_gpu, state_gpu = gpu.step(data["x"][t], state_gpu)
        assert_rel_close(h_gpu, h_cpu, rtol, f"h_{t}")
        for k, (a, e) in enumerate(zip(np.atleast_1d(state_gpu) if not case.is_lstm else state_gpu,
                                       np.atleast_1d(state_cpu) if not case.is_lstm else state_cpu)):
            assert_rel_close(a, e, rtol, f"state[{k}] at {t}")
        outputs.append(h_gpu)
    y, h_n, c_n = forward(gpu, case, data["x"], data["h0"], data["c0"])
    assert_rel_close(np.stack(outputs), y, rtol, "step vs forward")
    assert_rel_close(state_gpu[0] if case.is_lstm else state_gpu, h_n, rtol, "h_n")


def test_unbatched_step(rng, quick_matmul):
    case = Case("gru", hidden_size=3)
    cpu, gpu = _pair(case, np.float32, rng)
    x_t = rng.normal(size=case.input_size)
    h_cpu, s_cpu = cpu.step(x_t)
    h_gpu, s_gpu = gpu.step(x_t)
    assert h_gpu.shape == (3,) and s_gpu.shape == (1, 3)
    assert_rel_close(h_gpu, h_cpu, RTOL[np.dtype(np.float32)])
    assert_rel_close(s_gpu, s_cpu, RTOL[np.dtype(np.float32)])


@pytest.mark.parametrize("threads,tile,batch", [(1, 1, 3), (4, 4, 5), (32, None, 9)])
def test_launch_configurations(threads, tile, batch, rng, quick_matmul, monkeypatch):
    """One thread per block; a tile wider than the batch remainder; the automatic tile."""
    monkeypatch.setattr(quick_matmul, "threads_per_block", threads)
    monkeypatch.setattr(quick_matmul, "batch_tile", tile)
    monkeypatch.setattr(quick_matmul, "sm_count", 2)
    case = Case("lstm", bidirectional=True, lengths=True, hidden_size=5, batch=batch, steps=3)
    cpu, gpu = _pair(case, np.float64, rng)
    _compare(case, np.dtype(np.float64), cpu, gpu, random_inputs(case, rng), RTOL[np.dtype(np.float64)])


def test_backward_before_forward_and_failed_call_leave_layer_unchanged(rng, quick_matmul):
    case = Case("lstm")
    _, gpu = _pair(case, np.float64, rng)
    with pytest.raises(RuntimeError, match="needs a forward"):
        gpu.backward(np.zeros((4, 3, 3)))
    with pytest.raises(ValueError, match="features"):
        gpu(np.zeros((4, 3, 2)))
    assert gpu._saved is None
