"""What every HTML report must be, checked the same way for the bench's and the audit's: well
formed (each element closed in order), loading nothing from outside (no URL in a `src`, `href`
or CSS `url()`; a link in the text is fine), and with no "-0%" anywhere; and in a real browser
(headless Chromium, see `tests.api.console.browser`), fitting a narrow window and asking for
nothing but the file itself."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.api.console.browser import requested_urls
from tests.conftest import ROOT

VOID = {"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
# SVG's own shapes, written self-closed (`<circle .../>`).
SELF_CLOSED = {"circle", "line", "polyline", "rect", "path"}
MAX_SHOT_HEIGHT = 2400  # the top of a long page: its tables, charts and filters


class Page(HTMLParser):
    """The page's elements: open tags, their attributes, and the first nesting error."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()
        if self.stack:
            self.errors.append(f"never closed: {self.stack}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID and tag not in SELF_CLOSED:
            self.errors.append(f"<{tag}/> is not an element that closes itself")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [
            found
            for name, found in self.tags
            if name == tag
            and all(found.get(k.rstrip("_").replace("_", "-")) == v for k, v in attrs.items())
        ]


def check_page(html: str) -> Page:
    page = Page(html)
    assert page.errors == [], page.errors[:3]
    for _, attrs in page.tags:
        for name in ("src", "href", "action", "data"):
            value = attrs.get(name) or ""
            assert not re.match(r"\s*(https?:)?//", value), f"loads {value}"
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html), "a style loads from outside"
    assert "@import" not in html
    assert not page.find("script", src="") and all(
        "src" not in attrs for tag, attrs in page.tags if tag == "script"
    )
    assert not re.search(r"(?<![\w.])-0%", html) and "\u22120%" not in html
    return page


def screenshot_folder(tmp: Path) -> Path:
    """Where a report test's screenshots go: $REPORT_SCREENSHOTS (docs/reports when refreshing
    the committed ones), else the test's temporary directory."""
    chosen = os.environ.get("REPORT_SCREENSHOTS")
    folder = (ROOT / chosen) if chosen else tmp
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_at(driver: webdriver.Chrome, page: Path, width: int, shot: Path) -> None:
    """`page` opened at `width` pixels, with a screenshot of the whole page; it must fit the
    width (wide tables scroll inside their own box) and ask for nothing but itself."""
    driver.set_window_size(width, 900)
    requested_urls(driver)  # forget the earlier pages' requests
    driver.get(page.as_uri())
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(int(height), MAX_SHOT_HEIGHT))
    driver.save_screenshot(str(shot))
    driver.set_window_size(width, 900)
    assert driver.execute_script("return document.documentElement.scrollWidth") <= width
    assert {url for url in requested_urls(driver)} == {page.as_uri()}


def shown(driver: webdriver.Chrome, target: str) -> str:
    """The filter's "n of m shown" line for the element `target`."""
    form = driver.find_element(By.CSS_SELECTOR, f'form[data-target="{target}"]')
    return str(form.find_element(By.CLASS_NAME, "count").text)
