"""The built docs and the asv dashboard, opened in headless Chromium (through Playwright).

Both sites are served over HTTP on 127.0.0.1 (asv's pages read their data with XHR, which
browsers refuse for file:// addresses).  Checked:

- the docs' index renders (title, the user-guide links) with no console errors;
- the API page of ``numrnn.LSTM`` lists ``hidden_size`` (in its signature) and its methods, with
  no console errors;
- the asv grid page lists the benchmarks, and a benchmark's graph page draws its data points
  (flot's series hold at least one finite point) with no console errors.

Uses Debian's ``chromium`` (``apt-get install chromium``) or Playwright's own build; skipped
where neither, or Playwright, is installed.  ``NUMRNN_UPDATE_SCREENSHOTS=1`` also writes the
two screenshots kept in ``docs/screenshots/`` (docs_index.png, asv_graph.png).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import shutil
import threading
import urllib.parse

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCREENSHOTS = os.path.join(ROOT, "docs", "screenshots")
GRAPH = "cold_start.ImportSuite.timeraw_import"
#: The graph the screenshot shows: the training step, where a full dashboard has it.
SCREENSHOT_GRAPH = "layers.LayerSuite.time_train_step"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(directory):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=directory))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (docs extra)")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_api.sync_playwright() as playwright:
        try:
            if executable:
                instance = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            else:
                instance = playwright.chromium.launch()
        except Exception as exc:  # noqa: BLE001  (no browser: Playwright's message says which)
            pytest.skip(f"no Chromium to run: {exc}")
        yield instance
        instance.close()


class Problems:
    """What went wrong on a page: console errors, uncaught exceptions, failed or >= 400 loads."""

    def __init__(self, page):
        self.console, self.uncaught, self.failed_loads = [], [], []
        page.on("console", lambda message: self.console.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: self.uncaught.append(str(error)))
        page.on("requestfailed", lambda request: self.failed_loads.append(request.url))
        page.on("response", lambda response: self.failed_loads.append(response.url) if response.status >= 400 else None)

    def __bool__(self):
        return bool(self.console or self.uncaught or self.failed_loads)

    def __repr__(self):
        return f"console errors {self.console}, uncaught {self.uncaught}, failed loads {self.failed_loads}"


def _stub_external(route):
    """Answer a request for another host (e.g. Sphinx's MathJax on a CDN) with an empty script:
    these machines have no internet, and what is checked is the pages' own errors."""
    route.fulfill(status=200, body="", content_type="application/javascript")


@contextlib.contextmanager
def open_page(browser, url):
    page = browser.new_page(viewport={"width": 1200, "height": 720})
    host = urllib.parse.urlsplit(url).netloc
    page.route(lambda target: urllib.parse.urlsplit(target).netloc not in (host, ""), _stub_external)
    problems = Problems(page)
    page.goto(url, wait_until="networkidle")
    try:
        yield page, problems
    finally:
        page.close()


def save_screenshot(page, name, tmp_path):
    page.screenshot(path=str(tmp_path / name))
    if os.environ.get("NUMRNN_UPDATE_SCREENSHOTS") == "1":
        os.makedirs(SCREENSHOTS, exist_ok=True)
        shutil.copyfile(tmp_path / name, os.path.join(SCREENSHOTS, name))


def test_docs_index_and_lstm_page(browser, docs_build, tmp_path):
    # test_docs_build checks the build's warnings; this one what the pages show.
    assert os.path.isfile(os.path.join(docs_build.html, "index.html")), docs_build.output[-3000:]
    with serve(docs_build.html) as url:
        with open_page(browser, url + "index.html") as (page, problems):
            assert "numrnn" in page.title()
            assert page.locator("h1").first.inner_text().strip().startswith("numrnn")
            links = page.locator("div.toctree-wrapper a").all_inner_texts()
            for title in ("Quick start", "Forecasting one series", "Forecasting many series", "GPU",
                          "Scaling out on Dask", "Design", "Performance", "API reference"):
                assert any(title in link for link in links), (title, links)
            save_screenshot(page, "docs_index.png", tmp_path)
            assert not problems, problems
        with open_page(browser, url + "api/generated/numrnn.LSTM.html") as (page, problems):
            signature = page.locator("dl.py.class > dt").first.inner_text()
            assert "hidden_size" in signature, signature
            methods = page.locator("dl.py.method > dt").all_inner_texts()
            assert any("forward" in m for m in methods) and any("backward" in m for m in methods), methods
            parameters = page.locator("dl.py.class > dd").first.inner_text()
            assert "hidden_size" in parameters and "bidirectional" in parameters, parameters[:500]
            assert not problems, problems


def test_asv_dashboard(browser, asv_site, tmp_path):
    with serve(asv_site) as url:
        with open_page(browser, url + "index.html") as (page, problems):
            page.wait_for_selector("text=cold_start", timeout=30_000)
            assert "numrnn" in page.title()
            # The grid asks for the summary graph of every benchmark in the suite; only the one run
            # here has results, so the others' are absent: a 404 and a console line each, nothing else.
            absent = [u for u in problems.failed_loads
                      if re.search(r"/graphs/summary/[\w.]+\.json", u) and GRAPH not in u]
            assert set(absent) == set(problems.failed_loads), problems
            assert len(problems.console) <= len(absent), problems
            assert all(m.startswith("Failed to load resource") for m in problems.console), problems
            assert not problems.uncaught, problems
        with open_page(browser, url + f"index.html#{GRAPH}") as (page, problems):
            page.wait_for_selector("canvas.flot-base", timeout=30_000)
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('canvas.flot-base')).some("
                "c => { const plot = window.$(c.parentNode).data('plot'); return plot && plot.getData().length > 0; })",
                timeout=30_000,
            )
            points = page.evaluate(
                "() => Array.from(document.querySelectorAll('canvas.flot-base')).flatMap(c => {"
                " const plot = window.$(c.parentNode).data('plot');"
                " return plot ? plot.getData().flatMap(s => s.data.filter(p => p && isFinite(p[1]))) : []; })"
            )
            assert len(points) >= 1, "the graph has no data points"
            assert page.locator("text=" + GRAPH).count() >= 1
            assert not problems, problems
        shown = SCREENSHOT_GRAPH if os.path.isfile(os.path.join(asv_site, "graphs", "summary", f"{SCREENSHOT_GRAPH}.json")) \
            else GRAPH
        with open_page(browser, url + f"index.html#{shown}") as (page, problems):
            page.wait_for_selector("canvas.flot-base", timeout=30_000)
            page.wait_for_timeout(1000)
            save_screenshot(page, "asv_graph.png", tmp_path)
            assert not problems, problems
