"""The console's routes, its registry of pages, and the gate every page is behind: the admin key
configured (else the console is disabled, as the admin API is), a valid session, and on every
POST the session's CSRF token. Pages never see a request that failed any of these."""

from __future__ import annotations

import asyncio
from functools import partial
from importlib.resources import files
from urllib.parse import parse_qsl

from jinja2 import Environment, PackageLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from entrepot.api.console import (
    dataflow,
    evaluations,
    figures,
    keys,
    models,
    overview,
    requests,
)
from entrepot.api.console.pages import SECURITY_HEADERS, Page, PageContext
from entrepot.api.console.session import (
    COOKIE,
    LIFETIME_SECONDS,
    LOGIN_COOKIE,
    LOGIN_FORM_SECONDS,
    Session,
    Sessions,
    login_token,
    same_token,
)
from entrepot.api.gateway import Gateway
from entrepot.exceptions import GatewayError

# The pages, in navigation order. Add yours here (see the package docstring).
PAGES: tuple[Page, ...] = (
    overview.PAGE,
    dataflow.PAGE,
    keys.PAGE,
    models.PAGE,
    requests.PAGE,
    evaluations.PAGE,
)

MAX_FORM_BYTES = 64 * 1024
# Guessing the admin key through the login form: at most two wrong guesses a second per process,
# however many are sent at once (the right key never waits).
FAILED_LOGIN_SECONDS = 0.5
CSS = files("entrepot.api.console").joinpath("static/console.css").read_bytes()


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("entrepot.api.console", "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(figures.FILTERS)
    env.globals["csrf_field"] = csrf_field
    return env


@pass_context
def csrf_field(context: Context) -> Markup:
    """The hidden field every POST form of a page carries (`{{ csrf_field() }}`)."""
    token = context.get("csrf_token", "")
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(token)


class Console:
    def __init__(self, pages: tuple[Page, ...]) -> None:
        self.pages = pages
        self.env = environment()
        self.sessions = Sessions()
        self._failed_logins = asyncio.Lock()

    def routes(self) -> list[BaseRoute]:
        pages = [
            Route(page.url, partial(self.page, page), methods=["GET", "POST"])
            for page in self.pages
        ]
        return [
            Route("/", to_console, methods=["GET"]),
            Route("/ui", self.index, methods=["GET"]),
            Route("/ui/login", self.login_form, methods=["GET"]),
            Route("/ui/login", self.login, methods=["POST"]),
            Route("/ui/logout", self.logout, methods=["POST"]),
            Route("/ui/console.css", stylesheet, methods=["GET"]),
            *pages,
        ]

    def _html(self, template: str, status: int = 200, **data: object) -> HTMLResponse:
        html = self.env.get_template(template).render(nav=(), current=None, **data)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    async def _session(self, request: Request) -> tuple[Gateway, str | None, Session | None]:
        gateway: Gateway = request.app.state.gateway
        admin_key = gateway.keys.admin_key
        if admin_key is None:
            return gateway, None, None
        session = self.sessions.read(admin_key, request.cookies.get(COOKIE))
        fleet = gateway.ended_sessions
        if session is not None and fleet is not None and await fleet.ended(session.nonce):
            return gateway, admin_key, None
        return gateway, admin_key, session

    def _disabled(self, gateway: Gateway) -> HTMLResponse:
        env = gateway.config.server.admin_key_env
        return self._html("disabled.html", 403, admin_key_env=env)

    async def index(self, request: Request) -> Response:
        gateway, admin_key, session = await self._session(request)
        if admin_key is None:
            return self._disabled(gateway)
        if session is None:
            return to_login()
        if not self.pages:
            return self._html("message.html", 404, title="No pages", text="No page is installed.")
        return RedirectResponse(self.pages[0].url, status_code=303)

    async def page(self, page: Page, request: Request) -> Response:
        gateway, admin_key, session = await self._session(request)
        if admin_key is None:
            return self._disabled(gateway)
        if session is None:
            return to_login()
        ctx = PageContext(request, gateway, session, self.env, self.pages, page)
        try:
            if request.method == "GET":
                return await page.get(ctx)
            form = await read_form(request)
            if form is None or not same_token(session.csrf, _field(form, "csrf_token")):
                return self._refused("The form has expired or did not come from this console.")
            if page.post is None:
                return self._html("message.html", 405, title="Not allowed", text="Nothing to post.")
            return await page.post(ctx, form)
        except GatewayError as exc:  # a page's own refusal (a bad filter, the store down…)
            return self._html("message.html", exc.status_code, title="Not shown", text=exc.message)

    def _refused(self, text: str) -> HTMLResponse:
        return self._html("message.html", 403, title="Refused", text=text)

    async def login_form(self, request: Request) -> Response:
        gateway, admin_key, session = await self._session(request)
        if admin_key is None:
            return self._disabled(gateway)
        if session is not None:
            return RedirectResponse("/ui", status_code=303)
        return self._login_page(request, error=None)

    def _login_page(self, request: Request, error: str | None) -> HTMLResponse:
        token = login_token()
        response = self._html("login.html", 401 if error else 200, error=error, login_token=token)
        _set_cookie(request, response, LOGIN_COOKIE, token, LOGIN_FORM_SECONDS)
        return response

    async def login(self, request: Request) -> Response:
        """The admin key in the posted form's body (never a URL), with the login form's token."""
        gateway, admin_key, _ = await self._session(request)
        if admin_key is None:
            return self._disabled(gateway)
        form = await read_form(request)
        if form is None or not same_token(
            request.cookies.get(LOGIN_COOKIE), _field(form, "login_token")
        ):
            return self._refused("The login form has expired: open the login page again.")
        if not gateway.keys.is_admin(_field(form, "admin_key") or ""):
            async with self._failed_logins:  # one wrong guess answered at a time, each slowly
                await asyncio.sleep(FAILED_LOGIN_SECONDS)
            return self._login_page(request, error="That is not the admin key.")
        value, _ = self.sessions.issue(admin_key)
        response = RedirectResponse("/ui", status_code=303, headers=SECURITY_HEADERS)
        _set_cookie(request, response, COOKIE, value, LIFETIME_SECONDS)
        response.delete_cookie(LOGIN_COOKIE, path="/ui")
        return response

    async def logout(self, request: Request) -> Response:
        _, _, session = await self._session(request)
        if session is not None:
            form = await read_form(request)
            if form is None or not same_token(session.csrf, _field(form, "csrf_token")):
                return self._refused("The form has expired or did not come from this console.")
            self.sessions.end(session)
            fleet = request.app.state.gateway.ended_sessions
            if fleet is not None:
                await fleet.end(session.nonce, session.expires)
        response = to_login()
        response.delete_cookie(COOKIE, path="/ui")
        return response


def _set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    """HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), Secure
    whenever the console is reached over TLS, and scoped to the console's paths."""
    response.set_cookie(
        name,
        value,
        max_age=age,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


async def read_form(request: Request) -> FormData | None:
    """An urlencoded form from the body, or None: anything else, or larger than a form needs.
    Fields in the URL's query are never read."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    fields: list[tuple[str, str | UploadFile]] = list(
        parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    )
    return FormData(fields)


def to_login() -> RedirectResponse:
    return RedirectResponse("/ui/login", status_code=303, headers=SECURITY_HEADERS)


async def to_console(request: Request) -> Response:
    """`GET /` leads a person who opened the gateway's address in a browser to the console."""
    return RedirectResponse("/ui", status_code=307)


async def stylesheet(request: Request) -> Response:
    return Response(CSS, media_type="text/css", headers={"cache-control": "max-age=3600"})


def console_routes() -> list[BaseRoute]:
    return Console(PAGES).routes()
