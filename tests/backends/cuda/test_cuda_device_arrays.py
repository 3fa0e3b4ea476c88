"""Device arrays in and out of the layers: no host round trip for inputs that expose
``__cuda_array_interface__`` (or are Numba device arrays), device results with
``layer.device_output = True``, the same numbers as the NumPy path, and validation
of device inputs at the border."""

from __future__ import annotations

import numpy as np
import pytest

from cuda_env import MODE, RTOL
from helpers import Case, assert_rel_close, make_layer, random_inputs, random_params, set_params


@pytest.fixture
def cuda():
    from numba import cuda

    return cuda


def _host(value):
    return value.copy_to_host() if hasattr(value, "copy_to_host") else value


def _twins(case, rng, dtype=np.float64, **kwargs):
    params = random_params(case, rng)
    layers = [make_layer(case, dtype=dtype, backend="cuda", **kwargs) for _ in range(2)]
    for layer in layers:
        set_params(layer, params)
    layers[1].device_output = True
    return layers


@pytest.mark.parametrize("case", [
    Case("lstm", num_layers=2, bidirectional=True, lengths=True, batch_first=True),
    Case("gru_cho", unbatched=True, hidden_size=4),
    Case("rnn_tanh", num_layers=2),
], ids=Case.id)
def test_device_in_device_out_equals_numpy_path(case, rng, cuda, quick_matmul):
    host_layer, device_layer = _twins(case, rng)
    data = random_inputs(case, rng)
    state = (data["h0"], data["c0"]) if case.is_lstm else data["h0"]
    dstate = (data["dh_n"], data["dc_n"]) if case.is_lstm else data["dh_n"]
    to_dev = (lambda s: tuple(cuda.to_device(p) for p in s)) if case.is_lstm else cuda.to_device

    y, state_n = host_layer(data["x"], state, lengths=data["lengths"])
    lengths = None if data["lengths"] is None else cuda.to_device(data["lengths"])
    y_d, state_d = device_layer(cuda.to_device(data["x"]), to_dev(state), lengths=lengths)
    assert not isinstance(y_d, np.ndarray) and hasattr(y_d, "copy_to_host")
    np.testing.assert_array_equal(_host(y_d), y)
    for a, e in zip(state_d if case.is_lstm else (state_d,), state_n if case.is_lstm else (state_n,)):
        np.testing.assert_array_equal(_host(a), e)

    dx, dstate0 = host_layer.backward(data["dy"], dstate)
    dx_d, dstate0_d = device_layer.backward(cuda.to_device(data["dy"]), to_dev(dstate))
    assert hasattr(dx_d, "copy_to_host")
    np.testing.assert_array_equal(_host(dx_d), dx)
    for a, e in zip(dstate0_d if case.is_lstm else (dstate0_d,), dstate0 if case.is_lstm else (dstate0,)):
        np.testing.assert_array_equal(_host(a), e)
    for name in host_layer.grads:
        assert isinstance(device_layer.grads[name], np.ndarray)
        np.testing.assert_array_equal(device_layer.grads[name], host_layer.grads[name])


def test_dropout_masks_device_path_match_cpu(rng, cuda, quick_matmul):
    case = Case("gru", num_layers=2, hidden_size=3)
    params = random_params(case, rng)
    cpu = make_layer(case, backend="cpu", dropout=0.4, seed=7)
    gpu = make_layer(case, backend="cuda", dropout=0.4, seed=7)
    set_params(cpu, params)
    set_params(gpu, params)
    gpu.device_output = True
    data = random_inputs(case, rng)
    y_cpu, _ = cpu(data["x"])
    y_gpu, _ = gpu(cuda.to_device(data["x"]))
    assert_rel_close(_host(y_gpu), y_cpu, RTOL[np.dtype(np.float64)])
    dx_cpu, _ = cpu.backward(data["dy"])
    dx_gpu, _ = gpu.backward(cuda.to_device(data["dy"]))
    assert_rel_close(_host(dx_gpu), dx_cpu, RTOL[np.dtype(np.float64)])


def test_device_inputs_are_cast_and_copied(rng, cuda, quick_matmul):
    """A float64 device input to a float32 layer is cast; changing it after forward does not
    change backward (the layer owns its copy)."""
    case = Case("lstm", hidden_size=3)
    host_layer, device_layer = _twins(case, rng, dtype=np.float32)
    x = rng.normal(size=(case.steps, case.batch, case.input_size))
    x_dev = cuda.to_device(x)
    y, _ = host_layer(x)
    y_d, _ = device_layer(x_dev)
    assert y_d.dtype == np.float32
    np.testing.assert_array_equal(_host(y_d), y)
    x_dev.copy_to_device(np.zeros_like(x))
    dy = rng.normal(size=y.shape).astype(np.float32)
    np.testing.assert_array_equal(_host(device_layer.backward(dy)[0]), host_layer.backward(dy)[0])


def test_step_with_device_arrays(rng, cuda, quick_matmul):
    case = Case("lstm", num_layers=2, hidden_size=3)
    host_layer, device_layer = _twins(case, rng)
    x = rng.normal(size=(3, case.batch, case.input_size))
    state_h = state_d = None
    for t in range(3):
        h, state_h = host_layer.step(x[t], state_h)
        h_d, state_d = device_layer.step(cuda.to_device(x[t]), state_d)
        assert hasattr(h_d, "copy_to_host") and hasattr(state_d[0], "copy_to_host")
        np.testing.assert_array_equal(_host(h_d), h)
        np.testing.assert_array_equal(_host(state_d[1]), state_h[1])
    h1, _ = host_layer.step(x[0, 0])
    h1_d, s1_d = device_layer.step(cuda.to_device(x[0, 0]))
    assert h1_d.shape == (3,) and s1_d[0].shape == (2, 3)
    np.testing.assert_array_equal(_host(h1_d), h1)


def test_bad_device_inputs_raise_and_leave_the_layer_unchanged(rng, cuda, quick_matmul):
    case = Case("gru", hidden_size=3)
    _, layer = _twins(case, rng)
    good = rng.normal(size=(case.steps, case.batch, case.input_size))
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        layer(cuda.to_device(np.where(np.arange(good.size).reshape(good.shape) == 5, np.nan, good)))
    with pytest.raises(ValueError, match="features"):
        layer(cuda.to_device(good[:, :, :2].copy()))
    with pytest.raises(ValueError, match="must be 2-D or 3-D"):
        layer(cuda.to_device(good[0, 0].copy()))
    with pytest.raises(TypeError, match="complex"):
        layer(cuda.to_device(good.astype(np.complex128)))
    with pytest.raises(ValueError, match=r"state must have shape \(1, 3, 3\)"):
        layer(cuda.to_device(good), cuda.to_device(np.zeros((1, 2, 3))))
    with pytest.raises(ValueError, match="state contains NaN"):
        layer(cuda.to_device(good), cuda.to_device(np.full((1, 3, 3), np.inf)))
    assert layer._saved is None
    y, _ = layer(cuda.to_device(good))
    with pytest.raises(ValueError, match="dy must have shape"):
        layer.backward(cuda.to_device(np.zeros((1, 2, 3))))
    with pytest.raises(ValueError, match="dy contains NaN"):
        layer.backward(cuda.to_device(np.full(y.shape, np.nan)))
    assert not any(g.any() for g in layer.grads.values())


@pytest.mark.skipif(MODE != "gpu", reason="PyTorch CUDA tensors need a GPU")
def test_torch_cuda_tensors_are_accepted(rng, quick_matmul):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA here")
    case = Case("lstm", hidden_size=3)
    host_layer, device_layer = _twins(case, rng, dtype=np.float32)
    x = rng.normal(size=(case.steps, case.batch, case.input_size)).astype(np.float32)
    y, _ = host_layer(x)
    y_d, _ = device_layer(torch.from_numpy(x).cuda())
    y_t = torch.as_tensor(y_d, device="cuda")  # zero-copy through __cuda_array_interface__
    np.testing.assert_array_equal(y_t.cpu().numpy(), y)
