"""Runs the CUDA backend tests (``tests/backends/cuda``) under Numba's CUDA simulator.

``NUMBA_ENABLE_CUDASIM=1`` has to be set before Numba is imported, which this
process has long done, so the tests run in a child ``python -m pytest tests/backends/cuda``.
Skipped without numba-cuda, and where ``tests/backends/cuda`` already runs in this process
(on a GPU, or when this whole run is under the simulator).  The child shrinks the
launch sizes itself (``tests/backends/cuda/conftest.py``).

The child takes about 200 CPU s on one core (the simulator runs every GPU thread in
Python) while the rest of the suite keeps about one core busy, so it starts as soon as
the session has collected this test (:func:`start_early`, called by ``tests/conftest.py``)
and runs beside the others; ``tests/conftest.py`` also moves this test to the end of the
run, where it collects the child's result (a run of 591 s waited 75 s for it here when
the test ran in its place among the backend tests).  Run on its own, the test
starts the child itself.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMAND = [sys.executable, "-m", "pytest", os.path.join("tests", "backends", "cuda"), "-q", "-p", "no:cacheprovider",
           "-W", "error"]
TIMEOUT_S = 900

#: The child started by :func:`start_early`: ``(process, output file, cache directory)``, or None.
_early = None


def _installed():
    return importlib.util.find_spec("numba_cuda") is not None


def _runs_in_process():
    import numba

    if numba.config.ENABLE_CUDASIM:
        return True
    from numba import cuda

    return cuda.is_available()


def _start():
    """The child, its stdout and stderr going to a temporary file: ``(process, file, cache)``.

    The child gets a Numba cache of its own (``cache``, a temporary directory): it
    compiles the CPU kernels it compares against while the suite compiles the same ones,
    and two processes writing one cache at once can leave a kernel's entry and its
    parallel loop's entry from different compiles (Numba issue 10128: a segfault on load).
    """
    cache = tempfile.TemporaryDirectory(prefix="numrnn-cudasim-cache-")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONDONTWRITEBYTECODE="1", NUMBA_CACHE_DIR=cache.name)
    output = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen(COMMAND, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
    return process, output, cache


def start_early():
    """Start the child now, where this test will run it (called once the session is collected)."""
    global _early
    if _early is None and _installed() and not _runs_in_process():
        _early = _start()


def stop_early():
    """Kill a child still running when the session ends (an interrupted or ``-x`` run)."""
    global _early
    if _early is not None:
        process, output, cache = _early
        if process.poll() is None:
            process.kill()
            process.wait()
        output.close()
        cache.cleanup()
        _early = None


@pytest.mark.skipif(not _installed(), reason='numba-cuda is not installed (pip install "numrnn[cuda]")')
def test_cuda_backend_under_simulator():
    global _early
    if _runs_in_process():
        pytest.skip("tests/backends/cuda runs in this process (GPU present or simulator on)")
    process, output, cache = _early if _early is not None else _start()
    _early = None
    try:
        returncode = process.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    finally:
        output.seek(0)
        text = output.read()
        output.close()
        cache.cleanup()
    assert returncode == 0, f"{' '.join(COMMAND)} failed:\n{text[-6000:]}"
    summary = text.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, text[-3000:]
