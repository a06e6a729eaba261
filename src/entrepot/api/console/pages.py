"""What a console page is, and what it is given to render: the registry's vocabulary (see the
package docstring for how to add one)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from entrepot.api.console.session import Session
from entrepot.api.gateway import Gateway

# Browsers may load nothing but the gateway's own resources, and run no inline script: a page
# that tried would show the failure in the browser's console instead of leaking a request.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


@dataclass
class PageContext:
    """One request to a page, from a logged-in operator."""

    request: Request
    gateway: Gateway
    session: Session
    env: Environment
    nav: Sequence[Page]
    page: Page

    def render(self, template: str, status: int = 200, **data: Any) -> HTMLResponse:
        """The template with the layout's variables (navigation, CSRF token) and `data`."""
        html = self.env.get_template(template).render(
            nav=self.nav, current=self.page, csrf_token=self.session.csrf, **data
        )
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def redirect(self, path: str) -> Response:
        """After a change: 303, so reloading the page does not post the form again."""
        return RedirectResponse(f"/ui{path}", status_code=303, headers=SECURITY_HEADERS)


PageHandler = Callable[[PageContext], Awaitable[Response]]
FormHandler = Callable[[PageContext, FormData], Awaitable[Response]]


@dataclass(frozen=True)
class Page:
    """A page of the console at `/ui{path}`, titled `title` in the navigation. `post` takes
    the page's forms (CSRF already checked); a page without it answers POST with 405."""

    path: str
    title: str
    get: PageHandler
    post: FormHandler | None = None

    @property
    def url(self) -> str:
        return f"/ui{self.path}"
