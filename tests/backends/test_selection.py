"""Backend selection without a GPU: ``import numrnn`` never needs numba-cuda, ``"auto"``
falls back to the CPU, and ``backend="cuda"`` fails with a RuntimeError that says what is
missing and how to install it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import numrnn
from numrnn import backends

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HINT = 'pip install "numrnn[cuda]"'


@pytest.fixture
def fresh_backends(monkeypatch):
    """Forget the cached backend objects and device probe for the test's duration."""
    monkeypatch.setattr(backends, "_instances", {})
    monkeypatch.setattr(backends, "_probe", {})
    monkeypatch.delenv("NUMRNN_BACKEND", raising=False)
    return backends


def test_import_and_cpu_work_without_numba_cuda():
    """A child process where numba_cuda and numba.cuda cannot be imported at all."""
    code = textwrap.dedent(
        """
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "numba_cuda" or name.startswith(("numba_cuda.", "numba.cuda")):
                    raise ImportError(f"blocked {name}")
                return None

        sys.meta_path.insert(0, Block())
        import numpy as np
        import numrnn
        from numrnn import backends

        assert not backends.numba_cuda_installed()
        assert backends.resolve_backend_name("auto") == "cpu"
        layer = numrnn.LSTM(2, 3)
        assert layer._backend.name == "cpu"
        y, _ = layer(np.zeros((2, 1, 2)))
        assert "numba.cuda" not in sys.modules and "numrnn.backends.cuda" not in sys.modules
        try:
            numrnn.GRU(2, 3, backend="cuda")
        except RuntimeError as exc:
            print("ERROR:", exc)
        """
    )
    env = dict(os.environ)
    env.pop("NUMRNN_BACKEND", None)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ERROR:" in result.stdout and HINT in result.stdout


def test_cuda_without_numba_cuda_names_the_install_command(fresh_backends, monkeypatch):
    monkeypatch.setattr(fresh_backends, "numba_cuda_installed", lambda: False)
    with pytest.raises(RuntimeError, match=r'numba-cuda, which is not installed: install it with pip install "numrnn\[cuda\]"'):
        numrnn.get_backend("cuda")
    assert fresh_backends.resolve_backend_name("auto") == "cpu"


def test_cuda_without_device_says_so(fresh_backends, monkeypatch):
    """With numba-cuda installed (pretended, so the test holds with only the [test] extra)
    but no device."""
    monkeypatch.setattr(fresh_backends, "numba_cuda_installed", lambda: True)
    monkeypatch.setitem(fresh_backends._probe, "available", (False, "numba-cuda found no usable CUDA GPU"))
    with pytest.raises(RuntimeError, match="no usable CUDA GPU") as info:
        numrnn.LSTM(2, 3, backend="cuda")
    assert HINT in str(info.value)
    assert fresh_backends.resolve_backend_name("auto") == "cpu"


def test_environment_variable_sets_auto(fresh_backends, monkeypatch):
    monkeypatch.setenv("NUMRNN_BACKEND", "cpu")
    assert fresh_backends.resolve_backend_name("auto") == "cpu"
    assert fresh_backends.resolve_backend_name("cuda") == "cuda"  # explicit names win
    monkeypatch.setenv("NUMRNN_BACKEND", "gpu")
    with pytest.raises(ValueError, match="NUMRNN_BACKEND"):
        fresh_backends.resolve_backend_name("auto")


def test_auto_picks_cuda_only_for_a_real_device(fresh_backends, monkeypatch):
    monkeypatch.setitem(fresh_backends._probe, "available", (True, "CUDA simulator"))
    monkeypatch.setattr(fresh_backends, "cuda_simulator_enabled", lambda: True)
    assert fresh_backends.resolve_backend_name("auto") == "cpu"
    monkeypatch.setattr(fresh_backends, "cuda_simulator_enabled", lambda: False)
    monkeypatch.setattr(fresh_backends, "_cuda_backend_importable", lambda: True)
    assert fresh_backends.resolve_backend_name("auto") == "cuda"


def _protocol_members():
    from numrnn.backends.protocol import Backend

    methods = [name for name, value in vars(Backend).items() if callable(value) and not name.startswith("_")]
    return methods + list(Backend.__annotations__)


def test_every_backend_implements_the_backend_protocol():
    """The stack driver talks to a backend through ``numrnn.backends.Backend`` only: the CPU
    and CUDA backend classes provide every method and attribute it declares."""
    from numrnn.backends.cpu import CPUBackend

    members = _protocol_members()
    assert {"layer_forward", "layer_backward", "layer_step", "step_kernel", "compute_context",
            "uses_workspace", "device", "concat_features", "multiply", "nonfinite_count"} <= set(members)
    assert isinstance(backends.get_backend("cpu"), backends.Backend)
    assert [name for name in members if not hasattr(CPUBackend, name)] == []
    pytest.importorskip("numba_cuda")
    from numrnn.backends.cuda import CUDABackend

    assert [name for name in members if not hasattr(CUDABackend, name)] == []
    assert CUDABackend.device and not CPUBackend.device
    assert CPUBackend.uses_workspace and not CUDABackend.uses_workspace
