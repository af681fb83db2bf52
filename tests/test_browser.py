"""The demo page in a real browser: headless Chromium (Debian's chromium and chromium-driver)
driven by selenium opens the page served by the real server, types a prefix key by key, sees
suggestions that start with it, picks one with the keyboard, and sees the next suggestions
follow from that search.

`.ci/run` installs Chromium and sets XRCOMPLETE_REQUIRE_BROWSER=1: there a missing browser is a
failure, not a skip. Set XRCOMPLETE_SCREENSHOT=path.png to keep the screenshot (the README's is
docs/demo.png)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import headless_chromium

from xrcomplete import Completer
from xrcomplete.server import Server

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
