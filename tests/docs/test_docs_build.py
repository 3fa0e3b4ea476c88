"""The documentation builds with warnings as errors, and holds what a user looks for.

``python -m sphinx -W -b html docs docs/_build/html`` is the command (README); the build runs
the examples chosen in ``docs/_ext/numrnn_examples.py``, so it takes minutes and is marked slow.
Skipped where the docs extra is not installed.
"""

from __future__ import annotations

import os
import re

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NARRATIVE = ["quickstart", "forecasting_one", "forecasting_many", "custom_models", "gpu", "dask",
             "performance", "design", "examples/index"]


def read(build, page):
    path = os.path.join(build.html, page)
    assert os.path.isfile(path), f"{page} was not built"
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def text_of(html):
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_docs_build_without_warnings(docs_build):
    problems = [line for line in docs_build.output.splitlines() if "WARNING" in line or "ERROR" in line]
    assert not problems, "sphinx -W reports:\n" + "\n".join(problems)
    assert docs_build.returncode == 0, f"sphinx -W failed:\n{docs_build.output[-6000:]}"


def test_narrative_pages_come_from_the_readme(docs_build):
    for page in NARRATIVE:
        read(docs_build, page + ".html")
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    # A phrase of each included README section appears on its page.
    for page, phrase in [("quickstart", "API tour"), ("forecasting_one", "Accuracy on the holdout"),
                         ("forecasting_many", "unvalidated_ids_"), ("custom_models", "other building blocks"),
                         ("performance", "The asv suite"), ("gpu", "Tests without a GPU")]:
        assert phrase in readme, f"README lost {phrase!r}, which docs/{page}.md should include"
        assert phrase in text_of(read(docs_build, page + ".html")), (page, phrase)


def test_api_pages_list_every_public_name(docs_build):
    import numrnn
    import numrnn.forecast
    import numrnn.metrics
    import numrnn.nn

    generated = set(os.listdir(os.path.join(docs_build.html, "api", "generated")))
    expected = [f"numrnn.{name}" for name in ("RNN", "LSTM", "GRU")]
    expected += [f"numrnn.nn.{name}" for name in numrnn.nn.__all__ if name not in ("RNN", "LSTM", "GRU")]
    expected += [f"numrnn.forecast.{name}" for name in numrnn.forecast.__all__]
    expected += [f"numrnn.metrics.{name}" for name in numrnn.metrics.__all__]
    expected += [f"numrnn.{module}.{name}" for module in ("losses", "optim", "train", "io", "datasets", "convert")
                 for name in getattr(numrnn, module).__all__ if not name.isupper()]
    expected += ["numrnn.onnx.to_onnx", "numrnn.integrations.dask.tune_worker_malloc",
                 "numrnn.integrations.dask.forecast_many", "numrnn.integrations.sktime.NumrnnForecaster",
                 "numrnn.integrations.statsforecast.NumrnnModel", "numrnn.warmup.warmup"]
    missing = [name for name in expected if f"{name}.html" not in generated]
    assert not missing, f"no API page for {missing}"
    lstm = text_of(read(docs_build, "api/generated/numrnn.LSTM.html"))
    for word in ("hidden_size", "forward", "backward", "step", "state_dict"):
        assert word in lstm, word


def test_examples_rendered_with_output_and_plots(docs_build):
    airline = read(docs_build, "examples/forecast_airline.html")
    assert "seasonal naive" in airline and "MASE" in airline  # its printed table
    assert re.search(r'<img[^>]+src="[^"]*forecast_airline__forecast_airline\.png"', airline), "no plot"
    assert "def main" in text_of(airline)  # the source
