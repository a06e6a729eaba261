"""A request cancelled before its answer (an interrupted bench or audit, a server stopping under
it) is recorded as cut off (499 `client_closed`), never as answered — and billed: the upstream
had the request and may have generated, so the call is billed as a generation of unknown length
(the prompt by the gateway's count and the whole output cap it was sent), flagged estimated.

Prices are 1000 per million input tokens and 2000 per million output tokens, so a prompt token
costs 1_000_000 nanos and a completion token 2_000_000. The prompt "hello" from a user is 9 bytes
(3 tokens) plus 4 for the message: 7 tokens; the output cap is the deployment's 50."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, select

from entrepot.api.endpoints.chat import CHAT
from entrepot.api.gateway import Gateway
from entrepot.api.in_process import call, in_process_exchange
from entrepot.config import Config, StoreConfig
from entrepot.exceptions import ClientClosedError
from entrepot.store.db import open_engine
from entrepot.store.tables import usage_records
from tests.api import test_host_filter_billing as filtering
from tests.api.test_streaming_billing import billed
from tests.conftest import UPSTREAM_KEY, Server, fake_model

PRICE = {"input_per_1m": "1000", "output_per_1m": "2000", "currency": "USD", "as_of": "2026-11-01"}
HELLO = [{"role": "user", "content": "hello"}]
CUT_OFF = (7, 50, 7 * 1_000_000 + 50 * 2_000_000, 0, 1)  # prompt, cap, cost, reported, estimated


def cancelled(
    tmp_path: Path,
    fake_openai: Server,
    monkeypatch: pytest.MonkeyPatch,
    start: Callable[[Gateway], Awaitable[Any]],
    **model: Any,
) -> list[dict[str, Any]]:
    """The ledger after `start` is cancelled half a second in, against an upstream that takes
    five seconds to answer."""
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", UPSTREAM_KEY)
    url = f"sqlite:///{tmp_path}/t.db"
    slow = fake_model(fake_openai, "fake/slow", "sleep-5000", **model)
    config = Config.model_validate({"store": {"url": url}, "models": [slow]})
    engine = open_engine(StoreConfig(url=url))

    asyncio.run(cancel_half_a_second_in(Gateway(config, engine), start))  # the upstream has it
    return ledger(engine)


async def cancel_half_a_second_in(
    gateway: Gateway, start: Callable[[Gateway], Awaitable[Any]]
) -> None:
    await gateway.start()
    task = asyncio.create_task(start(gateway))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await gateway.stop()


def ledger(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(usage_records)).mappings().all()]


def ask(gateway: Gateway) -> Awaitable[Any]:
    body = {"model": "fake/slow", "messages": HELLO}
    return call(gateway, CHAT, body, key=None, principal="tests", record_as="bench:chat")


async def stream(gateway: Gateway) -> None:
    """A streamed request as the HTTP door drives it, cancelled before its first chunk."""
    exchange = in_process_exchange(
        gateway, CHAT, key=None, principal="tests", record_as="bench:chat"
    )
    body = {"model": "fake/slow", "messages": HELLO, "stream": True}
    try:
        await exchange.prepare(body, len(orjson.dumps(body)), None, None)
        await exchange.stream()
    except asyncio.CancelledError:
        exchange.failed(ClientClosedError("cancelled"))
        raise
    finally:
        await exchange.finish()


def test_an_in_process_call_cancelled_mid_generation_is_recorded_as_cut_off(
    tmp_path: Path, fake_openai: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = cancelled(tmp_path, fake_openai, monkeypatch, ask)
    assert [(r["status"], r["error_type"], r["endpoint"]) for r in rows] == [
        (499, "client_closed", "bench:chat")
    ]


def test_a_call_cancelled_mid_generation_is_billed_as_a_generation_of_unknown_length(
    tmp_path: Path, fake_openai: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = cancelled(tmp_path, fake_openai, monkeypatch, ask, price=PRICE, max_output_tokens=50)
    assert [(r["status"], billed(r)) for r in rows] == [(499, CUT_OFF)]


def test_a_stream_cancelled_before_its_first_chunk_is_billed_too(
    tmp_path: Path, fake_openai: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = cancelled(tmp_path, fake_openai, monkeypatch, stream, price=PRICE, max_output_tokens=50)
    assert [(r["status"], billed(r)) for r in rows] == [(499, CUT_OFF)]


def test_a_refusal_kept_while_routing_waits_to_replace_it_is_billed_when_cancelled(
    tmp_path: Path,
) -> None:
    """On a route with `on_refusal: fallback`, a refused answer is kept while routing waits out
    its backoff before the next deployment; cancelled then, the refusal it paid for is billed."""
    url = f"sqlite:///{tmp_path}/t.db"
    engine = open_engine(StoreConfig(url=url))

    async def main() -> None:
        async with filtering.upstream() as base:
            route = {"on_refusal": "fallback", "backoff_seconds": 30, "strategy": "fallback"}
            models = [
                filtering.model(base, "guarded", "refuses", "guarded-refuses"),
                filtering.model(base, "guarded", "answers", "guarded-answers"),
            ]
            config = Config.model_validate(
                {"store": {"url": url}, "routes": {"guarded": route}, "models": models}
            )
            body = {"model": "guarded", "messages": HELLO}
            # cancelled once refused, while waiting to try the next deployment
            await cancel_half_a_second_in(
                Gateway(config, engine),
                lambda gateway: call(
                    gateway, CHAT, body, key=None, principal="tests", record_as=None
                ),
            )

    asyncio.run(main())
    rows = ledger(engine)
    # as the refusing upstream reported: 1 prompt token, 9 words
    assert [(r["status"], billed(r)) for r in rows] == [(499, (1, 9, 19_000_000, 1, 0))]
