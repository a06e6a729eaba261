"""The registry, in process: a page added to a `Console` gets a route, a place in the
navigation (registered pages only), the session gate, and its refusals shown as a page."""

from __future__ import annotations

from types import SimpleNamespace

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.testclient import TestClient

from entrepot.api.console.pages import Page, PageContext
from entrepot.api.console.routes import Console
from entrepot.api.console.session import COOKIE
from entrepot.exceptions import NotFoundError

ADMIN = "registry-admin-key"


async def hello(ctx: PageContext) -> Response:
    return ctx.render("message.html", title="Hello", text="A registered page.")


async def missing(ctx: PageContext) -> Response:
    raise NotFoundError("no run named 'x'")


def client() -> tuple[TestClient, Console]:
    console = Console((Page("/hello", "Hello", hello), Page("/missing", "Missing", missing)))
    app = Starlette(routes=console.routes())
    app.state.gateway = SimpleNamespace(keys=SimpleNamespace(admin_key=ADMIN), ended_sessions=None)
    return TestClient(app, base_url="http://127.0.0.1"), console


def test_a_registered_page_is_routed_gated_and_in_the_navigation() -> None:
    test, console = client()
    assert test.get("/ui/hello", follow_redirects=False).headers["location"] == "/ui/login"
    value, _ = console.sessions.issue(ADMIN)
    test.cookies.set(COOKIE, value, path="/ui")
    page = test.get("/ui/hello")
    assert page.status_code == 200 and "A registered page." in page.text
    assert '<a href="/ui/hello" aria-current="page">Hello</a>' in page.text
    assert '<a href="/ui/missing">Missing</a>' in page.text
    assert "Keys and budgets" not in page.text  # only what this console registered
    assert test.get("/ui", follow_redirects=False).headers["location"] == "/ui/hello"


def test_a_pages_refusal_is_a_page_in_its_status() -> None:
    test, console = client()
    value, _ = console.sessions.issue(ADMIN)
    test.cookies.set(COOKIE, value, path="/ui")
    page = test.get("/ui/missing")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "no run named &#39;x&#39;" in page.text


def test_a_session_of_another_admin_key_is_refused() -> None:
    test, _ = client()
    value, _ = Console(()).sessions.issue("a-previous-admin-key")
    test.cookies.set(COOKIE, value, path="/ui")
    assert test.get("/ui/hello", follow_redirects=False).status_code == 303
