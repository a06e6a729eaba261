"""`POST /v1/messages/count_tokens`: counted by the gateway itself — with the local model's own
tokenizer for a local model, else by the gateway's documented estimate — never sent upstream,
never billed; authenticated and checked against the key's allow-list like any request."""

from __future__ import annotations

import sqlite3
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import MessageTokensCount

from entrepot.config import BUNDLED_TARGET
from entrepot.providers.local_generation import LocalModel, resolve_weights
from tests.api.test_messages import WEATHER_TOOL
from tests.conftest import LOCAL, Server, create_key, usage_record

HELLO: list[Any] = [{"role": "user", "content": "hello there"}]
# The gateway's template allowance per message (see ledger/estimate.py).
PER_MESSAGE = 4


@pytest.fixture(scope="module")
def claude(gateway: Server, client_key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=client_key, max_retries=0)


@pytest.fixture(scope="module")
def tokenizer() -> LocalModel:
    return LocalModel(resolve_weights(BUNDLED_TARGET), n_ctx=512, n_threads=1, embedding=False)


def counted(claude: anthropic.Anthropic, **request: Any) -> int:
    raw = claude.messages.with_raw_response.count_tokens(**request)
    body = raw.http_response.json()
    assert set(body) == {"input_tokens"}
    count = MessageTokensCount.model_validate(body)
    assert count == raw.parse()
    return count.input_tokens


def test_the_local_model_counts_with_its_tokenizer(
    claude: anthropic.Anthropic, tokenizer: LocalModel
) -> None:
    system = "You are terse."
    tokens = counted(claude, model=LOCAL, system=system, messages=HELLO)
    expected = tokenizer.count_tokens(system) + tokenizer.count_tokens("hello there")
    assert tokens == expected + 2 * PER_MESSAGE


def test_other_models_get_the_documented_estimate(
    claude: anthropic.Anthropic, fake_anthropic: Server
) -> None:
    before = httpx.get(fake_anthropic.url + "/received").json()
    # A quarter of the bytes of "user" and "hello there", rounded up, and the allowance.
    assert counted(claude, model="fake/claude", messages=HELLO) == 4 + PER_MESSAGE
    assert counted(claude, model="fake/echo", messages=HELLO) == 4 + PER_MESSAGE
    with_tools = counted(claude, model="fake/claude", messages=HELLO, tools=[WEATHER_TOOL])
    assert with_tools > 4 + PER_MESSAGE
    assert httpx.get(fake_anthropic.url + "/received").json() == before  # never sent


def test_a_whole_create_body_may_be_counted(gateway: Server, client_key: str) -> None:
    """Clients often count the body they are about to send, `max_tokens` and all."""
    body = {"model": "fake/echo", "max_tokens": 10, "stream": True, "messages": HELLO}
    response = httpx.post(
        gateway.url + "/v1/messages/count_tokens", json=body, headers={"x-api-key": client_key}
    )
    assert response.json() == {"input_tokens": 4 + PER_MESSAGE}


def test_counting_is_not_recorded(
    gateway: Server, claude: anthropic.Anthropic, client_key: str
) -> None:
    def rows() -> int:
        assert gateway.data_dir is not None
        with sqlite3.connect(gateway.data_dir / "entrepot.db") as db:
            count: int = db.execute("SELECT count(*) FROM usage_records").fetchone()[0]
        return count

    raw = claude.messages.with_raw_response.create(model="fake/echo", max_tokens=5, messages=HELLO)
    usage_record(gateway, raw.headers["x-request-id"])
    before = rows()
    counted(claude, model="fake/echo", messages=HELLO)
    raw = claude.messages.with_raw_response.create(model="fake/echo", max_tokens=5, messages=HELLO)
    usage_record(gateway, raw.headers["x-request-id"])  # written after any count would be
    assert rows() == before + 1


def test_refusals(gateway: Server, client_key: str) -> None:
    narrow = create_key(gateway, "count-narrow", allowed_models=["fake/echo"])
    url = gateway.url + "/v1/messages/count_tokens"
    cases: list[tuple[dict[str, str], Any, int, str]] = [
        ({}, {"model": "fake/echo", "messages": HELLO}, 401, "authentication_error"),
        ({"x-api-key": narrow}, {"model": LOCAL, "messages": HELLO}, 403, "permission_error"),
        ({"x-api-key": client_key}, {"model": "nope", "messages": HELLO}, 404, "not_found_error"),
        ({"x-api-key": client_key}, {"model": "fake/echo"}, 400, "invalid_request_error"),
    ]
    for headers, body, status, kind in cases:
        response = httpx.post(url, json=body, headers=headers)
        assert response.status_code == status, response.text
        assert response.json()["type"] == "error"
        assert response.json()["error"]["type"] == kind
    claude = anthropic.Anthropic(base_url=gateway.url, api_key=narrow, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError):
        claude.messages.count_tokens(model=LOCAL, messages=HELLO)
