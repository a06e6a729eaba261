"""A gateway in front of the fake OpenAI upstream only (no local model), with keys required and
the admin key set: quick to start and small in memory, so hostile input, fuzzing and access
checks see the gateway's own behaviour and its own footprint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ADMIN_KEY, UPSTREAM_KEY, Server, create_key, fake_model, start_gateway

ECHO = "fake/echo"
OTHER = "fake/other"
EMBEDDER = "fake/embedder"


def secure_config(fake_openai: Server, **server: Any) -> dict[str, Any]:
    def remote(alias: str, target: str) -> dict[str, Any]:
        return fake_model(fake_openai, alias, target, jurisdiction="local")

    return {
        "server": {"require_client_keys": True, **server},
        "store": {"ledger_flush_seconds": 0.05},
        "default_route": {"max_attempts": 1},
        "models": [
            remote(ECHO, "echo-model"),
            remote(OTHER, "echo-model"),
            remote(EMBEDDER, "text-embedding-3-small"),
        ],
    }


GATEWAY_ENV = {"ENTREPOT_ADMIN_KEY": ADMIN_KEY, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY}


@pytest.fixture(scope="session")
def secure_gateway(
    tmp_path_factory: pytest.TempPathFactory, fake_openai: Server
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("secure")
    server = start_gateway(tmp, "secure", secure_config(fake_openai), GATEWAY_ENV)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def secure_key(secure_gateway: Server) -> str:
    return create_key(secure_gateway, "security-tests")
