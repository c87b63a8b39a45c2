"""Open a local HTML page in headless Chromium, as a person's browser would show it.

``chromium`` is Debian's package (``apt-get install -y chromium``; ``.ci/run``
installs it).  A machine without it FAILS the tests that use this module: the
report is only tested when it is seen.

Console messages are read from Chromium's own log (``--enable-logging=stderr
--v=0`` logs every console call and uncaught error as ``...:CONSOLE:<line>]
"<message>", source: <url> (<line>)``), so no DevTools client is needed.
"""
import html.parser
import os
import re
import shutil
import subprocess
import tempfile

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CONSOLE = re.compile(r':CONSOLE(?:\(\d+\))?(?::\d+)?\] "(?P<message>.*)", source: (?P<source>.*)$')
FLAGS = ["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
         "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0"]
TIMEOUT = 120  # seconds: a cold Chromium start on a busy 2-core box


def chromium() -> str:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Chromium not found (looked for " + ", ".join(CANDIDATES) + "): install "
                "Debian's package, apt-get install -y chromium (.ci/run does)", pytrace=False)


def _run(page: str, *extra: str) -> tuple[str, list[str]]:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *extra,
             "file://" + os.path.abspath(page)],
            capture_output=True, text=True, timeout=TIMEOUT, check=False)
    console = [m.group("message") for m in map(CONSOLE.search, proc.stderr.splitlines()) if m]
    if proc.returncode != 0:
        raise AssertionError(f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout, console


def dump_dom(page: str) -> tuple[str, list[str]]:
    """(the DOM after load, serialised; console messages logged while loading)."""
    return _run(page, "--dump-dom")


def screenshot(page: str, png: str, width: int = 1100, height: int = 3000) -> list[str]:
    """Save a PNG of the page as rendered; returns the console messages."""
    _, console = _run(page, f"--screenshot={png}", f"--window-size={width},{height}")
    assert os.path.getsize(png) > 0, f"no screenshot written to {png}"
    return console


class Element:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent = tag, dict(attrs), parent
        self.children: list = []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        for child in self.children:
            if isinstance(child, Element):
                yield child
                yield from child.iter()

    def find_all(self, tag=None, **attrs) -> list["Element"]:
        attrs = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
        return [e for e in self.iter() if (tag is None or e.tag == tag)
                and all(e.attrs.get(k) == v for k, v in attrs.items())]

    def by_id(self, ident) -> "Element":
        found = self.find_all(id=ident)
        assert len(found) == 1, f"expected one element with id {ident!r}, found {len(found)}"
        return found[0]

    def rows(self) -> list[list[str]]:
        """Cell texts of a table's rows (header row included), whitespace collapsed."""
        return [[" ".join(c.text().split()) for c in tr.children
                 if isinstance(c, Element) and c.tag in ("td", "th")]
                for tr in self.find_all("tr")]


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class _TreeBuilder(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {}, None)
        self.current = self.root

    def handle_starttag(self, tag, attrs):
        element = Element(tag, attrs, self.current)
        self.current.children.append(element)
        if tag not in VOID:
            self.current = element

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Element(tag, attrs, self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(dom: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(dom)
    builder.close()
    return builder.root


