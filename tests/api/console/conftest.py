"""A gateway for the console's tests: keys required, an admin key, models on the fake OpenAI
upstream priced by token and by hardware, a team with a budget; and a logged-in HTTP client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_KEY, UPSTREAM_KEY, Server, fake_model, start_gateway

PRICE = {"input_per_1m": "2.00", "output_per_1m": "8.00", "currency": "USD", "as_of": "2026-11-01"}


def console_config(fake_openai: Server) -> dict[str, object]:
    return {
        "server": {"require_client_keys": True},
        "store": {"ledger_flush_seconds": 0.05},
        "teams": {"research": {"limits": {"budget": {"amount": "50", "period": "month"}}}},
        "models": [
            fake_model(fake_openai, "fake/echo", "echo-model", price=PRICE, licence="MIT"),
            fake_model(fake_openai, "fake/cn", "echo-model", jurisdiction="CN", price=PRICE),
            # A server on this machine, priced by the hardware it occupies (its CPU cores).
            fake_model(
                fake_openai, "local/echo", "echo-model", jurisdiction="local", hardware="cpu"
            ),
        ],
    }


def start_console_gateway(
    tmp: Path, fake_openai: Server, admin_key: str = ADMIN_KEY, options: list[str] | None = None
) -> Server:
    env = {"ENTREPOT_ADMIN_KEY": admin_key, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
    return start_gateway(tmp, "console", console_config(fake_openai), env, options)


@pytest.fixture(scope="session")
def console_gateway(
    tmp_path_factory: pytest.TempPathFactory, fake_openai: Server
) -> Iterator[Server]:
    server = start_console_gateway(tmp_path_factory.mktemp("console"), fake_openai)
    yield server
    server.stop()


def hidden(html: str, name: str) -> str:
    """The value of a form's hidden field."""
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no field {name} in the page"
    return found.group(1)


def log_in(client: httpx.Client, admin_key: str = ADMIN_KEY) -> httpx.Response:
    form = client.get("/ui/login")
    token = hidden(form.text, "login_token")
    return client.post("/ui/login", data={"login_token": token, "admin_key": admin_key})


@pytest.fixture
def session(console_gateway: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=console_gateway.url, timeout=30) as client:
        assert log_in(client).status_code == 303
        yield client
