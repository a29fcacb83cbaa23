"""The built book, opened in headless Chromium as a reader would open it.

Run after `make book` (``make test`` does both). Serves ``_build/html`` on 127.0.0.1 and, on every page
of the table of contents: no broken images, math typeset by the vendored MathJax, no request leaves
127.0.0.1 (everything is served from the build), no console errors, and nothing wider than its container
at a 1,300 px window (code, outputs, tables, equations, images). Chapter pages: the Colab button
points at the chapter's notebook in the repository that _config.yml names, and the widget fallback's
slider changes the picture with no kernel behind it.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def toc_docs() -> list[str]:
    docs = [TOC["root"]]
    for part in TOC.get("parts", []):
        docs += [ch["file"] for ch in part.get("chapters", [])]
    return docs


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").exists():
        pytest.fail("No built book in _build/html: run `make book` first (make test does).")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(HTML)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("Chromium not found: install Debian's chromium package (make test does this as root).")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def open_page(browser, url):
    """Open url; return (page, console errors, requests that tried to leave 127.0.0.1)."""
    page = browser.new_page()
    errors, external = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)

    def route(r):
        host = urlparse(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(url, wait_until="load")
    page.wait_for_load_state("networkidle")
    return page, errors, external


@pytest.mark.parametrize("doc", toc_docs() + ["genindex", "search"])
def test_page_renders_offline(browser, server, doc):
    page, errors, external = open_page(browser, f"{server}/{doc}.html")
    try:
        assert page.title(), f"{doc}: empty title"
        broken = page.evaluate("""() => Array.from(document.images)
            .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.currentSrc || i.src)""")
        assert not broken, f"{doc}: broken images {broken}"
        n_math = page.locator(".math").count()
        if n_math:
            page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.document"
                                   " && document.querySelectorAll('mjx-container').length > 0", timeout=20000)
            typeset = page.locator("mjx-container").count()
            assert typeset >= n_math, f"{doc}: {n_math} math blocks but only {typeset} typeset"
            assert page.locator("mjx-merror").count() == 0, f"{doc}: MathJax reported a TeX error"
        assert not external, f"{doc}: requests left the machine (vendor them): {external}"
        assert not errors, f"{doc}: console errors {errors}"
    finally:
        page.close()


def chapter_docs():
    return [d for d in toc_docs() if (ROOT / f"{d}.ipynb").exists()]


@pytest.mark.parametrize("doc", chapter_docs())
def test_colab_button_points_at_the_notebook(browser, server, doc):
    repo = urlparse(CONFIG["repository"]["url"]).path.strip("/")
    branch = CONFIG["repository"]["branch"]
    expected = f"https://colab.research.google.com/github/{repo}/blob/{branch}/{doc}.ipynb"
    page, _, _ = open_page(browser, f"{server}/{doc}.html")
    try:
        hrefs = page.eval_on_selector_all("a[href*='colab.research.google.com']", "els => els.map(e => e.href)")
        assert expected in hrefs, f"{doc}: Colab links {hrefs}, expected {expected}"
    finally:
        page.close()


@pytest.mark.parametrize("doc", chapter_docs())
def test_widget_fallback_slider_changes_the_image(browser, server, doc):
    if "latent_explorer" not in (ROOT / f"{doc}.ipynb").read_text() and "_explorer(" not in (ROOT / f"{doc}.ipynb").read_text():
        pytest.skip(f"{doc} has no widget demo")
    page, errors, _ = open_page(browser, f"{server}/{doc}.html")
    try:
        fallback = page.locator(".t2i-widget-fallback").first
        assert fallback.count() == 1, f"{doc}: the widget demo rendered no static fallback"
        frame = fallback.locator(".t2i-frame").first
        state = "el => el.getAttribute('src') + '|' + getComputedStyle(el).backgroundPosition + '|' + el.style.cssText"
        before = frame.evaluate(state)
        slider = fallback.locator("input.t2i-slider").first
        lo, hi = float(slider.get_attribute("min")), float(slider.get_attribute("max"))
        value = slider.evaluate("el => el.value")
        target = hi if float(value) < (lo + hi) / 2 else lo
        slider.fill(str(target))  # sets the value and fires input/change, as dragging does
        after = frame.evaluate(state)
        assert after != before, f"{doc}: moving the slider did not change the image"
        assert not errors, f"{doc}: console errors {errors}"
    finally:
        page.close()


@pytest.mark.parametrize("doc", chapter_docs())
def test_chapter_output_speaks_to_the_reader(doc):
    """A chapter's claims are asserts (a missed one fails the build, so it is never published); what it prints
    is for the reader: no "bar: ... met" lines, no claim printed as missed. (Reads the executed copy the book
    was rendered from.)"""
    import json

    executed = next((d / f"{doc}.ipynb" for d in (ROOT / "_build" / "executed", ROOT / "_build" / "jupyter_execute")
                     if (d / f"{doc}.ipynb").exists()), None)
    if executed is None:
        pytest.fail(f"no executed copy of {doc} in _build/executed or _build/jupyter_execute: run `make test` "
                    f"or `make book` first")
    text = "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                   for c in json.loads(executed.read_text())["cells"] if c["cell_type"] == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")
    lines = [line.strip() for line in text.splitlines()]
    assert not [x for x in lines if x.startswith("bar:")], f"{doc} prints internal 'bar:' lines"
    assert not [x for x in lines if "LESS than" in x or x.endswith("NOT met")], f"{doc} prints a missed claim"

# What overflows its container on a page: code blocks and outputs that would scroll sideways, tables wider
# than their box, display equations wider than theirs, images wider than their cell.
OVERFLOW_JS = """() => {
  const found = [];
  const text = el => el.textContent.trim().slice(0, 60).replace(/\\s+/g, ' ');
  document.querySelectorAll('article pre').forEach(el => {
    const over = el.scrollWidth - el.clientWidth;
    if (over > 1) found.push(`code/output block ${over}px too wide: ${text(el)}`);
  });
  document.querySelectorAll('article table').forEach(el => {
    const over = el.getBoundingClientRect().width - el.parentElement.clientWidth;
    if (over > 1) found.push(`table ${Math.round(over)}px too wide: ${text(el)}`);
  });
  document.querySelectorAll('article mjx-container[display="true"]').forEach(el => {
    const inner = el.firstElementChild ? el.firstElementChild.getBoundingClientRect().width : 0;
    const over = Math.max(inner - el.clientWidth, el.scrollWidth - el.clientWidth);
    if (over > 1) found.push(`equation ${Math.round(over)}px too wide: ${el.getAttribute('aria-label') || text(el)}`);
  });
  document.querySelectorAll('article img').forEach(el => {
    const box = el.parentElement.closest('div, figure');
    const over = el.getBoundingClientRect().width - (box ? box.clientWidth : 0);
    if (over > 1) found.push(`image ${Math.round(over)}px too wide: ${el.currentSrc.split('/').pop()}`);
  });
  return found;
}"""


@pytest.mark.parametrize("doc", toc_docs())
def test_nothing_is_clipped_at_1300_px(browser, server, doc):
    """At a 1,300 px window no code block, output, table, equation or image is wider than its container:
    nothing on the page hides behind a sideways scroll bar."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    try:
        page.goto(f"{server}/{doc}.html", wait_until="load")
        page.wait_for_load_state("networkidle")
        if page.locator(".math").count():
            page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise"
                                   " && document.querySelectorAll('mjx-container').length > 0", timeout=20000)
            page.evaluate("() => MathJax.startup.promise")
        clipped = page.evaluate(OVERFLOW_JS)
        assert not clipped, f"{doc}: clipped at 1,300 px:\n" + "\n".join(clipped)
    finally:
        page.close()


@pytest.mark.parametrize("doc", chapter_docs())
def test_every_exercise_has_its_solution_hidden_in_a_dropdown(browser, server, doc):
    page, _, _ = open_page(browser, f"{server}/{doc}.html")
    try:
        n_exercises = page.locator("strong", has_text="Exercise ").count()
        bodies = page.eval_on_selector_all(
            "div.admonition.dropdown", "els => els.map(e => e.textContent.replace('Solution', '').trim().length)")
        assert n_exercises >= 2 and len(bodies) == n_exercises, f"{doc}: {n_exercises} exercises, {len(bodies)} dropdowns"
        assert all(n > 20 for n in bodies), f"{doc}: a solution dropdown is (nearly) empty: {bodies}"
    finally:
        page.close()
