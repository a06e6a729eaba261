"""A host's content filter is billed for what its model generated, where that can be known.

What upstreams report: a filter that stops the output on a 200 says `finish_reason:
content_filter` and reports its usage (OpenAI, Azure OpenAI), billed as any answer; a filter
that rejects the prompt answers a 400 before anything is generated (Azure OpenAI's
`content_filter` "…due to the prompt triggering…", DeepSeek's "Content Exists Risk", DashScope's
"Input data may contain inappropriate content") and reports no usage — nothing is billed; a
filter that throws away a generated answer says so in an error without usage (DashScope's
"Output data may contain inappropriate content"), billed as a generation of unknown length: the
prompt by the gateway's count and the whole output cap, flagged estimated.

The upstream runs in the test's own event loop, the gateway in process. Prices are 1000 and 2000
per million tokens (1_000_000 and 2_000_000 nanos a token); the prompt "hello" from a user is 7
tokens by the gateway's count, and the output cap is 50."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from sqlalchemy import select

from entrepot.api.endpoints.chat import CHAT
from entrepot.api.gateway import Gateway
from entrepot.api.in_process import call
from entrepot.config import Config, StoreConfig
from entrepot.exceptions import GatewayError
from entrepot.store.db import open_engine
from entrepot.store.tables import usage_records

PRICE = {"input_per_1m": "1000", "output_per_1m": "2000", "currency": "USD", "as_of": "2026-11-01"}
IN, OUT = 1_000_000, 2_000_000
HELLO = [{"role": "user", "content": "hello"}]
ERRORS = {
    "output-filtered": "Output data may contain inappropriate content.",
    "input-filtered": "Input data may contain inappropriate content.",
    "azure-prompt": "The response was filtered due to the prompt triggering Azure OpenAI's"
    " content management policy.",
    "deepseek": "Content Exists Risk",
}
ANSWER = "Paris is the capital."  # 4 words: the fake counts words
REFUSAL = "I'm sorry, but I can't help with that request."  # 9 words


async def chat(request: web.Request) -> web.Response:
    body = await request.json()
    model = body["model"]
    if model in ERRORS:
        error = {"error": {"message": ERRORS[model], "code": "data_inspection_failed"}}
        return web.json_response(error, status=400)
    finish = "content_filter" if model == "filtered-200" else "stop"
    text = {"filtered-200": "Here is", "refuses": REFUSAL}.get(model, ANSWER)
    answer = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split()), "total_tokens": 3},
    }
    return web.json_response(answer, dumps=lambda o: orjson.dumps(o).decode())


@asynccontextmanager
async def upstream() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


def model(url: str, alias: str, target: str, name: str | None = None) -> dict[str, Any]:
    return {
        "alias": alias,
        "name": name or target,
        "provider": "openai_compatible",
        "target": target,
        "base_url": url,
        "jurisdiction": "US",
        "price": PRICE,
        "max_output_tokens": 50,
    }


def ledger(tmp_path: Path, aliases: list[str], routes: dict[str, Any] | None = None) -> list[Any]:
    """Ask each alias once in process; the ledger's rows in the same order."""
    url = f"sqlite:///{tmp_path}/t.db"
    engine = open_engine(StoreConfig(url=url))

    async def main() -> None:
        async with upstream() as base:
            models = [model(base, target, target) for target in [*ERRORS, "filtered-200"]]
            models += [
                model(base, "guarded", "output-filtered", "guarded-filtered"),
                model(base, "guarded", "answers", "guarded-answers"),
            ]
            config = Config.model_validate(
                {
                    "store": {"url": url, "ledger_flush_seconds": 0.05},
                    "default_route": {"max_attempts": 2, "backoff_seconds": 0},
                    "routes": routes or {},
                    "models": models,
                }
            )
            gateway = Gateway(config, engine)
            await gateway.start()
            for alias in aliases:
                body = {"model": alias, "messages": HELLO}
                with suppress(GatewayError):
                    await call(gateway, CHAT, body, key=None, principal="tests", record_as=None)
            await gateway.stop()

    asyncio.run(main())
    with engine.connect() as conn:
        rows = conn.execute(select(usage_records).order_by(usage_records.c.id)).mappings()
        return [
            (
                r["status"],
                r["prompt_tokens"],
                r["completion_tokens"],
                r["cost_nanos"],
                r["usage_estimated"],
            )
            for r in rows
        ]


def test_a_filter_that_discarded_generated_output_is_billed_as_its_cap(tmp_path: Path) -> None:
    assert ledger(tmp_path, ["output-filtered"]) == [(400, 7, 50, 7 * IN + 50 * OUT, 1)]


@pytest.mark.parametrize("target", ["input-filtered", "azure-prompt", "deepseek"])
def test_a_filter_that_rejected_the_prompt_generated_nothing(tmp_path: Path, target: str) -> None:
    assert ledger(tmp_path, [target]) == [(400, 0, 0, None, 0)]


def test_a_filter_that_stopped_the_output_on_a_200_is_billed_as_reported(tmp_path: Path) -> None:
    assert ledger(tmp_path, ["filtered-200"]) == [(200, 1, 2, 1 * IN + 2 * OUT, 0)]


def test_a_filtered_answer_replaced_by_a_fallback_is_billed_with_it(tmp_path: Path) -> None:
    routes = {"guarded": {"on_refusal": "fallback", "backoff_seconds": 0, "strategy": "fallback"}}
    filtered, answered = (7, 50, 7 * IN + 50 * OUT), (1, 4, 1 * IN + 4 * OUT)
    total = tuple(a + b for a, b in zip(filtered, answered, strict=True))
    assert ledger(tmp_path, ["guarded"], routes) == [(200, *total, 1)]
