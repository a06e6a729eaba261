"""Every streamed token is billed, however the stream ends: a client that leaves mid-answer, an
upstream that fails mid-way, and an upstream that never reports usage — through a real gateway,
with the official SDK, against the fake upstream (whose token counts are word counts).

Prices are 1000 per million input tokens and 2000 per million output tokens: each prompt token
costs 1_000_000 nanos and each completion token 2_000_000. Estimates follow `ledger/estimate.py`:
a quarter of the UTF-8 bytes rounded up, at least one token per chunk that carried text, and 4
tokens per chat message."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.conftest import ADMIN_KEY, UPSTREAM_KEY, Server, create_key, fake_model, start_gateway
from tests.conftest import usage_record as ledger_row

PRICE = {"input_per_1m": "1000", "output_per_1m": "2000", "currency": "USD", "as_of": "2026-11-01"}
IN, OUT = 1_000_000, 2_000_000
EIGHT_WORDS = "one two three four five six seven eight"


@pytest.fixture(scope="module")
def billing_gateway(
    tmp_path_factory: pytest.TempPathFactory, fake_openai: Server
) -> Iterator[Server]:
    def model(alias: str, target: str) -> dict[str, Any]:
        return fake_model(fake_openai, alias, target, price=PRICE, max_output_tokens=50)

    config = {
        "server": {"require_client_keys": True},
        "store": {"ledger_flush_seconds": 0.05},
        "default_route": {"max_attempts": 1},
        "breaker": {"failure_threshold": 1000},
        "models": [
            model("fake/slow", "slow-stream"),
            model("fake/slow-drop", "slow-stream-drop"),
            model("fake/midstream", "midstream-drop"),
            model("fake/no-usage", "no-usage"),
        ],
    }
    env = {"ENTREPOT_ADMIN_KEY": ADMIN_KEY, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
    server = start_gateway(tmp_path_factory.mktemp("billing"), "billing", config, env)
    yield server
    server.stop()


def sdk(gateway: Server, name: str, **key: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.url + "/v1",
        api_key=create_key(gateway, name, **key),
        max_retries=0,
        timeout=30,
    )


def leave_after_first_word(client: openai.OpenAI, model: str) -> str:
    """Start a stream, read until the first word of the answer, and hang up; the request id."""
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": EIGHT_WORDS}], stream=True
    )
    stream = raw.parse()
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()
    return str(raw.headers["x-request-id"])


def billed(row: dict[str, Any]) -> tuple[int, int, int | None, int, int]:
    return (
        row["prompt_tokens"],
        row["completion_tokens"],
        row["cost_nanos"],
        row["usage_reported"],
        row.get("usage_estimated", 0),  # a column older schemas lack
    )


def test_an_abandoned_stream_is_billed_from_the_usage_report_the_gateway_drained(
    billing_gateway: Server,
) -> None:
    client = sdk(billing_gateway, "abandon")
    row = ledger_row(billing_gateway, leave_after_first_word(client, "fake/slow"))
    # The whole answer, "echo: one ... eight": 8 prompt words, 9 completion words, as reported.
    assert billed(row) == (8, 9, 8 * IN + 9 * OUT, 1, 0)
    assert (row["status"], row["error_type"]) == (499, "client_closed")


def test_the_budget_is_settled_once_with_the_drained_cost(billing_gateway: Server) -> None:
    client = sdk(billing_gateway, "abandon-budget", budget={"amount": "0.5", "period": "month"})
    row = ledger_row(billing_gateway, leave_after_first_word(client, "fake/slow"))
    assert row["cost_nanos"] == 26_000_000
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(
            model="fake/slow", messages=[{"role": "user", "content": "hi"}], max_tokens=1000
        )
    assert refused.value.status_code == 402
    message = refused.value.message
    # The drained cost is spent, and nothing is left reserved by the abandoned request.
    assert "has used 0.026000 of its 0.500000 USD" in message
    assert "reserved" not in message


def test_an_abandoned_stream_whose_upstream_then_fails_is_billed_by_the_gateways_count(
    billing_gateway: Server,
) -> None:
    client = sdk(billing_gateway, "abandon-drop")
    row = ledger_row(billing_gateway, leave_after_first_word(client, "fake/slow-drop"))
    # Counted: "echo:", " one", " two", " three" = 4 chunks, 19 bytes -> 5 tokens. The prompt:
    # "user" + 39 bytes of text = 43 bytes -> 11 tokens, plus 4 for the message.
    assert billed(row) == (15, 5, 15 * IN + 5 * OUT, 0, 1)


def test_a_stream_that_fails_midway_is_billed_for_what_was_generated(
    billing_gateway: Server,
) -> None:
    client = sdk(billing_gateway, "midstream")
    raw = client.chat.completions.with_raw_response.create(
        model="fake/midstream",
        messages=[{"role": "user", "content": "alpha beta gamma"}],
        stream=True,
    )
    with pytest.raises(openai.APIError):
        list(raw.parse())
    row = ledger_row(billing_gateway, raw.headers["x-request-id"])
    assert row["status"] == 502
    # "echo:", " alpha" = 2 chunks, 11 bytes -> 3 tokens; prompt 4 + 16 bytes -> 5 + 4 tokens.
    assert billed(row) == (9, 3, 9 * IN + 3 * OUT, 0, 1)


def test_a_stream_without_usage_is_billed_by_the_gateways_count(billing_gateway: Server) -> None:
    client = sdk(billing_gateway, "no-usage-stream")
    raw = client.chat.completions.with_raw_response.create(
        model="fake/no-usage",
        messages=[{"role": "user", "content": "alpha beta"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "echo: alpha beta"
    row = ledger_row(billing_gateway, raw.headers["x-request-id"])
    assert row["status"] == 200
    # 3 chunks, 16 bytes -> 4 tokens; prompt 4 + 10 bytes -> 4 + 4 tokens.
    assert billed(row) == (8, 4, 8 * IN + 4 * OUT, 0, 1)


def test_an_answer_without_usage_is_billed_by_the_gateways_count(billing_gateway: Server) -> None:
    client = sdk(billing_gateway, "no-usage")
    raw = client.chat.completions.with_raw_response.create(
        model="fake/no-usage", messages=[{"role": "user", "content": "alpha beta"}]
    )
    assert raw.parse().choices[0].message.content == "echo: alpha beta"
    row = ledger_row(billing_gateway, raw.headers["x-request-id"])
    assert billed(row) == (8, 4, 8 * IN + 4 * OUT, 0, 1)
