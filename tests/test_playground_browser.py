"""The playground page in a real headless Chromium (Debian's package), driven by Playwright's Python client:
load the page from a real server on loopback, fill the form, submit, and see the ranking and the shading."""

import shutil

import pytest

from test_serve import DOCS, HEADS, Server, tiny_dir  # noqa: F401 (tiny_dir: the fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser_server(tiny_dir):
    s = Server(str(tiny_dir), "--heads", HEADS, "--max-document-chars", "2000")
    yield s
    s.stop()


def test_playground_ranks_and_shades_in_a_real_browser(browser_server, tmp_path):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(browser_server.url + "/")
            page.wait_for_selector("#model option", state="attached")
            page.fill("#query", "query about solar power")
            page.fill("#docs", "\n".join(DOCS))
            page.click("#run")
            page.wait_for_selector(".passage", timeout=60_000)
            passages = page.locator(".passage")
            assert passages.count() == len(DOCS)
            assert page.locator(".passage .rank").first.inner_text() == "#1"
            shaded = page.locator(".tok")
            assert shaded.count() > len(DOCS)
            assert "rgba(" in (shaded.first.get_attribute("style") or "")
            assert "passages in" in page.inner_text("#status")
            page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
            assert (tmp_path / "playground.png").stat().st_size > 1000
            page.fill("#query", "   ")  # bad input shows a message, not a blank page
            page.click("#run")
            assert page.locator("#error").is_visible() and "query" in page.inner_text("#error").lower()
            page.evaluate("document.getElementById('query').value = 'q'")
            page.fill("#docs", "x" * 2500)  # over the server's per-document limit
            page.click("#run")
            page.wait_for_function("document.getElementById('error').textContent.includes('characters')")
            assert errors == []
        finally:
            browser.close()


def test_playground_takes_an_api_key(tiny_dir):
    """With --api-key the page still loads; it asks for the key, and with it typed in, ranks."""
    keyed = Server(str(tiny_dir), "--heads", HEADS, "--api-key", "s3cret")
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                page.goto(keyed.url + "/")
                page.wait_for_function("document.getElementById('error').textContent.includes('API key')")
                page.fill("#key", "s3cret")
                page.dispatch_event("#key", "change")
                page.wait_for_selector("#model option", state="attached")
                page.fill("#query", "query about solar power")
                page.fill("#docs", "\n".join(DOCS))
                page.click("#run")
                page.wait_for_selector(".passage", timeout=60_000)
                assert page.locator(".passage").count() == len(DOCS)
                assert page.evaluate("window.localStorage.length") == 0  # the key is not stored
            finally:
                browser.close()
    finally:
        keyed.stop()
