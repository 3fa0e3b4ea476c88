"""Make the site ``asv publish`` wrote work offline: its CDN scripts and styles served from here.

asv's pages load jQuery, flot, bootstrap, stupidtable and blueimp-md5 from public CDNs, so on a
machine without internet the dashboard shows "One or more external (JavaScript) dependencies of
airspeed velocity failed to load".  This copies the same libraries (the files next to this
script; versions and licences in README.md) into ``<html_dir>/vendor/`` and points every page's
``<script src>`` / ``<link href>`` at them, dropping the ``integrity`` / ``crossorigin`` /
``referrerpolicy`` attributes of those tags.  A CDN address with no local copy is left as it is
and named on stderr (exit status 1), so a newer asv with a new dependency shows up.

Usage: ``python asv_benchmarks/vendor/localize.py asv_benchmarks/html`` (publish.sh runs it).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ("js", "css", "fonts")
TAG = re.compile(r"<(script|link)\b[^>]*?\b(src|href)=\"(https?://[^\"]+)\"[^>]*>", re.IGNORECASE)
DROP = re.compile(r"\s+(integrity|crossorigin|referrerpolicy)=\"[^\"]*\"", re.IGNORECASE)


def local_copy(url):
    """The vendored file for a CDN ``url`` (``vendor/js/...`` or ``vendor/css/...``), or None."""
    name = url.rsplit("/", 1)[-1].split("?", 1)[0]
    kind = "css" if name.endswith(".css") else "js"
    for candidate in (name, name.replace(".min.", ".")):
        if os.path.isfile(os.path.join(HERE, kind, candidate)):
            return f"vendor/{kind}/{candidate}"
    return None


def localize(html_dir):
    for kind in KINDS:
        target = os.path.join(html_dir, "vendor", kind)
        if os.path.isdir(target):
            shutil.rmtree(target)
        shutil.copytree(os.path.join(HERE, kind), target)
    missing = set()
    for page in sorted(glob.glob(os.path.join(html_dir, "*.html"))):
        with open(page, encoding="utf-8") as handle:
            text = handle.read()

        def rewrite(match):
            tag, url = match.group(0), match.group(3)
            if tag.lower().startswith("<link") and "stylesheet" not in tag.lower():
                return tag  # links to pages (the asv home page), not assets
            local = local_copy(url)
            if local is None:
                missing.add(url)
                return tag
            return DROP.sub("", tag.replace(url, local))

        new = TAG.sub(rewrite, text)
        if new != text:
            with open(page, "w", encoding="utf-8") as handle:
                handle.write(new)
    for url in sorted(missing):
        print(f"localize.py: no local copy of {url}; the page still loads it from the network", file=sys.stderr)
    return not missing


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: python asv_benchmarks/vendor/localize.py HTML_DIR (the folder asv publish wrote)")
    sys.exit(0 if localize(sys.argv[1]) else 1)
