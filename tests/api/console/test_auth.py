"""Who may use the console: the admin key's holder, by a session cookie set at login, with a
CSRF token on every change, never a key in a URL; and only where the admin API is enabled."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from entrepot.api.console.routes import FAILED_LOGIN_SECONDS
from tests.api.console.conftest import hidden, log_in, start_console_gateway
from tests.conftest import ADMIN_KEY, Server, admin

PAGES = ["/ui", "/ui/keys", "/ui/models"]


def _key_names(gateway: Server) -> set[str]:
    with admin(gateway) as client:
        return {key["name"] for key in client.get("/admin/keys").json()["data"]}


def test_root_leads_to_the_console_and_the_api_stays(console_gateway: Server) -> None:
    with httpx.Client(base_url=console_gateway.url) as client:
        root = client.get("/")
        assert root.status_code == 307 and root.headers["location"] == "/ui"
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/v1/models").status_code == 401


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_a_session(console_gateway: Server, path: str) -> None:
    with httpx.Client(base_url=console_gateway.url) as client:
        response = client.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login"


def test_login_sets_a_strict_http_only_expiring_cookie(console_gateway: Server) -> None:
    with httpx.Client(base_url=console_gateway.url) as client:
        response = log_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/ui"
    cookie = next(c for c in response.headers.get_list("set-cookie") if "entrepot_console=" in c)
    flags = {flag.strip().lower() for flag in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/ui", "max-age=28800"} <= flags
    assert "secure" not in flags  # plain HTTP: a Secure cookie would never come back


def test_cookie_is_secure_behind_a_tls_proxy(console_gateway: Server) -> None:
    """A TLS-terminating proxy on loopback says so with X-Forwarded-Proto (uvicorn trusts it
    from loopback only): the session cookie is then Secure."""
    headers = {"x-forwarded-proto": "https"}
    with httpx.Client(base_url=console_gateway.url, headers=headers) as client:
        form = client.get("/ui/login")
        assert "secure" in form.headers["set-cookie"].lower()
        client.cookies.set("entrepot_console_login", form.cookies["entrepot_console_login"])
        token = hidden(form.text, "login_token")
        response = client.post("/ui/login", data={"login_token": token, "admin_key": ADMIN_KEY})
    cookie = next(c for c in response.headers.get_list("set-cookie") if "entrepot_console=" in c)
    assert "secure" in cookie.lower()


def test_a_wrong_key_gets_no_session(console_gateway: Server) -> None:
    with httpx.Client(base_url=console_gateway.url) as client:
        response = log_in(client, "not-the-admin-key")
        assert response.status_code == 401
        assert response.elapsed.total_seconds() >= FAILED_LOGIN_SECONDS  # guessing is slow
        assert "not the admin key" in response.text
        assert "entrepot_console=" not in response.headers.get("set-cookie", "")
        assert client.get("/ui/keys").status_code == 303


def test_login_needs_the_forms_token(console_gateway: Server) -> None:
    """A page elsewhere cannot log a browser in (login CSRF): without the token the login
    form set as a cookie, the key is not even looked at."""
    with httpx.Client(base_url=console_gateway.url) as client:
        response = client.post("/ui/login", data={"admin_key": ADMIN_KEY})
        assert response.status_code == 403
        assert client.get("/ui/keys").status_code == 303


def test_no_page_takes_a_key_in_its_url(console_gateway: Server) -> None:
    with httpx.Client(base_url=console_gateway.url) as client:
        token = hidden(client.get("/ui/login").text, "login_token")
        query = {"admin_key": ADMIN_KEY, "login_token": token}
        login = client.post(
            "/ui/login",
            params=query,
            content=b"",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert login.status_code == 403
        for params in ({"admin_key": ADMIN_KEY}, {"key": ADMIN_KEY}, {"token": ADMIN_KEY}):
            assert client.get("/ui/keys", params=params).status_code == 303
        bearer = {"authorization": f"Bearer {ADMIN_KEY}"}
        assert client.get("/ui/keys", headers=bearer).status_code == 303


def test_changes_need_the_sessions_csrf_token(
    console_gateway: Server, session: httpx.Client
) -> None:
    fields = {"action": "create", "name": "csrf-probe"}
    assert session.post("/ui/keys", data=fields).status_code == 403
    forged = session.post("/ui/keys", data={**fields, "csrf_token": "0" * 64})
    assert forged.status_code == 403
    assert "csrf-probe" not in _key_names(console_gateway)
    token = hidden(session.get("/ui/keys").text, "csrf_token")
    created = session.post("/ui/keys", data={**fields, "csrf_token": token})
    assert created.status_code == 201
    assert "csrf-probe" in _key_names(console_gateway)
    assert "no-store" in created.headers["cache-control"]  # the secret is on this page


def test_logout_ends_the_session(console_gateway: Server, session: httpx.Client) -> None:
    cookie = session.cookies["entrepot_console"]
    token = hidden(session.get("/ui/keys").text, "csrf_token")
    assert session.post("/ui/logout").status_code == 403  # without the token: refused
    response = session.post("/ui/logout", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["location"] == "/ui/login"
    assert 'entrepot_console=""' in response.headers["set-cookie"]
    with httpx.Client(base_url=console_gateway.url) as replay:
        replay.cookies.set("entrepot_console", cookie, path="/ui")
        assert replay.get("/ui/keys").status_code == 303


def test_a_forged_cookie_is_refused(console_gateway: Server, session: httpx.Client) -> None:
    expires, nonce, signature = session.cookies["entrepot_console"].split(".")
    with httpx.Client(base_url=console_gateway.url) as client:
        for value in (
            f"{int(expires) + 3600}.{nonce}.{signature}",
            f"{expires}.{nonce}x.{signature}",
            f"{expires}.{nonce}.{'0' * len(signature)}",
        ):
            client.cookies.set("entrepot_console", value, path="/ui")
            assert client.get("/ui/keys").status_code == 303


def test_pages_load_nothing_from_elsewhere(console_gateway: Server, session: httpx.Client) -> None:
    login = httpx.get(console_gateway.url + "/ui/login")
    for response in (session.get("/ui/keys"), session.get("/ui/models"), login):
        assert response.status_code == 200
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert "http://" not in response.text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in response.text


def test_disabled_without_an_admin_key(tmp_path: Path, fake_openai: Server) -> None:
    """As the admin API: no admin key, no console, on loopback too."""
    gateway = start_console_gateway(tmp_path, fake_openai, admin_key="")
    try:
        with httpx.Client(base_url=gateway.url) as client:
            page = client.get("/ui")
            assert page.status_code == 403 and "ENTREPOT_ADMIN_KEY" in page.text
            assert client.get("/ui/keys").status_code == 403
            login = client.post("/ui/login", data={"admin_key": ""})
            assert login.status_code == 403
    finally:
        gateway.stop()


def _outside_address() -> str | None:
    """An address of this machine other than loopback, if it has one."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def test_off_loopback_the_same_rules_hold(tmp_path: Path, fake_openai: Server) -> None:
    """Bound beyond loopback (which needs the admin key), the console asks for the same login,
    and a client there cannot claim TLS with X-Forwarded-Proto (trusted from loopback only)."""
    address = _outside_address()
    if address is None:
        pytest.skip("this machine has no address besides loopback")
    gateway = start_console_gateway(tmp_path, fake_openai, options=["--host", "0.0.0.0"])
    url = gateway.url.replace("127.0.0.1", address)
    try:
        with httpx.Client(base_url=url, headers={"x-forwarded-proto": "https"}) as client:
            assert client.get("/ui/keys").status_code == 303
            assert log_in(client, "wrong").status_code == 401
            response = log_in(client)
            assert response.status_code == 303
            assert "secure" not in response.headers["set-cookie"].lower()
            assert client.get("/ui/keys").status_code == 200
    finally:
        gateway.stop()
