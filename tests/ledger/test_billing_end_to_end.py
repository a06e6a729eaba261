"""Budgets bound what is spent, through a real gateway with the official SDK: the output cap the
gateway reserved for is the one the upstream is sent, in the field it honours; a cost in another
currency is converted at the configured rate or refused, and the counter after a restart agrees
with the ledger; a local model's machine time is reserved like any other cost.

Prices are 1000 per million input tokens and 2000 per million output tokens, so a prompt token
costs 1_000_000 nanos and a completion token 2_000_000; the fake upstream counts words."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import (
    ADMIN_KEY,
    LOCAL,
    UPSTREAM_KEY,
    Server,
    create_key,
    fake_model,
    start_gateway,
    usage_record,
)

AS_OF = "2026-11-01"
PRICE = {"input_per_1m": "1000", "output_per_1m": "2000", "currency": "USD", "as_of": AS_OF}
IN, OUT = 1_000_000, 2_000_000
RATES = {"as_of": AS_OF, "base": "USD", "rates": {"EUR": "1.08"}}
HELLO = [{"role": "user", "content": "alpha beta"}]


def config(fake: Server) -> dict[str, Any]:
    def priced(alias: str, target: str, currency: str = "USD", **fields: Any) -> dict[str, Any]:
        return fake_model(fake, alias, target, price={**PRICE, "currency": currency}, **fields)

    return {
        "server": {"require_client_keys": True},
        "store": {"ledger_flush_seconds": 0.05},
        "default_route": {"max_attempts": 1},
        "currency_rates": RATES,
        "models": [
            priced("fake/capless", "max-tokens-only", max_output_tokens=10),
            priced(
                "fake/o-series",
                "max-tokens-only",
                name="o-series",
                output_cap_field="max_completion_tokens",
            ),
            priced("fake/reasoner", "reasoner"),
            priced("fake/euro", "echo-model", currency="EUR"),
            priced("fake/franc", "echo-model", currency="CHF", name="franc"),
        ],
    }


ENV = {"ENTREPOT_ADMIN_KEY": ADMIN_KEY, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY}


@pytest.fixture(scope="module")
def cap_gateway(tmp_path_factory: pytest.TempPathFactory, fake_openai: Server) -> Iterator[Server]:
    server = start_gateway(tmp_path_factory.mktemp("caps"), "caps", config(fake_openai), ENV)
    yield server
    server.stop()


def sdk(gateway: Server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=60)


def sent_upstream(fake: Server) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(fake.url + "/last-request").json()
    return body


def spent(gateway: Server, key_name: str) -> int:
    assert gateway.data_dir is not None
    with sqlite3.connect(gateway.data_dir / "entrepot.db") as db:
        (total,) = db.execute(
            "SELECT COALESCE(SUM(cost_nanos), 0) FROM usage_records WHERE key_name = ?",
            (key_name,),
        ).fetchone()
    return int(total)


def test_the_client_cap_is_sent_as_max_tokens_to_an_upstream_that_ignores_the_other_field(
    cap_gateway: Server, fake_openai: Server
) -> None:
    client = sdk(cap_gateway, create_key(cap_gateway, "langchain-like"))
    raw = client.chat.completions.with_raw_response.create(
        model="fake/capless", messages=HELLO, max_completion_tokens=5
    )
    assert raw.parse().choices[0].message.content == "word word word word word"
    sent = sent_upstream(fake_openai)
    assert sent["max_tokens"] == 5 and "max_completion_tokens" not in sent
    row = usage_record(cap_gateway, raw.headers["x-request-id"])
    assert (row["completion_tokens"], row["cost_nanos"]) == (5, 2 * IN + 5 * OUT)


def test_without_a_client_cap_the_deployments_cap_is_sent(
    cap_gateway: Server, fake_openai: Server
) -> None:
    client = sdk(cap_gateway, create_key(cap_gateway, "no-cap"))
    answer = client.chat.completions.create(model="fake/capless", messages=HELLO)
    assert answer.usage is not None and answer.usage.completion_tokens == 10
    assert sent_upstream(fake_openai)["max_tokens"] == 10


def test_an_upstream_that_needs_max_completion_tokens_is_sent_only_that(
    cap_gateway: Server, fake_openai: Server
) -> None:
    client = sdk(cap_gateway, create_key(cap_gateway, "o-series-user"))
    client.chat.completions.create(model="fake/o-series", messages=HELLO, max_tokens=7)
    sent = sent_upstream(fake_openai)
    assert sent["max_completion_tokens"] == 7 and "max_tokens" not in sent


def test_a_tiny_budget_is_not_overshot_by_an_upstream_that_ignores_max_completion_tokens(
    cap_gateway: Server,
) -> None:
    """Reserved: the body's bytes as prompt plus 5 output tokens (~0.12). Without the cap sent,
    the upstream writes 200 words (0.40) on the first request alone."""
    budget = 200_000_000
    key = create_key(cap_gateway, "tiny", budget={"amount": "0.2", "period": "month"})
    client = sdk(cap_gateway, key)
    answered = 0
    for _ in range(30):
        try:
            raw = client.chat.completions.with_raw_response.create(
                model="fake/capless", messages=HELLO, max_completion_tokens=5
            )
        except openai.APIStatusError as refused:
            assert refused.status_code == 402
            break
        usage_record(cap_gateway, raw.headers["x-request-id"])
        answered += 1
    assert answered > 0
    assert 0 < spent(cap_gateway, "tiny") <= budget


def test_concurrent_requests_never_overshoot_a_tiny_budget(cap_gateway: Server) -> None:
    """Sixteen requests at once, half streamed, on a budget that holds about one: each is
    reserved for its worst case before it is sent, so those admitted fit in the budget."""
    budget = 200_000_000
    key = create_key(cap_gateway, "tiny-concurrent", budget={"amount": "0.2", "period": "month"})
    client = sdk(cap_gateway, key)

    def one(i: int) -> str | None:
        try:
            raw = client.chat.completions.with_raw_response.create(
                model="fake/capless", messages=HELLO, max_completion_tokens=5, stream=i % 2 == 1
            )
        except openai.APIStatusError as refused:
            assert refused.status_code in (402, 429)
            return None
        if i % 2:
            list(raw.parse())
        return str(raw.headers["x-request-id"])

    with ThreadPoolExecutor(16) as pool:
        admitted = [r for r in pool.map(one, range(16)) if r is not None]
    for request_id in admitted:
        usage_record(cap_gateway, request_id)
    assert admitted
    assert 0 < spent(cap_gateway, "tiny-concurrent") <= budget


def test_reasoning_tokens_are_billed_as_output(cap_gateway: Server) -> None:
    client = sdk(cap_gateway, create_key(cap_gateway, "thinker"))
    raw = client.chat.completions.with_raw_response.create(model="fake/reasoner", messages=HELLO)
    row = usage_record(cap_gateway, raw.headers["x-request-id"])
    # "echo: alpha beta" and "let me think": 6 completion tokens, 3 of them reasoning.
    assert (row["completion_tokens"], row["reasoning_tokens"]) == (6, 3)
    assert row["cost_nanos"] == 2 * IN + 6 * OUT


def budget_refusal(client: openai.OpenAI, model: str) -> str:
    """The message of a request too large for any budget: it states what the budget has used."""
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model=model, messages=HELLO, max_tokens=10_000_000)
    assert refused.value.status_code == 402
    return refused.value.message


def test_a_cost_without_a_rate_into_the_budgets_currency_is_refused(cap_gateway: Server) -> None:
    with_budget = create_key(cap_gateway, "franc-budget", budget={"amount": "5"})
    with pytest.raises(openai.APIStatusError) as refused:
        sdk(cap_gateway, with_budget).chat.completions.create(model="fake/franc", messages=HELLO)
    assert refused.value.status_code == 500
    body = refused.value.body
    assert isinstance(body, dict) and body["code"] == "currency_rate_missing"
    assert "CHF" in refused.value.message and "USD" in refused.value.message
    # Without a budget there is nothing to convert into: the request runs.
    no_budget = sdk(cap_gateway, create_key(cap_gateway, "franc-free"))
    assert no_budget.chat.completions.create(model="fake/franc", messages=HELLO).choices


def test_a_cost_in_another_currency_is_converted_and_agrees_after_a_restart(
    tmp_path: Path, fake_openai: Server
) -> None:
    first = start_gateway(tmp_path, "euro", config(fake_openai), ENV)
    try:
        key = create_key(first, "euro-spender", budget={"amount": "50", "period": "month"})
        client = sdk(first, key)
        raw = client.chat.completions.with_raw_response.create(model="fake/euro", messages=HELLO)
        row = usage_record(first, raw.headers["x-request-id"])
        # "alpha beta" -> "echo: alpha beta": 2 + 3 tokens, in EUR; 1 EUR = 1.08 USD.
        assert (row["cost_nanos"], row["currency"]) == (2 * IN + 3 * OUT, "EUR")
        used = "has used 0.008640 of its 50.000000 USD monthly budget"
        assert used in budget_refusal(client, "fake/euro")
    finally:
        first.stop()
    # Same database, a fresh process: the budget is seeded from the ledger, converted alike.
    restarted = start_gateway(tmp_path, "euro", config(fake_openai), ENV)
    try:
        assert used in budget_refusal(sdk(restarted, key), "fake/euro")
    finally:
        restarted.stop()


def test_a_local_models_machine_time_is_reserved_against_the_budget(gateway: Server) -> None:
    """The bundled model costs 0.36 an hour; a request may hold it for its queue timeout (120 s)
    plus its total timeout (600 s): 0.072 reserved, so a 0.05 budget cannot start one."""
    key = create_key(gateway, "local-budget", budget={"amount": "0.05", "period": "month"})
    with pytest.raises(openai.APIStatusError) as refused:
        sdk(gateway, key).chat.completions.create(model=LOCAL, messages=HELLO, max_tokens=1)
    assert refused.value.status_code == 402
    assert "may cost up to 0.072000" in refused.value.message


def test_a_local_models_machine_time_is_charged_to_the_budget(gateway: Server) -> None:
    key = create_key(gateway, "local-spender", budget={"amount": "1", "period": "month"})
    client = sdk(gateway, key)
    raw = client.chat.completions.with_raw_response.create(
        model=LOCAL, messages=HELLO, max_tokens=2
    )
    row = usage_record(gateway, raw.headers["x-request-id"])
    assert row["currency"] == "USD" and row["cost_nanos"] > 0
    message = budget_refusal(client, "fake/echo")
    assert "reserved" not in message
    assert f"has used {Decimal(row['cost_nanos']) / 10**9:.6f} of its 1.000000 USD" in message
