"""Fixtures of the docs tests: the Sphinx build and a small published asv site, each made once.

- ``docs_build``: ``python -m sphinx -W --keep-going -E -b html docs <tmp>/html`` (the command
  CI runs, into a temporary folder, with fresh doctrees so every warning is seen); skips where
  the docs extra (sphinx, numpydoc, myst-parser) is not installed.
- ``asv_site``: ``asv run --python=same`` of one cheap benchmark (``ImportSuite``) saved under
  HEAD, then ``asv publish`` and ``vendor/localize.py``, all in a temporary folder (its own
  results, html and machine file, so the real ``asv_benchmarks/results`` is left alone); skips
  where asv is not installed.  ``NUMRNN_ASV_SITE=asv_benchmarks/html`` checks that published
  dashboard instead (after ``bash asv_benchmarks/publish.sh``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(ROOT, "docs")
ASV_DIR = os.path.join(ROOT, "asv_benchmarks")


@dataclass
class Build:
    returncode: int
    output: str
    html: str
    seconds: float


def _require(*modules):
    for name in modules:
        pytest.importorskip(name, reason=f"the docs extra is not installed ({name}): pip install -e '.[docs]'")


@pytest.fixture(scope="session")
def docs_build(tmp_path_factory):
    _require("sphinx", "numpydoc", "myst_parser", "matplotlib")
    out = tmp_path_factory.mktemp("docs")
    html = str(out / "html")
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-b", "html",
         "-d", str(out / "doctrees"), DOCS, html],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        env=dict(os.environ, NUMRNN_BACKEND="cpu"),
    )
    seconds = time.perf_counter() - start
    print(f"docs build: {seconds:.0f} s")
    return Build(result.returncode, result.stdout + result.stderr, html, seconds)


@pytest.fixture(scope="session")
def asv_site(tmp_path_factory):
    published = os.environ.get("NUMRNN_ASV_SITE")
    if published:  # check a dashboard publish.sh wrote instead, e.g. asv_benchmarks/html
        assert os.path.isfile(os.path.join(published, "index.json")), f"no asv site in {published}"
        return published
    pytest.importorskip("asv", reason="the bench extra (asv) is not installed")
    out = tmp_path_factory.mktemp("asv")
    config = {
        "version": 1,
        "project": "numrnn",
        "repo": ROOT,
        "dvcs": "git",
        "branches": ["main"],
        "environment_type": "virtualenv",
        "benchmark_dir": os.path.join(ASV_DIR, "benchmarks"),
        "env_dir": str(out / "env"),
        "results_dir": str(out / "results"),
        "html_dir": str(out / "html"),
    }
    conf = out / "asv.conf.json"
    conf.write_text(json.dumps(config))
    env = dict(os.environ, HOME=str(out), NUMRNN_BACKEND="cpu")  # asv keeps its machine file in ~
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    commands = [
        [sys.executable, "-m", "asv", "machine", "--yes", "--config", str(conf)],
        [sys.executable, "-m", "asv", "run", "--config", str(conf), "--python=same",
         "--set-commit-hash", head.stdout.strip(), "--bench", "ImportSuite", "-a", "repeat=2", "--show-stderr"],
        [sys.executable, "-m", "asv", "publish", "--config", str(conf)],
        [sys.executable, os.path.join(ASV_DIR, "vendor", "localize.py"), str(out / "html")],
    ]
    for command in commands:
        result = subprocess.run(command, cwd=str(out), env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return str(out / "html")
