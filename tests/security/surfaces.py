"""A gateway for the Responses and Messages surfaces under hostile input and hostile upstreams:
`fake/echo` (priced, so a wrongly billed refusal shows as a cost) and `fake/claude` on the fake
OpenAI and Anthropic upstreams, and one model per misbehaving target of each fake."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Server, create_key, fake_model, start_gateway
from tests.security.conftest import GATEWAY_ENV

ECHO = "fake/echo"
CLAUDE = "fake/claude"
ANTHROPIC_KEY = "test-anthropic-key"
PRICE = {"input_per_1m": "2.00", "output_per_1m": "8.00", "currency": "USD", "as_of": "2026-11-01"}
# Misbehaving targets, served under `hostile-openai/<target>` and `hostile-anthropic/<target>`.
OPENAI_TARGETS = (
    "tool-arguments-not-string",
    "choices-without-delta",
    "reasoning-number",
    "delta-not-object",
    "tool-calls-not-list",
)
ANTHROPIC_TARGETS = (
    "delta-unstarted-index",
    "message-delta-without-usage",
    "events-after-stop",
    "bad-content-blocks",
)


def _anthropic(fake: Server, alias: str, target: str) -> dict[str, Any]:
    return {
        "alias": alias,
        "provider": "anthropic",
        "target": target,
        "base_url": fake.url,
        "api_key_env": "FAKE_ANTHROPIC_KEY",
        "jurisdiction": "local",
        "price": PRICE,
    }


def surfaces_config(fake_openai: Server, fake_anthropic: Server) -> dict[str, Any]:
    openai = [
        fake_model(fake_openai, f"hostile-openai/{t}", t, jurisdiction="local", price=PRICE)
        for t in OPENAI_TARGETS
    ]
    anthropic = [_anthropic(fake_anthropic, f"hostile-anthropic/{t}", t) for t in ANTHROPIC_TARGETS]
    return {
        "server": {"require_client_keys": True},
        "store": {"ledger_flush_seconds": 0.05},
        "default_route": {"max_attempts": 1},
        "breaker": {"failure_threshold": 1000},
        "models": [
            fake_model(fake_openai, ECHO, "echo-model", jurisdiction="local", price=PRICE),
            _anthropic(fake_anthropic, CLAUDE, "claude-sonnet-4-5"),
            *openai,
            *anthropic,
        ],
    }


@pytest.fixture(scope="session")
def surfaces_gateway(
    tmp_path_factory: pytest.TempPathFactory, fake_openai: Server, fake_anthropic: Server
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("surfaces")
    env = {**GATEWAY_ENV, "FAKE_ANTHROPIC_KEY": ANTHROPIC_KEY}
    server = start_gateway(tmp, "surfaces", surfaces_config(fake_openai, fake_anthropic), env)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def surfaces_key(surfaces_gateway: Server) -> str:
    return create_key(surfaces_gateway, "surfaces")
