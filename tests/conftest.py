"""Pytest set-up shared by every test module.

- ``tests/`` is put on ``sys.path`` so tests can ``import naive`` (the pure-NumPy
  reference) and ``import helpers``.
- Hypothesis profiles: ``default`` (random exploration, no deadline, because the
  first call of a Numba kernel compiles) and ``ci`` (the same, derandomized so a CI
  run is reproducible); ``ci`` is chosen when the environment has ``CI=true``, or
  explicitly with ``--hypothesis-profile=ci``.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Layers built without an explicit backend use "auto", which picks a GPU where there is
# one; the CPU tests must test the CPU wherever they run (tests/backends/cuda names its backend).
os.environ.setdefault("NUMRNN_BACKEND", "cpu")
# The suite tests the compiled kernels: no NumPy first-use tier and no background compile
# processes here (tests/backends/cpu/test_first_use.py sets the mode where it tests it).
os.environ.setdefault("NUMRNN_FIRST_USE", "compile")

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is in the "test" extra; without it the property tests skip
    pass
else:
    settings.register_profile(
        "default", deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.register_profile(
        "ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.load_profile("ci" if os.environ.get("CI", "").lower() == "true" else "default")


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from the test's name, so every test is reproducible."""
    seed = sum(ord(ch) * (k + 1) for k, ch in enumerate(request.node.nodeid)) % (2**32)
    return np.random.default_rng(seed)


class _PendingCompile:
    """Stands for a background compile that never ends (the suite starts no process)."""

    returncode = None

    def poll(self):
        return None


@pytest.fixture
def first_use_tier(monkeypatch, tmp_path):
    """``first_use_tier(name)`` switches the CPU backend and the cells to "numpy" (a first
    use: nothing compiled, no process started; markers ``tmp_path/marker-PART-CELL-DTYPE``)
    or "compiled"; returns the list of the pairs that asked for a background compile, so
    tests can check that the NumPy kernels ran."""
    from numrnn.backends.cpu import first_use

    asked = []

    def launch(key, marker):
        asked.append(key)
        first_use._launched[key] = _PendingCompile()

    monkeypatch.setattr(first_use, "_launched", {})
    monkeypatch.setattr(first_use, "_launch", launch)
    monkeypatch.setattr(first_use, "marker_path",
                        lambda kernel, dtype, part="layers": str(tmp_path / f"marker-{part}-{kernel}-{np.dtype(dtype).name}"))

    def switch(name):
        monkeypatch.setattr(first_use, "_mode", "background" if name == "numpy" else "compile")
        monkeypatch.setattr(first_use, "_ready", set())
        return asked

    return switch


_early_modules = []


def pytest_collection_modifyitems(session, config, items):
    """Run the CUDA simulator's test last: its child runs beside the whole suite, and the
    test only waits for it (``tests/backends/test_cuda_simulator.py``)."""
    waiting = [item for item in items if item.name == "test_cuda_backend_under_simulator"]
    if waiting:
        items[:] = [item for item in items if item not in waiting] + waiting


def pytest_collection_finish(session):
    """Start the CUDA simulator's child run as soon as its test is collected, so that it
    runs beside the rest of the suite (``tests/backends/test_cuda_simulator.py``)."""
    if session.config.option.collectonly:
        return
    for item in session.items:
        if item.name == "test_cuda_backend_under_simulator":
            item.module.start_early()
            _early_modules.append(item.module)
            break


def pytest_sessionfinish(session):
    for module in _early_modules:
        module.stop_early()
