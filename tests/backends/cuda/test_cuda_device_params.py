"""Parameters and gradients on the device (``layer.device_params = True``).

The same layer twice (same seed and parameters), one with NumPy parameters and
one with device parameters, must give the same outputs and gradients; the
device layer's arrays must stay on the device through forward, backward,
``zero_grad``, ``load_state_dict`` and ``reset_parameters``, and come home as
NumPy copies from ``state_dict`` or when the flag is cleared.
"""

from __future__ import annotations

import numpy as np
import pytest

from cuda_env import RTOL
from helpers import Case, assert_rel_close, backward, forward, make_layer, random_inputs, random_params, set_params

import numrnn
from numrnn.backends.cuda import is_device_array


def _pair(case, dtype, rng):
    """(host-parameter layer, device-parameter layer) with the same random parameters."""
    params = random_params(case, rng)
    layers = []
    for on_device in (False, True):
        layer = make_layer(case, dtype=dtype, backend="cuda")
        set_params(layer, params)
        layer.device_params = on_device
        layers.append(layer)
    return layers


def _host(array):
    return array if isinstance(array, np.ndarray) else array.copy_to_host()


@pytest.mark.parametrize("mode", ["lstm", "gru", "gru_cho", "rnn_tanh"])
def test_device_parameters_give_the_same_results_and_stay_on_the_device(mode, rng, quick_matmul):
    # two stacked layers for the LSTM, one for the others: the simulator runs every GPU
    # thread in Python, and the stacking is the same code for every cell
    case = Case(mode, num_layers=2 if mode == "lstm" else 1, bidirectional=True, lengths=True, input_size=2,
                hidden_size=3)
    host, device = _pair(case, np.float64, rng)
    assert device.device_params and not host.device_params
    assert all(is_device_array(v) for store in (device.params, device.grads) for v in store.values())
    rtol = RTOL[np.dtype(np.float64)]
    for _ in range(2):  # gradients accumulate across backward calls, on the device
        data = random_inputs(case, rng)
        for a, e in zip(forward(device, case, data["x"], data["h0"], data["c0"], data["lengths"]),
                        forward(host, case, data["x"], data["h0"], data["c0"], data["lengths"])):
            if e is not None:
                assert_rel_close(a, e, rtol, "forward")
        for a, e in zip(backward(device, case, data["dy"], data["dh_n"], data["dc_n"]),
                        backward(host, case, data["dy"], data["dh_n"], data["dc_n"])):
            if e is not None:
                assert_rel_close(a, e, rtol, "backward")
    for name in host.grads:
        assert is_device_array(device.grads[name]), name
        assert_rel_close(device.grads[name].copy_to_host(), host.grads[name], rtol, name)


def test_parameter_methods_on_the_device(rng, quick_matmul):
    case = Case("lstm", input_size=2, hidden_size=3)
    host, device = _pair(case, np.float64, rng)
    state = device.state_dict()
    assert all(type(v) is np.ndarray for v in state.values())
    for name, value in host.state_dict().items():
        np.testing.assert_array_equal(state[name], value)
    data = random_inputs(case, rng)
    h_t, _ = device.step(data["x"][0], None)
    np.testing.assert_allclose(h_t, host.step(data["x"][0], None)[0], rtol=RTOL[np.dtype(np.float64)])
    forward(device, case, data["x"], data["h0"], data["c0"], data["lengths"])
    backward(device, case, data["dy"], data["dh_n"], data["dc_n"])
    assert any(np.any(_host(g)) for g in device.grads.values())
    device.zero_grad()
    assert all(is_device_array(g) and not np.any(g.copy_to_host()) for g in device.grads.values())

    new = {name: value + 1.0 for name, value in state.items()}
    arrays = dict(device.params)
    device.load_state_dict(new)
    assert all(device.params[name] is arrays[name] for name in arrays)  # loaded in place, on the device
    for name, value in new.items():
        np.testing.assert_array_equal(device.params[name].copy_to_host(), value)

    device.reset_parameters(seed=3)
    host.reset_parameters(seed=3)
    for name, value in host.params.items():
        np.testing.assert_array_equal(device.params[name].copy_to_host(), value)

    device.device_params = False  # home again, as NumPy arrays
    assert all(type(v) is np.ndarray for store in (device.params, device.grads) for v in store.values())
    for name, value in host.params.items():
        np.testing.assert_array_equal(device.params[name], value)


def test_device_params_needs_the_cuda_backend_and_a_bool():
    layer = numrnn.GRU(2, 3, backend="cpu")
    with pytest.raises(ValueError, match="backend='cuda'"):
        layer.device_params = True
    assert not layer.device_params and all(type(v) is np.ndarray for v in layer.params.values())
    with pytest.raises(TypeError, match="device_params"):
        numrnn.GRU(2, 3, backend="cuda").device_params = "yes"


def test_host_only_training_helpers_refuse_device_parameters(rng, quick_matmul):
    layer = numrnn.RNN(2, 3, backend="cuda", dtype=np.float64)
    layer.device_params = True
    with pytest.raises(TypeError, match="device_params = False"):
        numrnn.train.flatten(layer.params)
    with pytest.raises(TypeError, match="device_params = False"):
        numrnn.train.make_closure(layer, "mse", np.zeros((4, 1, 2)), np.zeros((4, 1, 3)))


@pytest.mark.parametrize("make_optimizer", [
    lambda: numrnn.optim.SGD(lr=0.1, momentum=0.9, nesterov=True),
    lambda: numrnn.optim.Adam(lr=0.01, weight_decay=0.1),
    lambda: numrnn.optim.AdamW(lr=0.01, weight_decay=0.1),
], ids=["sgd-nesterov", "adam", "adamw"])
def test_training_with_parameters_on_the_device_equals_the_host(make_optimizer, rng, quick_matmul):
    """zero_grad, forward, backward, clipping and the optimiser step, twice (the second
    step reads the optimiser's state): with the parameters on the device nothing of them
    comes to the host, and the numbers are those of the same loop on NumPy parameters."""
    case = Case("lstm", input_size=2, hidden_size=3)
    host, device = _pair(case, np.float64, rng)
    device_arrays = dict(device.params)
    optimizers = {id(host): make_optimizer(), id(device): make_optimizer()}
    rtol = RTOL[np.dtype(np.float64)]
    for _ in range(2):
        data = random_inputs(case, rng)
        for layer in (host, device):
            layer.zero_grad()
            forward(layer, case, data["x"], data["h0"], data["c0"], data["lengths"])
            backward(layer, case, data["dy"], data["dh_n"], data["dc_n"])
            numrnn.optim.clip_grad_norm(layer.grads, 1.0)
            optimizers[id(layer)].step(layer.params, layer.grads)
    assert all(device.params[name] is array for name, array in device_arrays.items())  # updated in place
    for name, value in host.params.items():
        assert_rel_close(device.params[name].copy_to_host(), value, rtol, name)
    host_state = optimizers[id(host)].state_dict()["state"]
    device_state = optimizers[id(device)].state_dict()["state"]
    for name, slots in host_state.items():
        for slot, value in slots.items():
            assert_rel_close(device_state[name][slot], value, rtol, f"{name} {slot}")


def test_fit_a_stack_with_its_recurrent_layer_on_the_device(rng, quick_matmul):
    """numrnn.train.fit on a Sequential whose GRU keeps its parameters on the device
    and whose Linear head stays on the host: the same losses and weights as with
    every parameter on the host."""
    from numrnn import nn

    x = rng.normal(size=(5, 6, 2))
    target = rng.normal(size=(6, 1))
    models = []
    for on_device in (False, True):
        gru = numrnn.GRU(2, 3, backend="cuda", dtype=np.float64, seed=0)
        gru.device_params = on_device
        models.append(nn.Sequential(gru, nn.LastStep(), nn.Linear(3, 1, dtype=np.float64, seed=1)))
    histories = [numrnn.train.fit(model, x, target, epochs=2, batch_size=3, seed=0) for model in models]
    np.testing.assert_allclose(histories[1]["train_loss"], histories[0]["train_loss"], rtol=RTOL[np.dtype(np.float64)])
    for name, value in models[0].state_dict().items():
        assert_rel_close(models[1].state_dict()[name], value, RTOL[np.dtype(np.float64)], name)


def test_save_and_load_a_model_and_optimiser_with_device_parameters(rng, quick_matmul, tmp_path):
    case = Case("gru", input_size=2, hidden_size=3)
    host, device = _pair(case, np.float64, rng)
    optimizer = numrnn.optim.Adam(lr=0.01)
    data = random_inputs(case, rng)
    forward(device, case, data["x"], data["h0"], data["c0"], data["lengths"])
    backward(device, case, data["dy"], data["dh_n"], data["dc_n"])
    optimizer.step(device.params, device.grads)
    path = tmp_path / "model.npz"
    numrnn.io.save(path, device, optimizer)
    model, loaded_optimizer = numrnn.io.load(path)
    for name, value in device.state_dict().items():
        np.testing.assert_array_equal(model.params[name], value)
    model.device_params = True  # and back on the device, where the loaded optimiser goes on
    loaded_optimizer.step(model.params, device.grads)
    optimizer.step(device.params, device.grads)
    for name, value in device.state_dict().items():
        np.testing.assert_array_equal(model.params[name].copy_to_host(), value)
