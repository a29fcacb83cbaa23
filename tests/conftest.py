import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """The test models are tiny: one thread runs them faster than two, and is immune to the slowdown that
    several threads' barriers suffer when the cores are shared with other jobs (measured at 15-30x).
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def static_page(tmp_path):
    """Open an HTML fragment (a widget's static fallback) in headless Chromium with no server and no kernel:
    ``page, errors = static_page(html)``; ``errors`` collects the page's script errors. Skips when
    playwright or a chromium binary is missing."""
    import shutil

    sync_api = pytest.importorskip("playwright.sync_api")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("no chromium on this machine")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            def open_(html: str):
                page_file = tmp_path / "fallback.html"
                page_file.write_text(f"<!doctype html><html><body>{html}</body></html>")
                page, errors = browser.new_page(), []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(page_file.as_uri())
                return page, errors
            yield open_
        finally:
            browser.close()


# Lines a test leaves for the end of the run (``record_property("summary", line)``): the colab rehearsal's
# time per chapter. They travel in the test reports, so they are printed under pytest-xdist as well, where
# a worker's own output is not shown.
_SUMMARY: list[str] = []


def pytest_runtest_logreport(report):
    if report.when == "call":
        _SUMMARY.extend(value for key, value in report.user_properties if key == "summary")


def pytest_terminal_summary(terminalreporter):
    if _SUMMARY:
        terminalreporter.section("summary")
        for line in sorted(_SUMMARY):
            terminalreporter.write_line(line)
