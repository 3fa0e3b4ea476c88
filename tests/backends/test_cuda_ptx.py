"""Every CUDA kernel compiles to PTX for compute capabilities 7.5, 8.0 and 9.0, in float32
and float64.

This type-checks the kernels, which Numba's CUDA simulator does not (it runs them as
plain Python).  ``numba.cuda.compile_ptx`` needs NVVM (the ``numba-cuda[cu12]``
wheels bring it) but no GPU; skipped without numba-cuda and under the simulator.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                       reason='numba-cuda is not installed (pip install "numrnn[cuda]")'),
    pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"),
                       reason="compile_ptx is not available under the CUDA simulator"),
]

CAPABILITIES = [(7, 5), (8, 0), (9, 0)]


@pytest.fixture
def target_capability(monkeypatch, request):
    """Compile device functions for ``cc`` without a GPU.

    A kernel that calls ``cuda.jit(device=True)`` functions makes Numba compile them
    for the current device's compute capability, which needs a driver.  Without a
    GPU we answer that question with the capability under test.
    """
    from numba import cuda
    import numba.cuda.dispatcher as dispatcher

    cc = request.param
    if not cuda.is_available():
        class _Device:
            compute_capability = cc

        monkeypatch.setattr(dispatcher, "get_current_device", lambda: _Device)
    return cc


def _nvvm_available():
    try:
        from numba.cuda.cudadrv import nvvm

        return nvvm.is_available()
    except Exception:
        return False


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("target_capability", CAPABILITIES, ids=lambda cc: f"cc{cc[0]}{cc[1]}", indirect=True)
def test_every_kernel_compiles_to_ptx(target_capability, dtype):
    if not _nvvm_available():
        pytest.skip('NVVM is missing: install numba-cuda with its CUDA wheels, pip install "numrnn[cuda]"')
    from numba import cuda

    from numrnn.backends import cuda as backend
    from numrnn.backends.cuda import optim as cuda_optim

    major, minor = target_capability
    signatures = backend.kernel_signatures(dtype, batch_tile=4) + cuda_optim.kernel_signatures(dtype)
    names = {name for name, _, _ in signatures}
    assert {"lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "rnn_forward", "rnn_backward",
            "matmul", "sgd_kernel", "adam_kernel", "clamp_kernel", "norm_partials"} <= names
    for name, function, argtypes in signatures:
        ptx, _ = cuda.compile_ptx(function, argtypes, cc=target_capability)
        assert f".target sm_{major}{minor}" in ptx, name
        assert ".entry" in ptx, name
        # no hardware approximations of tanh or division (relative error up to ~2**-11):
        # the GPU must equal the CPU to 1e-4 in float32
        for instruction in ("tanh.approx", "div.approx", "div.full"):
            assert instruction not in ptx, f"{name} uses {instruction}"


def test_declared_parameters_name_every_kernel_argument():
    """Each kernel's one declaration (numrnn.backends.cuda.common.params) lists its arguments
    in order, so the named launches and the PTX types above cannot drift from the kernel."""
    import inspect

    from numrnn.backends.cuda import common, elementwise, gru, linalg, lstm, rnn

    declared = elementwise.signatures() + linalg.signatures(np.float32)
    for family in (rnn, lstm, gru):
        declared += family.signatures(np.float32, 2)
    assert len(declared) == 19
    for label, kernel, params in declared:
        assert tuple(inspect.signature(kernel.py_func).parameters) == tuple(p.name for p in params), label
    launch = lstm.BACKWARD_PARAMS
    values = {p.name: index for index, p in enumerate(launch)}
    assert common.arguments(launch, **values) == tuple(range(len(launch)))
    with pytest.raises(TypeError, match="missing \\['dc0'\\]"):
        common.arguments(launch, **{name: 0 for name in values if name != "dc0"})
    with pytest.raises(ValueError, match="unknown parameter kind"):
        common.params("x:Q3")
