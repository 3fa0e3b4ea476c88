"""Sphinx configuration of numrnn's documentation.

Build (warnings are errors, as in CI)::

    pip install -e ".[docs]"
    python -m sphinx -W -b html docs docs/_build/html

- API pages: ``sphinx.ext.autosummary`` writes one page per public name (``docs/api/*.rst``
  list them) from the numpydoc docstrings, rendered by ``numpydoc``.
- Narrative pages are MyST Markdown; most of their text is included from README.md, section by
  section (``{include}`` with ``start-after`` / ``end-before`` on the README's headings), so the
  README stays the one source.
- Examples: ``_ext/numrnn_examples.py`` runs each ``examples/*.py`` as a user runs it (its own
  process, ``python examples/NAME.py``) and writes a page with its source, its printed output
  and the plots it saved.  ``NUMRNN_DOCS_RUN_EXAMPLES`` chooses which run (see that module).
- Optional peers (sktime, skpro, statsforecast, dask, distributed) are mocked only where they
  are not installed, so ``numrnn.integrations`` documents either way.
"""

from __future__ import annotations

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "_ext"))
sys.path.insert(0, ROOT)

# The docs describe the CPU build; "auto" would pick a GPU where the build machine has one.
os.environ.setdefault("NUMRNN_BACKEND", "cpu")

import numrnn  # noqa: E402

project = "numrnn"
author = "the numrnn developers"
copyright = "2026, the numrnn developers"
release = numrnn.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "numrnn_examples",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "screenshots", "examples/_run"]
templates_path = ["_templates"]

# -- API reference ---------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types and shapes
# numpydoc: the autosummary class template lists members itself.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

_OPTIONAL_PEERS = ("sktime", "skpro", "statsforecast", "dask", "distributed")
autodoc_mock_imports = [name for name in _OPTIONAL_PEERS if importlib.util.find_spec(name) is None]

# -- MyST ------------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
# README sections start at "##"/"###"; included under a page title ("#") they skip a level.
suppress_warnings = ["myst.header"]

# -- HTML ------------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"numrnn {release}"
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"
html_theme_options = {
    "description": "Numba-accelerated RNN, LSTM and GRU with exact BPTT",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "230px",
}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}
