"""CUDA backend tests: on a GPU when numba-cuda sees one, else under Numba's CUDA simulator.

``NUMBA_ENABLE_CUDASIM=1`` must be set before Numba is imported, so the main test
run cannot switch the simulator on for itself: ``tests/backends/test_cuda_simulator.py``
runs this directory in a subprocess with it set.  By hand::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/backends/cuda     # no GPU needed
    python -m pytest tests/backends/cuda                            # on a GPU

Without numba-cuda, or with neither a GPU nor the simulator, nothing here is
collected (``tests/backends/test_cuda_simulator.py`` reports why it skips).  The autouse
fixture :func:`small_launch` shrinks the launch configuration (two threads per
block, two sequences per block, 4x4 matrix tiles) so that the tiny shapes used here span several blocks, partial tiles and
strided loops over hidden units, on the simulator and on a GPU alike.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cuda_env import MODE, SKIP_REASON  # noqa: E402

# in a run that can run none of them, leave them out instead of listing 54 skips
collect_ignore_glob = ["test_*.py"] if MODE is None else []


@pytest.fixture(autouse=True)
def _require_cuda():
    if MODE is None:
        pytest.skip(SKIP_REASON)


@pytest.fixture(autouse=True)
def small_launch(_require_cuda, monkeypatch):
    """Tiny launch sizes, so tiny inputs take several blocks (see the module docstring)."""
    from numrnn.backends.cuda.config import CONFIG

    for name, value in dict(threads_per_block=2, batch_tile=2, matmul_block=2, matmul_work=2,
                            elementwise_threads=8, reduce_rows_per_chunk=5).items():
        monkeypatch.setattr(CONFIG, name, value)
    return CONFIG


@pytest.fixture
def quick_matmul(small_launch, monkeypatch):
    """One 16x16 matrix tile: the simulator is much faster with fewer barriers.

    The layer-equality grid uses it; :mod:`test_cuda_kernels` tests the matrix
    product with tiny tiles on its own.
    """
    if MODE == "simulator":
        monkeypatch.setattr(small_launch, "matmul_block", 4)
        monkeypatch.setattr(small_launch, "matmul_work", 4)
    return small_launch


def pytest_report_header(config):
    return f"numrnn CUDA tests: {MODE or 'skipped (' + SKIP_REASON + ')'}" + (
        f", NUMBA_ENABLE_CUDASIM={os.environ.get('NUMBA_ENABLE_CUDASIM')}" if MODE else "")
