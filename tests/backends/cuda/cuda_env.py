"""Where the CUDA tests run (GPU, simulator or nowhere) and their tolerances.

Shared by ``conftest.py`` and the test modules (``from cuda_env import RTOL``).
"""

from __future__ import annotations

import importlib.util

import numpy as np


def cuda_mode():
    """``"simulator"``, ``"gpu"`` or None (then the reason is in :data:`SKIP_REASON`)."""
    if importlib.util.find_spec("numba_cuda") is None:
        return None
    import numba

    if numba.config.ENABLE_CUDASIM:
        return "simulator"
    from numba import cuda

    return "gpu" if cuda.is_available() else None


MODE = cuda_mode()
SKIP_REASON = (
    "numba-cuda is not installed" if importlib.util.find_spec("numba_cuda") is None
    else "no CUDA GPU here: run with NUMBA_ENABLE_CUDASIM=1 (tests/test_cuda_simulator.py does)"
)

#: Relative tolerances of CUDA against the CPU backend.  On a GPU: float64 1e-9,
#: float32 1e-4 (the issue's targets).  Under the simulator the cell functions run
#: as plain Python, where their float32 constants (``activations.ONE``) combined
#: with the Python float that ``math.exp`` returns give a float32 result (NumPy's
#: NEP 50 rules), so float64 gate activations are only float32-exact there; compiled
#: code promotes to float64.  The simulator checks logic, so 1e-6 is ample there.
RTOL = {
    np.dtype(np.float32): 1e-4,
    np.dtype(np.float64): 1e-6 if MODE == "simulator" else 1e-9,
}
