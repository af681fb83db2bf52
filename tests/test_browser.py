"""The demo page in a real browser: headless Chromium (Debian's chromium and chromium-driver)
driven by selenium opens the page served by the real server, types a prefix key by key, sees
suggestions that start with it, picks one with the keyboard, and sees the next suggestions
follow from that search; served with a product retriever, it sees the products of the
highlighted suggestion beside the list, as ``ProductRetriever.retrieve`` gives them.

`.ci/run` installs Chromium and sets XRCOMPLETE_REQUIRE_BROWSER=1: there a missing browser is a
failure, not a skip. Set XRCOMPLETE_SCREENSHOT=path.png to keep the screenshot (the README's is
docs/demo.png; XRCOMPLETE_PRODUCTS_SCREENSHOT keeps the products', docs/products.png)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import headless_chromium

from xrcomplete import Completer, ProductRetriever
from xrcomplete.server import Server, start

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with headless_chromium("--window-size=900,700") as driver:
        yield driver


def shown(driver: webdriver.Chrome) -> list[str]:
    # One script, so that a list re-rendered meanwhile cannot be read half old, half new.
    script = "return [...document.querySelectorAll('#suggestions li')].map(li => li.dataset.text)"
    texts: list[str] = driver.execute_script(script)
    return texts


def type_slowly(box: object, text: str) -> None:
    for ch in text:
        box.send_keys(ch)  # type: ignore[attr-defined]


def test_the_demo_page_completes_and_follows_the_session(
    browser: webdriver.Chrome, server: Server, sample_model: tuple[Completer, Path], tmp_path: Path
) -> None:
    completer = sample_model[0]
    wait = WebDriverWait(browser, 20)
    browser.get(server.url + "/")
    box = browser.find_element(By.ID, "q")
    prefix = "ch"
    want = [c.query for c in completer.complete("", prefix, 10)]
    assert want, "the sample model completes the prefix"
    type_slowly(box, prefix)
    wait.until(lambda d: shown(d) == want)
    assert all(s.startswith(prefix) for s in shown(browser))
    # The typed part is plain, the rest bold.
    first = browser.find_element(By.CSS_SELECTOR, "#suggestions li .rest")
    assert first.text == want[0][len(prefix) :]
    assert int(first.value_of_css_property("font-weight")) >= 700
    # Down twice, then Enter: the second suggestion is searched.
    box.send_keys(Keys.ARROW_DOWN, Keys.ARROW_DOWN)
    selected = browser.find_elements(By.CSS_SELECTOR, '#suggestions li[aria-selected="true"]')
    assert [li.get_attribute("data-text") for li in selected] == [want[1]]
    box.send_keys(Keys.ENTER)
    wait.until(lambda d: d.find_element(By.ID, "prev").text == want[1])
    assert not shown(browser) and box.get_attribute("value") == ""
    # The next suggestions are conditioned on that search, as Completer.complete says.
    nxt = "ho"
    after = [c.query for c in completer.complete(want[1], nxt, 10)]
    alone = [c.query for c in completer.complete("", nxt, 10)]
    assert after != alone, "the sample model conditions this prefix on the session"
    type_slowly(box, nxt)
    wait.until(lambda d: shown(d) == after)
    assert browser.find_element(By.ID, "took").text.endswith("µs")
    # Escape closes the list.
    box.send_keys(Keys.ESCAPE)
    wait.until(lambda d: not shown(d))
    box.send_keys(Keys.BACKSPACE, Keys.BACKSPACE)
    type_slowly(box, nxt)
    wait.until(lambda d: shown(d) == after)
    png = tmp_path / "demo.png"
    assert browser.save_screenshot(str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("XRCOMPLETE_SCREENSHOT")
    if keep:
        shutil.copyfile(png, keep)


#: A store's searches (Home Depot-like) and its catalogue: the completer and the products of
#: the demo belong to the same site.
SEARCHES = [
    "brown leather sofa",
    "brown leather recliner",
    "brown area rug",
    "cordless drill",
    "ceiling fan with light",
    "garden hose",
    "paint roller",
]
CATALOGUE = {
    100: "Leather Sofa in Brown",
    101: "Cordless Drill 18V Lithium",
    102: "Ceiling Fan with Light Kit",
    103: "Garden Hose 50 ft.",
    104: "Paint Roller Kit 9 in.",
    105: "Brown Leather Recliner",
    106: "Brown Shag Area Rug 5 x 8",
}
JUDGED = [("brown leather sofa", 100), ("leather couch", 100), ("recliner", 105), ("rug", 106)]


def products_shown(driver: webdriver.Chrome) -> tuple[str | None, list[str]]:
    script = """const pane = document.getElementById('products');
        if (pane.hidden) { return [null, []]; }
        return [pane.dataset.query || null,
                [...document.querySelectorAll('#product-list li')].map(li => li.dataset.id)];"""
    query, ids = driver.execute_script(script)
    return query, ids


def test_the_demo_page_shows_the_products_of_the_highlighted_suggestion(
    browser: webdriver.Chrome, tmp_path: Path
) -> None:
    # Only the store's own searches (none composed from their words: a log this small has
    # too few to learn which would be searched).
    completer = Completer(index="trie", generate=False, progress=False).fit(
        [("", q) for q in SEARCHES] * 3
    )
    retriever = ProductRetriever(max_leaf_size=2, progress=False).fit(
        [q for q, _ in JUDGED], [p for _, p in JUDGED], CATALOGUE
    )

    def products(query: str) -> list[str]:
        return [str(p) for p, _ in retriever.retrieve(query, 5)]

    model, products_file = completer.save(tmp_path / "c.xrc"), retriever.save(tmp_path / "r.xrc")
    with start(model, port=0, workers=2, products=products_file) as server:
        wait = WebDriverWait(browser, 20)
        browser.get(server.url + "/")
        # Count the page's product requests.
        browser.execute_script(
            """window.productFetches = [];
            const fetched = window.fetch;
            window.fetch = (url, ...rest) => {
              if (String(url).startsWith('v1/products')) { window.productFetches.push(url); }
              return fetched(url, ...rest);
            };"""
        )
        box = browser.find_element(By.ID, "q")
        want = [c.query for c in completer.complete("", "br", 10)]
        assert len(want) >= 2, want
        type_slowly(box, "br")
        wait.until(lambda d: shown(d) == want)
        # Nothing highlighted: the typed text's products.
        wait.until(lambda d: products_shown(d) == ("br", products("br")))
        # Each move of the highlight shows that suggestion's products, as retrieve gives them.
        seen = []
        png = tmp_path / "products.png"
        for i in range(len(want)):
            box.send_keys(Keys.ARROW_DOWN)
            wait.until(lambda d, i=i: products_shown(d) == (want[i], products(want[i])))
            seen.append(products_shown(browser)[1])
            titles = browser.find_elements(By.CSS_SELECTOR, "#product-list li span:first-child")
            assert [t.text for t in titles] == [CATALOGUE[int(p)] for p in seen[-1]]
            if want[i] == "brown leather recliner":
                assert browser.save_screenshot(str(png))
        assert len({tuple(s) for s in seen}) > 1, "the highlight changes the products"
        keep = os.environ.get("XRCOMPLETE_PRODUCTS_SCREENSHOT")
        if keep:
            shutil.copyfile(png, keep)
        # An empty box shows no products and fetches none.
        fetched = len(browser.execute_script("return window.productFetches"))
        box.send_keys(Keys.BACKSPACE, Keys.BACKSPACE)
        wait.until(lambda d: products_shown(d) == (None, []))
        urls = browser.execute_script("return window.productFetches")
        assert all("q=&" not in u and not u.endswith("q=") for u in urls[fetched:]), urls
    assert server.finished


def test_a_server_without_products_shows_none(
    browser: webdriver.Chrome, server: Server, sample_model: tuple[Completer, Path]
) -> None:
    wait = WebDriverWait(browser, 20)
    browser.get(server.url + "/")
    box = browser.find_element(By.ID, "q")
    want = [c.query for c in sample_model[0].complete("", "ch", 10)]
    type_slowly(box, "ch")
    wait.until(lambda d: shown(d) == want)
    box.send_keys(Keys.ARROW_DOWN)
    assert products_shown(browser) == (None, [])
    assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None
