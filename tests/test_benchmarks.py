"""The asv benchmark suite (``asv_benchmarks/``) must stay runnable.

- ``asv check --python=same`` imports every benchmark module in the current
  environment and checks the benchmark signatures against ``params``: a broken
  import, a typo in a method or a wrong ``param_names`` fails here, in about a second.
- A smoke run calls ``setup`` and every timed method once at the small size on the
  CPU, so a benchmark that no longer matches numrnn's API fails here too (``asv
  check`` never runs a benchmark).

Both skip when asv (the ``bench`` extra) is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

ASV_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "asv_benchmarks")
PACKAGE = "numrnn_asv_benchmarks"


def test_asv_check():
    pytest.importorskip("asv")
    result = subprocess.run(
        [sys.executable, "-m", "asv", "check", "--python=same"],
        cwd=ASV_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"asv check failed:\n{result.stdout}\n{result.stderr}"
    assert "No problems found" in result.stdout, result.stdout


def load_benchmark_module(name):
    """Import ``asv_benchmarks/benchmarks/<name>.py`` as part of a package (it uses relative imports)."""
    if PACKAGE not in sys.modules:
        init = os.path.join(ASV_DIR, "benchmarks", "__init__.py")
        spec = importlib.util.spec_from_file_location(
            PACKAGE, init, submodule_search_locations=[os.path.dirname(init)]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.mark.parametrize("suite", ["LayerSuite", "StepSuite"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_layer_benchmarks_run(suite, cell):
    pytest.importorskip("asv")
    layers = load_benchmark_module("layers")
    benchmark = getattr(layers, suite)()
    args = (cell, "cpu", "small")
    benchmark.setup(*args)
    methods = [name for name in dir(benchmark) if name.startswith(("time_", "peakmem_"))]
    assert methods
    for name in methods:
        getattr(benchmark, name)(*args)


def test_cuda_cases_skip_without_gpu():
    pytest.importorskip("asv")
    import numrnn.backends

    common = load_benchmark_module("common")
    try:
        import numrnn.backends.cuda  # noqa: F401
    except ImportError:
        have_cuda = False
    else:
        have_cuda = numrnn.backends.cuda_available()
    if have_cuda:
        common.require_backend("cuda")
    else:
        with pytest.raises(NotImplementedError):
            common.require_backend("cuda")


def test_forecaster_benchmark_matches_api():
    pytest.importorskip("asv")
    forecast_module = pytest.importorskip("numrnn.forecast")
    forecast = load_benchmark_module("forecast")
    y = forecast.load_series()
    assert y.ndim == 1 and y.size >= 100
    # Building the model with the benchmark's arguments checks them; fitting is left to asv.
    forecast.ForecasterSuite().make("lstm", "cpu")
    assert hasattr(forecast_module.Forecaster, "fit")


def test_many_series_leaves_out_series_seasonal_naive_forecasts_exactly():
    """many_series.evaluate: a series whose held-out values seasonal naive matches exactly has an
    undefined MASE ratio; it is left out of every method's geometric mean (and said so)."""
    spec = importlib.util.spec_from_file_location("many_series_script", os.path.join(ASV_DIR, "many_series.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    t = np.arange(60)
    panel = {"flat end": np.r_[np.linspace(5, 2, 36), np.ones(24)], "seasonal": 10 + np.sin(2 * np.pi * t / 12) + 0.01 * t}

    def off_by(delta):
        def run(train, horizon, season):
            from numrnn import metrics

            return {k: {"yhat": metrics.seasonal_naive(y, horizon, m=season) + delta} for k, y in train.items()}

        return run

    rows = script.evaluate(panel, 6, 12, {"naive": off_by(0.0), "shifted": off_by(1e-7)})
    (name0, ratio0, *_, note0), (name1, ratio1, *_, note1) = rows
    assert (name0, name1) == ("naive", "shifted")
    assert note0 == note1 == "1 series with seasonal naive exact left out"
    assert ratio0 == pytest.approx(1.0) and ratio1 == pytest.approx(1.0, rel=1e-5)  # not 1e5
