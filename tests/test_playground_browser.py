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
    s = Server(str(tiny_dir), "--heads", HEADS, "--max-document-chars", "2000", "--fuse-first-stage", "0.5")
    yield s
    s.stop()


def _coloured(png: bytes) -> dict[str, int]:
    """Pixels of the shading's green and red in a screenshot (PIL), to check what a person sees."""
    import io

    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int).reshape(-1, 3)
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    return {"green": int(((g > r + 25) & (g > b + 15)).sum()), "red": int(((r > g + 25) & (r > b + 25)).sum())}


def _explain_bodies(page) -> list[dict]:
    import json

    bodies = []
    page.on("request", lambda req: bodies.append(json.loads(req.post_data))
            if req.url.endswith("/v1/explain") and req.method == "POST" else None)
    return bodies


def test_playground_model_alone_or_fused_in_plain_words_with_a_shared_scale(browser_server, tmp_path):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            bodies = _explain_bodies(page)
            page.goto(browser_server.url + "/")
            page.wait_for_selector("#model option", state="attached")
            assert page.is_checked("#order-alone") and not page.is_disabled("#order-fuse")
            assert "weight 0.5" in page.inner_text("#fuse-label")
            page.click("#example")  # the typed example: no first-stage order, so the model alone
            assert "solar panels" in page.input_value("#query") and page.is_checked("#order-alone")
            page.click("#run")
            page.wait_for_selector(".passage", timeout=60_000)
            assert bodies[-1]["fuse_first_stage"] == 0 and bodies[-1]["safety_valve"] is False
            assert "model alone" in page.inner_text("#summary")
            cards = page.locator(".passage")
            n = cards.count()
            assert n == 5
            heads = page.locator(".passage .plain").all_inner_texts()
            assert heads[0].startswith("The model ranks it 1st of 5") and all("RRF" not in h for h in heads)
            # whole words: every shaded unit is one whole word of its passage, and every card has shading
            for k in range(n):
                card = cards.nth(k)
                words = card.locator(".body").inner_text().split()
                shaded = [w for w, style in zip(card.locator(".w").all_inner_texts(),
                                                card.locator(".w").evaluate_all("e => e.map(x => x.style.cssText)"))
                          if "rgba(" in style]
                assert shaded and all(w in words for w in shaded), (words, shaded)
            legend = page.inner_text("#scale")
            assert "Green words" in legend and "Red words" in legend and "strongest colour" in legend
            low, high = page.inner_text("#scale-low"), page.inner_text("#scale-high")
            assert low.lstrip("−") == high.lstrip("+")  # one symmetric scale for the whole list
            ramp = _coloured(page.locator("#scale .ramp").screenshot())
            assert ramp["green"] > 50 and ramp["red"] > 50
            for k in range(n):  # the screenshot of every card shows shading
                colours = _coloured(cards.nth(k).locator(".body").screenshot())
                assert colours["green"] + colours["red"] > 20, (k, colours)
            page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
            assert (tmp_path / "playground.png").stat().st_size > 1000
            sent = len(bodies)
            page.check("#unit-tokens")  # the per-token view, from the same answer (no new request)
            assert page.locator(".tok").count() >= page.locator(".w").count() == 0 and len(bodies) == sent
            assert "Green tokens" in page.inner_text("#scale")
            page.check("#unit-words")
            page.check("#order-fuse")
            page.click("#run")
            page.wait_for_function(f"document.querySelectorAll('.passage').length === {n} && "
                                   "document.getElementById('summary').dataset.order === 'fuse'")
            assert bodies[-1]["fuse_first_stage"] is None and bodies[-1]["safety_valve"] is None
            assert "combined with your passages' order" in page.inner_text("#summary")
            fused = page.locator(".passage .plain").all_inner_texts()
            assert all("the first stage had it" in h and "combined:" in h for h in fused), fused
            page.locator("details.formula summary").first.click()  # the exact formula, one click away
            assert "reciprocal-rank fusion" in page.locator("details.formula").first.inner_text()
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


def test_playground_loads_a_real_first_stage_list_fused_with_judgments(browser_server):
    """The first judged DL19 query's BM25 list (from the benchmark data) loads with fusion chosen and each card
    shows TREC's judgment."""
    from conftest import data_path

    data_path("msmarco-passage", "dl19")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(browser_server.url + "/")
            page.wait_for_selector("#example-real:not([hidden])", state="attached", timeout=30_000)
            page.click("#example-real")
            assert page.is_checked("#order-fuse") and "BM25 top 10" in page.inner_text("#source")
            page.click("#run")
            page.wait_for_selector(".passage", timeout=120_000)
            assert page.locator(".passage").count() == 10
            grades = page.locator(".passage .grade").all_inner_texts()
            assert len(grades) >= 10 and all(g.startswith(("judged:", "not judged", "The model read")) for g in grades)
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
                assert page.is_disabled("#order-fuse")  # no fusion setting on this server: the model alone
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
