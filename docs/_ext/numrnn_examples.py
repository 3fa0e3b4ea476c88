"""Sphinx extension: the scripts in ``examples/`` rendered with their output and plots.

Each ``examples/NAME.py`` becomes ``docs/examples/NAME.rst`` (generated, git-ignored): the
script's docstring as the page's text, what it printed, the PNG files it wrote, and its source.
A script chosen to run is run the way a user runs it, ``python examples/NAME.py`` in a process
of its own, from a fresh empty folder (so the plots it saves land there), with
``MPLBACKEND=Agg``, ``TQDM_DISABLE=1`` (no progress bars in the output) and
``NUMRNN_BACKEND=cpu``.  A script that fails or times out is a Sphinx warning, so
``sphinx -W`` fails the build.

Why not sphinx-gallery: it runs a script's code blocks in one namespace with ``__doc__ = ""``
and no ``__file__``; numrnn's examples are command-line scripts that build their argparse
description from ``__doc__`` and find the repository from ``__file__``, so they would fail there
while working for a user.

Which scripts run: ``numrnn_examples_run`` in conf.py (a regular expression matched against the
file name), or the environment variable ``NUMRNN_DOCS_RUN_EXAMPLES``: ``all``, ``none`` or a
regular expression.  The others are shown with their source and the command to run them.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import time

from sphinx.util import logging

logger = logging.getLogger(__name__)

#: Scripts that train for over a minute on two cores are not run by default.
DEFAULT_RUN = r"^(quickstart|custom_training_loop|forecast_airline|forecast_sunspots|forecast_many)\.py$"
TIMEOUT_S = 600


def _pattern(app):
    chosen = os.environ.get("NUMRNN_DOCS_RUN_EXAMPLES", "").strip() or app.config.numrnn_examples_run
    if chosen == "all":
        return re.compile(r".")
    if chosen == "none":
        return re.compile(r"(?!)")
    return re.compile(chosen)


def _title_and_body(path):
    """The script's docstring: first line as the title, the rest as reStructuredText."""
    import ast

    with open(path, encoding="utf-8") as handle:
        doc = ast.get_docstring(ast.parse(handle.read())) or os.path.basename(path)
    lines = doc.splitlines()
    title, body = lines[0].strip(), lines[1:]
    # A title that goes on to a second line (no blank line after the first) ends at the blank.
    while body and body[0].strip():
        title += " " + body.pop(0).strip()
    return title.rstrip("."), _commands_as_code("\n".join(body).strip())


def _commands_as_code(text):
    """An indented block after a blank line (the scripts' ``python examples/...`` lines) as code.

    reStructuredText would make it a block quote and turn its ``--`` options into dashes.
    """
    out, previous = [], ""
    for line in text.splitlines():
        starts_block = line.startswith("    ") and line.strip() and not previous.strip()
        if starts_block and not (out and out[-2:-1] and out[-2].rstrip().endswith("::")):
            out += [".. code-block:: text", ""]
        out.append(line)
        previous = line
    return "\n".join(out)


def _run(path, workdir):
    env = dict(os.environ, MPLBACKEND="Agg", TQDM_DISABLE="1", NUMRNN_BACKEND="cpu")
    if os.path.isdir(workdir):
        shutil.rmtree(workdir)
    os.makedirs(workdir)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, os.path.abspath(path)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    return result, time.perf_counter() - start


def _indent(text, prefix="   "):
    return "\n".join(prefix + line if line.strip() else "" for line in text.splitlines())


def write_pages(app):
    src = app.srcdir
    root = os.path.dirname(src)
    scripts = sorted(glob.glob(os.path.join(root, "examples", "*.py")))
    out_dir = os.path.join(src, "examples")
    os.makedirs(out_dir, exist_ok=True)
    run = _pattern(app)
    names = []
    for path in scripts:
        name = os.path.splitext(os.path.basename(path))[0]
        names.append(name)
        title, body = _title_and_body(path)
        page = [f".. _example-{name}:", "", title, "=" * len(title), "", body, ""]
        command = f"python examples/{name}.py"
        if run.search(os.path.basename(path)):
            logger.info(f"numrnn_examples: running {command}")
            workdir = os.path.join(out_dir, "_run", name)
            try:
                result, seconds = _run(path, workdir)
            except subprocess.TimeoutExpired:
                logger.warning(f"numrnn_examples: {command} ran past {TIMEOUT_S} s")
                continue
            if result.returncode != 0:
                logger.warning(
                    f"numrnn_examples: {command} exited with {result.returncode}:\n"
                    f"{result.stderr[-3000:]}"
                )
                continue
            page += [
                f"``{command}``, run when these pages were built ({seconds:.0f} s, compile time "
                "included where Numba's cache was empty).",
                "",
                "Output",
                "------",
                "",
                ".. code-block:: text",
                "",
                _indent(result.stdout.rstrip() or "(nothing printed)"),
                "",
            ]
            for png in sorted(glob.glob(os.path.join(workdir, "*.png"))):
                target = f"{name}__{os.path.basename(png)}"
                shutil.copyfile(png, os.path.join(out_dir, target))
                page += [f".. image:: {target}", f"   :alt: {os.path.basename(png)}, written by {name}.py", ""]
        else:
            page += [
                f"Not run when these pages were built (it trains for a minute or more): run ``{command}``.",
                "",
            ]
        page += [
            "Source",
            "------",
            "",
            f".. literalinclude:: ../../examples/{name}.py",
            "   :language: python",
            "",
        ]
        _write_if_changed(os.path.join(out_dir, f"{name}.rst"), "\n".join(page))
    index = [
        "Examples",
        "========",
        "",
        "The scripts in the repository's ``examples/`` folder, each with what it printed and plotted",
        "when these pages were built.  Copy one and change it.",
        "",
        ".. toctree::",
        "   :maxdepth: 1",
        "",
    ] + [f"   {name}" for name in names]
    _write_if_changed(os.path.join(out_dir, "index.rst"), "\n".join(index) + "\n")


def _write_if_changed(path, text):
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:
                return
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def setup(app):
    app.add_config_value("numrnn_examples_run", DEFAULT_RUN, "env")
    app.connect("builder-inited", write_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
