"""The examples in numrnn's docstrings run and print what they say.

One test per module of ``numrnn`` whose source holds a ``>>>`` example (found by reading the
files, so collecting imports nothing).  Each runs :mod:`doctest` over everything the module
defines, in the module's own namespace, with ``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``.  A module
that needs an optional peer (sktime, statsforecast, dask) is skipped where that peer is not
installed, and only then.
"""

from __future__ import annotations

import doctest
import importlib
import io
import os

import pytest

PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "numrnn")

#: Top-level packages a module may need that numrnn does not depend on.
OPTIONAL_PEERS = {"sktime", "skpro", "statsforecast", "dask", "distributed", "pandas", "torch", "matplotlib"}

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def modules_with_examples():
    names = []
    for folder, _, files in os.walk(PACKAGE_DIR):
        for filename in sorted(files):
            if not filename.endswith(".py"):
                continue
            path = os.path.join(folder, filename)
            with open(path, encoding="utf-8") as handle:
                if ">>>" not in handle.read():
                    continue
            relative = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[: -len(".py")]
            parts = relative.split(os.sep)
            if parts[-1] == "__init__":
                parts.pop()
            names.append(".".join(parts))
    return sorted(names)


MODULES = modules_with_examples()


def test_the_package_has_docstring_examples():
    # The collection below must have found something to run (and found the package at all).
    assert "numrnn.nn.recurrent" in MODULES or "numrnn.layers" in MODULES, MODULES
    assert len(MODULES) >= 5, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in OPTIONAL_PEERS:
            pytest.skip(f"{name} needs {exc.name}, which is not installed")
        raise
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [test for test in finder.find(module, name) if test.examples]
    # Only the docstrings defined in this module (the finder also visits re-exported objects).
    tests = [test for test in tests if _defined_in(test, module)]
    assert tests, f"{name}'s source has '>>>' but doctest found no examples in it"
    if all(example.options.get(doctest.SKIP) for test in tests for example in test.examples):
        pytest.skip(f"every example in {name} is marked '# doctest: +SKIP' by its author")
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in sorted(tests, key=lambda t: t.name):
        runner.run(test, out=out.write)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}:\n{out.getvalue()}"


def _defined_in(test, module):
    filename = getattr(module, "__file__", None)
    return test.filename is None or filename is None or os.path.samefile(test.filename, filename)
