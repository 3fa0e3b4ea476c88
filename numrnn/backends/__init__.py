"""Backend selection: ``get_backend("auto" | "cpu" | "cuda")``.

``"auto"`` (the default of every layer) picks the GPU when numba-cuda finds a
usable device and the CPU otherwise; the environment variable
``NUMRNN_BACKEND`` (``cpu``, ``cuda`` or ``auto``) overrides what ``"auto"``
means.  Importing numrnn never needs a GPU or numba-cuda.
"""

from __future__ import annotations

import os

BACKENDS = ("auto", "cpu", "cuda")

_instances: dict = {}


def cuda_available() -> bool:
    """True when numba-cuda is installed and sees a usable device (or the simulator)."""
    try:
        from numba import cuda
    except Exception:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:
        return False


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
        return "cuda" if _cuda_backend_importable() and cuda_available() else "cpu"
    return name


def _cuda_backend_importable() -> bool:
    try:
        import numrnn.backends.cuda  # noqa: F401
    except ImportError:
        return False
    return True


def get_backend(name: str = "auto"):
    """Return the backend object for ``name`` (``"auto"``, ``"cpu"`` or ``"cuda"``).

    Raises
    ------
    ValueError
        For an unknown name.
    RuntimeError
        For ``"cuda"`` when numba-cuda or a usable GPU is missing.
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
    try:
        from numba import cuda  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the installation
        raise RuntimeError(
            'backend="cuda" needs numba-cuda: install it with pip install "numrnn[cuda]"'
        ) from exc
    try:
        from numrnn.backends.cuda import CUDABackend
    except ImportError as exc:
        raise RuntimeError(f'backend="cuda" is not available in this build of numrnn: {exc}') from exc
    if not cuda_available():
        raise RuntimeError(
            'backend="cuda" needs a CUDA GPU that numba-cuda can use (none was found); '
            'use backend="cpu", or NUMBA_ENABLE_CUDASIM=1 to run on the CUDA simulator'
        )
    return CUDABackend()
