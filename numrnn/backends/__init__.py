"""Backend selection: ``get_backend("auto" | "cpu" | "cuda")``.

``"auto"`` (the default of every layer) picks the GPU when numba-cuda finds a
usable device and the CPU otherwise; the environment variable
``NUMRNN_BACKEND`` (``cpu``, ``cuda`` or ``auto``) overrides what ``"auto"``
means.  Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) runs
``backend="cuda"`` when asked for explicitly, but ``"auto"`` never picks it: it
is a pure-Python test harness, thousands of times slower than the CPU backend.

Importing numrnn never needs a GPU or numba-cuda; numba-cuda is imported the
first time ``"auto"`` or ``"cuda"`` is resolved.

Every backend object implements :class:`Backend` (:mod:`numrnn.backends.protocol`):
the per-layer kernels and the array operations that the one stack driver,
:mod:`numrnn.nn.stack`, runs every layer on.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np

from numrnn.backends.protocol import Backend

BACKENDS = ("auto", "cpu", "cuda")

INSTALL_HINT = 'pip install "numrnn[cuda]"'

_instances: dict = {}
_probe: dict = {}


def is_device_array(value) -> bool:
    """True for CUDA device arrays, without importing numba.cuda on the host path.

    Objects exposing ``__cuda_array_interface__`` are device arrays; so are Numba's own (and
    its simulator's) device arrays, which can only exist once ``numba.cuda`` is imported.
    """
    if value is None or isinstance(value, (np.ndarray, np.generic, int, float, list, tuple)):
        return False
    if hasattr(value, "__cuda_array_interface__"):
        return True
    if "numba.cuda" not in sys.modules:
        return False
    try:
        from numrnn.backends.cuda import is_device_array as is_numba_device_array
    except ImportError:  # numba.cuda imported by someone else but unusable here
        return False
    return is_numba_device_array(value)


def host_copy(array):
    """A NumPy copy of a NumPy array, anything array-like, or a device array."""
    if is_device_array(array):
        from numrnn.backends.cuda import as_device

        return as_device(array).copy_to_host()
    return np.array(array, copy=True)


def numba_cuda_installed() -> bool:
    """True when the numba-cuda package (NVIDIA's CUDA target for Numba) is installed."""
    try:
        return importlib.util.find_spec("numba_cuda") is not None
    except (ImportError, ValueError):  # a broken or deliberately blocked installation
        return False


def cuda_simulator_enabled() -> bool:
    """True when Numba runs CUDA kernels in its simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    import numba

    return bool(getattr(numba.config, "ENABLE_CUDASIM", False))


def cuda_available(allow_simulator: bool = True) -> bool:
    """True when numba-cuda is installed and sees a usable device.

    With ``allow_simulator`` (the default) Numba's CUDA simulator counts as a
    device.  The answer is computed once per process.
    """
    if "available" not in _probe:
        _probe["available"] = _probe_device()
    available, _ = _probe["available"]
    if not available:
        return False
    return allow_simulator or not cuda_simulator_enabled()


def _probe_device():
    """``(available, reason)``: whether numba-cuda can run kernels, and why not."""
    if not numba_cuda_installed():
        return False, "numba-cuda is not installed"
    try:
        from numba import cuda
    except Exception as exc:  # pragma: no cover - depends on the installation
        return False, f"importing numba.cuda failed: {exc}"
    if cuda_simulator_enabled():
        return True, "CUDA simulator"
    try:
        if cuda.is_available():
            return True, "GPU"
    except Exception as exc:  # pragma: no cover - depends on the driver
        return False, f"numba-cuda could not query the driver: {exc}"
    return False, "numba-cuda found no usable CUDA GPU (no NVIDIA driver, or no device)"


def resolve_backend_name(name: str) -> str:
    """Turn ``"auto"`` into ``"cpu"`` or ``"cuda"``; validate the name."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "auto":
        env = os.environ.get("NUMRNN_BACKEND", "auto").strip().lower() or "auto"
        if env not in BACKENDS:
            raise ValueError(f"environment variable NUMRNN_BACKEND must be one of {BACKENDS}, got {env!r}")
        if env != "auto":
            return env
        return "cuda" if cuda_available(allow_simulator=False) and _cuda_backend_importable() else "cpu"
    return name


def _cuda_backend_importable() -> bool:
    try:
        import numrnn.backends.cuda  # noqa: F401
    except ImportError:
        return False
    return True


def get_backend(name: str = "auto") -> Backend:
    """Return the backend object for ``name`` (``"auto"``, ``"cpu"`` or ``"cuda"``).

    Raises
    ------
    ValueError
        For an unknown name.
    RuntimeError
        For ``"cuda"`` when numba-cuda or a usable GPU is missing; the message
        says which, and how to install it.
    """
    resolved = resolve_backend_name(name)
    if resolved not in _instances:
        if resolved == "cpu":
            from numrnn.backends.cpu import CPUBackend

            _instances[resolved] = CPUBackend()
        else:
            _instances[resolved] = _make_cuda_backend()
    return _instances[resolved]


def _make_cuda_backend():
    if not numba_cuda_installed():
        raise RuntimeError(
            f'backend="cuda" needs numba-cuda, which is not installed: install it with {INSTALL_HINT} '
            '(or use backend="cpu")'
        )
    if not cuda_available():
        _, reason = _probe["available"]
        raise RuntimeError(
            f'backend="cuda" needs a CUDA GPU that numba-cuda can use: {reason}. '
            f"Check the NVIDIA driver (nvidia-smi) and that the CUDA libraries are installed with "
            f'{INSTALL_HINT}; or use backend="cpu" (NUMBA_ENABLE_CUDASIM=1 runs the CUDA backend '
            "on Numba's slow CUDA simulator, for testing)"
        )
    try:
        from numrnn.backends.cuda import CUDABackend
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise RuntimeError(
            f'backend="cuda" could not load numba-cuda ({exc}); reinstall it with {INSTALL_HINT}'
        ) from exc
    return CUDABackend()
