"""Optimisers and gradient clipping on device arrays (:mod:`numrnn.backends.cuda.optim`).

Every case runs the same optimiser on NumPy copies and holds the device result to it: the
NumPy path and the kernels apply one scalar rule each (:func:`numrnn.optim.sgd_rule`,
:func:`numrnn.optim.adam_rule`, :func:`numrnn.optim.clamp_rule`).  The autouse
``small_launch`` fixture (8 threads per elementwise block) makes the (7, 3) array span
several blocks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from numrnn.optim import SGD, Adam, AdamW, clip_grad_norm, clip_grad_value

SHAPES = {"weight": (7, 3), "bias": (5,), "scale": (1,)}
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}
STEPS = 4


@pytest.fixture
def cuda():
    from numba import cuda

    return cuda


def _host(value):
    return value.copy_to_host() if hasattr(value, "copy_to_host") else np.asarray(value)


def _arrays(rng, dtype, scale=1.0):
    return {key: (scale * rng.normal(size=shape)).astype(dtype) for key, shape in SHAPES.items()}


def _to_device(cuda, arrays, device_keys=None):
    keys = arrays.keys() if device_keys is None else device_keys
    return {k: cuda.to_device(v) if k in keys else v.copy() for k, v in arrays.items()}


def _assert_close(actual, expected, dtype):
    assert set(actual) == set(expected)
    for key in expected:
        np.testing.assert_allclose(_host(actual[key]), _host(expected[key]), rtol=RTOL[np.dtype(dtype)],
                                   atol=1e-14 if np.dtype(dtype) == np.float64 else 1e-6, err_msg=key)


def _assert_state_equal(opt_a, opt_b, dtype):
    a, b = opt_a.state_dict(), opt_b.state_dict()
    assert a["type"] == b["type"] and a["config"] == b["config"] and a["steps"] == b["steps"]
    assert set(a["state"]) == set(b["state"])
    for key in a["state"]:
        for slot in a["state"][key]:
            assert isinstance(a["state"][key][slot], np.ndarray)
        _assert_close(a["state"][key], b["state"][key], dtype)


OPTIMISERS = {
    "sgd": lambda: SGD(lr=0.1),
    "sgd_momentum": lambda: SGD(lr=0.1, momentum=0.9),
    "sgd_dampening": lambda: SGD(lr=0.1, momentum=0.8, dampening=0.3),
    "sgd_nesterov": lambda: SGD(lr=0.05, momentum=0.9, nesterov=True),
    "sgd_weight_decay": lambda: SGD(lr=0.1, momentum=0.5, weight_decay=0.01),
    "sgd_weight_decay_only": lambda: SGD(lr=0.1, weight_decay=0.2),
    "adam": lambda: Adam(lr=0.01),
    "adam_weight_decay": lambda: Adam(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
    "adamw": lambda: AdamW(lr=0.01, weight_decay=0.1),
}


def _run_twins(make, cuda, rng, dtype, device_keys=None, steps=STEPS):
    params = _arrays(rng, dtype)
    host_params = {k: v.copy() for k, v in params.items()}
    dev_params = _to_device(cuda, params, device_keys)
    host_opt, dev_opt = make(), make()
    for _ in range(steps):
        grads = _arrays(rng, dtype)
        host_opt.step(host_params, grads)
        dev_opt.step(dev_params, _to_device(cuda, grads, device_keys))
    return host_params, dev_params, host_opt, dev_opt


@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_device_steps_equal_numpy_steps(name, cuda, rng):
    host_params, dev_params, host_opt, dev_opt = _run_twins(OPTIMISERS[name], cuda, rng, np.float64)
    _assert_close(dev_params, host_params, np.float64)
    for key, slots in dev_opt.state.items():  # the state stays on the device
        for slot, value in slots.items():
            assert not isinstance(value, np.ndarray), (key, slot)
    _assert_state_equal(dev_opt, host_opt, np.float64)


@pytest.mark.parametrize("name", ["sgd_nesterov", "adamw"])
def test_device_steps_equal_numpy_steps_float32(name, cuda, rng):
    host_params, dev_params, host_opt, dev_opt = _run_twins(OPTIMISERS[name], cuda, rng, np.float32)
    for value in dev_params.values():
        assert np.dtype(value.dtype) == np.float32
    _assert_close(dev_params, host_params, np.float32)
    _assert_state_equal(dev_opt, host_opt, np.float32)


@pytest.mark.parametrize("name", ["sgd_momentum", "adam"])
def test_mixed_dict_host_and_device_keys(name, cuda, rng):
    host_params, mixed_params, host_opt, mixed_opt = _run_twins(OPTIMISERS[name], cuda, rng, np.float64,
                                                                device_keys={"weight", "scale"})
    assert isinstance(mixed_params["bias"], np.ndarray)
    assert not isinstance(mixed_params["weight"], np.ndarray)
    assert isinstance(mixed_opt.state["bias"][next(iter(mixed_opt.state["bias"]))], np.ndarray)
    _assert_close(mixed_params, host_params, np.float64)
    _assert_state_equal(mixed_opt, host_opt, np.float64)


def test_gradient_of_another_float_dtype_is_cast_on_device(cuda, rng):
    params = _arrays(rng, np.float64)
    grads = _arrays(rng, np.float32)
    host_params = {k: v.copy() for k, v in params.items()}
    dev_params = _to_device(cuda, params)
    Adam(lr=0.1).step(host_params, grads)
    Adam(lr=0.1).step(dev_params, _to_device(cuda, grads))
    _assert_close(dev_params, host_params, np.float64)


@pytest.mark.parametrize("name", ["sgd_momentum", "adam"])
def test_nan_gradient_on_device_raises_and_mutates_nothing(name, cuda, rng):
    params = _to_device(cuda, _arrays(rng, np.float64), device_keys={"weight", "bias"})
    opt = OPTIMISERS[name]()
    opt.step(params, _to_device(cuda, _arrays(rng, np.float64), device_keys={"weight", "bias"}))
    before_params = {k: _host(v).copy() for k, v in params.items()}
    before_state = opt.state_dict()
    grads = _arrays(rng, np.float64)
    grads["bias"][3] = np.nan
    with pytest.raises(ValueError, match=r"grads\['bias'\] contains NaN or inf"):
        opt.step(params, _to_device(cuda, grads, device_keys={"weight", "bias"}))
    grads["bias"][3] = 0.0
    grads["weight"][6, 2] = -np.inf
    with pytest.raises(ValueError, match=r"grads\['weight'\]"):
        opt.step(params, _to_device(cuda, grads, device_keys={"weight", "bias"}))
    assert opt.steps == 1
    _assert_close(params, before_params, np.float64)
    after_state = opt.state_dict()
    for key in before_state["state"]:
        for slot in before_state["state"][key]:
            np.testing.assert_array_equal(after_state["state"][key][slot], before_state["state"][key][slot])


def test_mixed_kinds_within_one_key_raise_type_error(cuda, rng):
    params = _arrays(rng, np.float64)
    grads = _arrays(rng, np.float64)
    before = {k: v.copy() for k, v in params.items()}
    opt = SGD(lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match=r"params\['bias'\] and grads\['bias'\]"):
        opt.step(params, {**grads, "bias": cuda.to_device(grads["bias"])})
    device_params = {**params, "weight": cuda.to_device(params["weight"])}
    with pytest.raises(TypeError, match=r"params\['weight'\] and grads\['weight'\]"):
        opt.step(device_params, grads)
    assert opt.steps == 0 and opt.state == {}
    for key, value in before.items():
        np.testing.assert_array_equal(params[key], value)


def test_device_validation_errors(cuda, rng):
    params = _to_device(cuda, _arrays(rng, np.float64))
    grads = _to_device(cuda, _arrays(rng, np.float64))
    opt = Adam()
    with pytest.raises(ValueError, match=r"grads\['weight'\] must have shape \(7, 3\)"):
        opt.step(params, {**grads, "weight": cuda.to_device(np.zeros((3, 7)))})
    with pytest.raises(TypeError, match=r"grads\['bias'\] must be a float device array"):
        opt.step(params, {**grads, "bias": cuda.to_device(np.zeros(5, dtype=np.int64))})
    with pytest.raises(TypeError, match=r"params\['scale'\] must be a float device array"):
        opt.step({**params, "scale": cuda.to_device(np.zeros(1, dtype=np.int32))}, grads)
    assert opt.steps == 0 and opt.state == {}


def test_state_dict_after_device_steps_loads_into_device_and_host_runs(cuda, rng):
    host_params, dev_params, host_opt, dev_opt = _run_twins(OPTIMISERS["adam"], cuda, rng, np.float64)
    saved = dev_opt.state_dict()
    _assert_state_equal(dev_opt, host_opt, np.float64)
    resumed = Adam(lr=0.5)  # the config comes from the state dict
    resumed.load_state_dict(saved)
    assert all(isinstance(v, np.ndarray) for st in resumed.state.values() for v in st.values())
    # device parameters for two keys, host for the third: state moves to where its parameter is
    resumed_params = {k: cuda.to_device(_host(v)) for k, v in dev_params.items()}
    resumed_params["bias"] = _host(dev_params["bias"]).copy()
    grads = _arrays(rng, np.float64)
    host_opt.step(host_params, grads)
    resumed.step(resumed_params, _to_device(cuda, grads, device_keys={"weight", "scale"}))
    assert not isinstance(resumed.state["weight"]["exp_avg"], np.ndarray)
    assert isinstance(resumed.state["bias"]["exp_avg"], np.ndarray)
    _assert_close(resumed_params, host_params, np.float64)
    _assert_state_equal(resumed, host_opt, np.float64)
    # and back: device state follows a parameter that moved to the host, host state one that
    # moved to the device
    grads = _arrays(rng, np.float64)
    host_opt.step(host_params, grads)
    resumed_params["weight"] = _host(resumed_params["weight"]).copy()
    resumed_params["bias"] = cuda.to_device(resumed_params["bias"])
    resumed.step(resumed_params, _to_device(cuda, grads, device_keys={"bias", "scale"}))
    assert isinstance(resumed.state["weight"]["exp_avg"], np.ndarray)
    assert not isinstance(resumed.state["bias"]["exp_avg_sq"], np.ndarray)
    _assert_close(resumed_params, host_params, np.float64)
    _assert_state_equal(resumed, host_opt, np.float64)


def test_sgd_momentum_buffer_loaded_then_device_step(cuda, rng):
    host_params, dev_params, host_opt, dev_opt = _run_twins(OPTIMISERS["sgd_dampening"], cuda, rng, np.float64,
                                                            steps=2)
    resumed = SGD()
    resumed.load_state_dict(dev_opt.state_dict())
    grads = _arrays(rng, np.float64)
    host_opt.step(host_params, grads)
    resumed.step(dev_params, _to_device(cuda, grads))
    _assert_close(dev_params, host_params, np.float64)
    _assert_state_equal(resumed, host_opt, np.float64)


def test_zero_grad_on_device(cuda, rng):
    grads = _to_device(cuda, _arrays(rng, np.float64), device_keys={"weight"})
    SGD().zero_grad(grads)
    for value in grads.values():
        np.testing.assert_array_equal(_host(value), 0.0)


@pytest.mark.parametrize("norm_type", [2.0, math.inf, 1.0, 3.0])
@pytest.mark.parametrize("device_keys", [None, {"weight", "scale"}], ids=["device", "mixed"])
@pytest.mark.parametrize("max_norm", [0.5, 1e6], ids=["clips", "no_clip"])
def test_clip_grad_norm_matches_host(norm_type, device_keys, max_norm, cuda, rng):
    grads = _arrays(rng, np.float64, scale=2.0)
    host = {k: v.copy() for k, v in grads.items()}
    device = _to_device(cuda, grads, device_keys)
    expected = clip_grad_norm(host, max_norm, norm_type=norm_type)
    total = clip_grad_norm(device, max_norm, norm_type=norm_type)
    assert total == pytest.approx(expected, rel=1e-12)
    _assert_close(device, host, np.float64)
    if max_norm < 1:
        assert not np.allclose(host["weight"], grads["weight"])  # it did clip


def test_clip_grad_norm_float32_and_list(cuda, rng):
    grads = _arrays(rng, np.float32, scale=3.0)
    host = [v.copy() for v in grads.values()]
    device = [cuda.to_device(v) for v in grads.values()]
    assert clip_grad_norm(device, 1.0) == pytest.approx(clip_grad_norm(host, 1.0), rel=1e-5)
    for d, h in zip(device, host):
        np.testing.assert_allclose(d.copy_to_host(), h, rtol=1e-5)


@pytest.mark.parametrize("norm_type", [2.0, math.inf])
def test_clip_grad_norm_nonfinite_leaves_gradients_alone(norm_type, cuda, rng):
    grads = _arrays(rng, np.float64)
    grads["weight"][2, 1] = np.nan
    device = _to_device(cuda, grads)
    total = clip_grad_norm(device, 0.1, norm_type=norm_type)
    assert math.isnan(total)
    for key in grads:
        np.testing.assert_array_equal(_host(device[key]), grads[key])
    grads["weight"][2, 1] = np.inf
    assert clip_grad_norm(_to_device(cuda, grads), 0.1, norm_type=norm_type) == math.inf


def test_clip_grad_norm_empty_device_array(cuda):
    grads = {"empty": cuda.to_device(np.zeros((0, 3))), "x": cuda.to_device(np.array([3.0, 4.0]))}
    assert clip_grad_norm(grads, 1.0) == pytest.approx(5.0, rel=1e-15)
    np.testing.assert_allclose(grads["x"].copy_to_host(), [3.0, 4.0] / np.float64(5.0 + 1e-6), rtol=1e-15)


@pytest.mark.parametrize("device_keys", [None, {"bias"}], ids=["device", "mixed"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clip_grad_value_matches_host(device_keys, dtype, cuda, rng):
    grads = _arrays(rng, dtype, scale=2.0)
    grads["weight"][0, 0] = np.nan
    host = {k: v.copy() for k, v in grads.items()}
    device = _to_device(cuda, grads, device_keys)
    clip_grad_value(host, 0.7)
    clip_grad_value(device, 0.7)
    for key in grads:
        np.testing.assert_array_equal(_host(device[key]), host[key], err_msg=key)
    assert np.isnan(host["weight"][0, 0])
    assert np.nanmax(np.abs(host["weight"])) == pytest.approx(0.7, rel=1e-7)


def test_clip_rejects_non_float_device_gradients(cuda):
    with pytest.raises(TypeError, match="float"):
        clip_grad_value({"a": cuda.to_device(np.zeros(3, dtype=np.int32))}, 1.0)
    with pytest.raises(TypeError, match="float"):
        clip_grad_norm([cuda.to_device(np.zeros(3, dtype=np.int64))], 1.0)


@pytest.mark.parametrize("norm_type", [2.0, math.inf])
def test_clip_grad_norm_more_blocks_than_threads(norm_type, cuda, rng, small_launch):
    """150 entries over 8-thread blocks: 19 partial results, summed by one 8-thread block."""
    assert small_launch.elementwise_threads == 8
    grads = {"long": rng.normal(size=150), "short": rng.normal(size=2)}
    host = {k: v.copy() for k, v in grads.items()}
    device = _to_device(cuda, grads)
    assert clip_grad_norm(device, 0.5, norm_type) == pytest.approx(clip_grad_norm(host, 0.5, norm_type), rel=1e-12)
    _assert_close(device, host, np.float64)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0])
def test_clip_grad_norm_float32_reduces_in_float64(norm_type, cuda):
    """Squares (and cubes) of float32 gradients of 3e19 overflow float32: the kernel takes each
    value to float64 first, so the norm is finite and clipping happens, as on the host."""
    grads = {"weight": np.full((2, 5), 3e19, dtype=np.float32)}
    expected = float(np.sum(np.abs(grads["weight"].astype(np.float64)) ** norm_type) ** (1 / norm_type))
    device = _to_device(cuda, grads)
    total = clip_grad_norm(device, 1.0, norm_type=norm_type)
    assert math.isfinite(total) and total == pytest.approx(expected, rel=1e-6)
    clipped = device["weight"].copy_to_host()
    assert np.all(np.abs(clipped) < 1.0) and np.all(clipped > 0)
