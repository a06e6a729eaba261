"""`entrepot serve`: a bind beyond loopback needs an admin key and client keys; an allowed
one reaches uvicorn with the configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn

import entrepot.shadow.serve
from entrepot.cli import check_bind
from entrepot.config import load_config
from entrepot.exceptions import ConfigError
from tests.cli.invoke import ok, run, write

pytestmark = pytest.mark.usefixtures("cli_env")


@pytest.mark.usefixtures("no_server")
def test_serve_refuses_public_bind_without_admin_key() -> None:
    result = run("serve", "--host", "0.0.0.0")
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "refusing to bind 0.0.0.0" in result.output
    assert "$ENTREPOT_ADMIN_KEY" in result.output
    assert "require_client_keys: true" in result.output


@pytest.mark.usefixtures("no_server")
def test_serve_refuses_public_bind_with_admin_key_but_open_access(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENTREPOT_ADMIN_KEY", "admin-secret")
    result = run("serve", "--host", "192.168.1.5")
    assert result.exit_code == 2, result.output
    assert "refusing to bind 192.168.1.5" in result.output


def test_serve_allowed_public_bind_reaches_uvicorn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENTREPOT_ADMIN_KEY", "admin-secret")
    config = write(tmp_path, "server:\n  require_client_keys: true\n")
    calls: dict[str, Any] = {}
    monkeypatch.setattr(entrepot.shadow.serve, "gateway_app", lambda config: ("app", config))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.update(app=app, **kw))
    ok("serve", "--config", str(config), "--host", "0.0.0.0", "--port", "8123")
    assert calls["host"] == "0.0.0.0"
    assert calls["port"] == 8123
    assert calls["app"][1].server.require_client_keys is True


def test_check_bind_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    open_config = load_config()
    locked = load_config(write(tmp_path, "server:\n  require_client_keys: true\n"))
    for host in ("127.0.0.1", "localhost", "::1"):
        check_bind(open_config, host)  # loopback needs nothing
    with pytest.raises(ConfigError, match=r"refusing to bind 0\.0\.0\.0"):
        check_bind(locked, "0.0.0.0")  # no admin key
    monkeypatch.setenv("ENTREPOT_ADMIN_KEY", "")
    with pytest.raises(ConfigError):
        check_bind(locked, "0.0.0.0")  # an empty admin key is no key
    monkeypatch.setenv("ENTREPOT_ADMIN_KEY", "admin-secret")
    with pytest.raises(ConfigError):
        check_bind(open_config, "0.0.0.0")  # admin key, but clients need no key
    check_bind(locked, "0.0.0.0")
    check_bind(locked, "::")


def test_check_bind_uses_the_configured_admin_key_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(
        write(tmp_path, "server:\n  require_client_keys: true\n  admin_key_env: MY_ADMIN\n")
    )
    monkeypatch.setenv("ENTREPOT_ADMIN_KEY", "ignored")
    with pytest.raises(ConfigError, match=r"\$MY_ADMIN"):
        check_bind(config, "10.0.0.1")
    monkeypatch.setenv("MY_ADMIN", "admin-secret")
    check_bind(config, "10.0.0.1")
