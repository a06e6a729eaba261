"""What every HTML report must be, checked the same way for the bench's and the audit's: well
formed (each element closed in order), loading nothing from outside (no URL in a `src`, `href`
or CSS `url()`; a link in the text is fine), and with no "-0%" anywhere."""

from __future__ import annotations

import re
from html.parser import HTMLParser

VOID = {"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
# SVG's own shapes, written self-closed (`<circle .../>`).
SELF_CLOSED = {"circle", "line", "polyline", "rect", "path"}


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
