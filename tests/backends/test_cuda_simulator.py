"""Runs the CUDA backend tests (``tests/backends/cuda``) under Numba's CUDA simulator.

``NUMBA_ENABLE_CUDASIM=1`` has to be set before Numba is imported, which this
process has long done, so the tests run in a child ``python -m pytest tests/backends/cuda``.
Skipped without numba-cuda, and where ``tests/backends/cuda`` already runs in this process
(on a GPU, or when this whole run is under the simulator).  The child shrinks the
launch sizes itself (``tests/backends/cuda/conftest.py``) and takes about a minute.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _runs_in_process():
    import numba

    if numba.config.ENABLE_CUDASIM:
        return True
    from numba import cuda

    return cuda.is_available()


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                    reason='numba-cuda is not installed (pip install "numrnn[cuda]")')
def test_cuda_backend_under_simulator():
    if _runs_in_process():
        pytest.skip("tests/backends/cuda runs in this process (GPU present or simulator on)")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "pytest", os.path.join("tests", "backends", "cuda"), "-q", "-p", "no:cacheprovider",
               "-W", "error"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output[-6000:]}"
    summary = output.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, output[-3000:]
