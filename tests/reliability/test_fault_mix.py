"""A thousand requests, eight at a time, one in five sent to a faulty model: every request leaves
exactly one usage record with the outcome its client saw, and once the gateway has stopped, the
ledger's tokens and costs add up to exactly what clients were given, plus what upstreams
generated unseen — nothing billed for an attempt that generated nothing, nothing billed twice, a
stream cut off mid-answer billed for the part its client received, by the gateway's own count
(`usage_estimated`), and a success that could not be read billed as its prompt plus the output cap
it was sent (`usage_estimated`).

Only faults that fail fast are mixed in (a hang would turn a thousand requests into minutes)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from entrepot.ledger.estimate import StreamTally
from tests.conftest import Server
from tests.reliability.harness import (
    AFTER_FIRST_BYTE,
    BEFORE_FIRST_BYTE,
    GENERATED_UNSEEN,
    HEALTHY,
    OUTPUT_CAP,
    expected_cost_nanos,
    ledger_rows,
    start_fault_gateway,
)

REQUESTS = 1_000
CONCURRENCY = 8
FAULT_EVERY = 5
FAULTY_REQUESTS = (
    ("solo/fail-500", False),
    ("fallback/fail-500", True),
    ("solo/rate-limited", True),
    ("fallback/rate-limited", False),
    ("solo/reset", False),
    ("fallback/reset", True),
    ("solo/malformed-json", True),
    ("fallback/malformed-json", False),
    ("solo/empty-body", False),
    ("fallback/empty-body", True),
    ("solo/midstream-drop", True),
    ("fallback/truncated-sse", True),
)


@dataclass(slots=True)
class Outcome:
    """What one client saw: `status` is None when an error event ended a stream that began
    with 200; tokens are those of the usage the client was sent, or the gateway's count of what
    a cut-off stream delivered, zero if nothing was."""

    request_id: str
    status: int | None
    error_code: str | None
    deployment: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def cost_nanos(self) -> int:
        if self.deployment is None:
            return 0
        return expected_cost_nanos(self.deployment, self.prompt_tokens, self.completion_tokens)


def planned(index: int) -> tuple[str, bool]:
    """The model and streaming mode of request `index`: every fifth meets a fault."""
    if index % FAULT_EVERY == FAULT_EVERY - 1:
        return FAULTY_REQUESTS[(index // FAULT_EVERY) % len(FAULTY_REQUESTS)]
    return HEALTHY, index % 2 == 0


@dataclass(frozen=True, slots=True)
class Expected:
    """What a request to one model must come to, for its client and in the ledger."""

    client_status: int | None
    ledger_status: int
    error_code: str | None
    deployment: str
    attempts: tuple[str, ...]


def unseen(model: str, record: dict[str, Any], outcome: Outcome) -> tuple[int, int, int]:
    """Tokens and cost of a generation its upstream made but nobody could read (no client saw
    it): the gateway's count of the prompt, and the output cap, at the first deployment's price."""
    alias, _, fault = model.partition("/")
    if fault not in GENERATED_UNSEEN:
        return 0, 0, 0
    prompt = record["prompt_tokens"] - outcome.prompt_tokens
    assert prompt > 0
    first = f"solo-{fault}" if alias == "solo" else f"{fault}-first"
    return prompt, OUTPUT_CAP, expected_cost_nanos(first, prompt, OUTPUT_CAP)


def expected(model: str) -> Expected:
    if model == HEALTHY:
        return Expected(200, 200, None, "healthy", ("ok",))
    alias, fault = model.split("/")
    if fault in AFTER_FIRST_BYTE:
        first = f"solo-{fault}" if alias == "solo" else f"{fault}-first"
        return Expected(None, 502, "bad_gateway", first, ("ok",))
    if alias == "fallback":
        return Expected(200, 200, None, f"{fault}-fallback", ("failed", "ok"))
    status, code = BEFORE_FIRST_BYTE[fault]
    return Expected(status, status, code, f"solo-{fault}", ("failed",))


async def send(client: openai.AsyncOpenAI, index: int) -> Outcome:
    model, stream = planned(index)
    text = f"request {index}" + " more" * (index % 4)
    messages: Any = [{"role": "user", "content": text}]
    try:
        if not stream:
            raw = await client.chat.completions.with_raw_response.create(
                model=model, messages=messages
            )
            usage = raw.parse().usage
            assert usage is not None
            deployment = raw.headers["x-entrepot-deployment"]
            return Outcome(
                raw.headers["x-request-id"],
                200,
                None,
                deployment,
                usage.prompt_tokens,
                usage.completion_tokens,
            )
        raw_stream = await client.chat.completions.with_raw_response.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}
        )
    except openai.APIStatusError as exc:
        return Outcome(exc.response.headers["x-request-id"], exc.status_code, exc.code, None)
    request_id = raw_stream.headers["x-request-id"]
    deployment = raw_stream.headers["x-entrepot-deployment"]
    usage = None
    delivered = StreamTally()
    try:
        async for chunk in raw_stream.parse():
            delivered.add(chunk.model_dump())
            usage = chunk.usage or usage
    except openai.APIError as exc:
        counted = delivered.estimate({"messages": messages})
        return Outcome(
            request_id,
            None,
            exc.code,
            deployment,
            counted.prompt_tokens,
            counted.completion_tokens,
        )
    assert usage is not None
    return Outcome(request_id, 200, None, deployment, usage.prompt_tokens, usage.completion_tokens)


async def send_all(url: str) -> list[Outcome]:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30)
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int) -> Outcome:
        async with slots:
            return await send(client, index)

    try:
        return await asyncio.gather(*(one(index) for index in range(REQUESTS)))
    finally:
        await client.close()


def test_ledger_equals_what_clients_received_under_a_fifth_of_faults(
    tmp_path_factory: pytest.TempPathFactory, fake_openai: Server
) -> None:
    gateway = start_fault_gateway(tmp_path_factory, fake_openai, "fault-mix")
    try:
        outcomes = asyncio.run(send_all(gateway.url))
    finally:
        gateway.stop()  # SIGTERM: the ledger writes everything still queued before exiting
    rows = {row["request_id"]: row for row in ledger_rows(gateway)}

    faulty = [i for i in range(REQUESTS) if planned(i)[0] != HEALTHY]
    assert len(faulty) == REQUESTS // FAULT_EVERY
    assert len(rows) == REQUESTS
    assert set(rows) == {outcome.request_id for outcome in outcomes}

    ledger = Counter[str]()
    received = Counter[str]()
    for index, outcome in enumerate(outcomes):
        model = planned(index)[0]
        want = expected(model)
        assert (outcome.status, outcome.error_code) == (want.client_status, want.error_code)
        record = rows[outcome.request_id]
        assert (record["status"], record["error_type"]) == (want.ledger_status, want.error_code)
        assert record["deployment"] == want.deployment
        attempts = json.loads(record["attempts"])
        assert tuple(a["outcome"] for a in attempts) == want.attempts, (index, attempts)
        assert attempts[-1]["deployment"] == want.deployment
        prompt, completion, cost = unseen(model, record, outcome)
        assert (record["prompt_tokens"], record["completion_tokens"]) == (
            outcome.prompt_tokens + prompt,
            outcome.completion_tokens + completion,
        )
        assert (record["cost_nanos"] or 0) == outcome.cost_nanos + cost, (index, record)
        estimated = outcome.status is None or completion > 0
        assert record["usage_estimated"] == estimated, (index, record)
        ledger.update(
            prompt=record["prompt_tokens"],
            completion=record["completion_tokens"],
            cost_nanos=record["cost_nanos"] or 0,
        )
        received.update(
            prompt=outcome.prompt_tokens + prompt,
            completion=outcome.completion_tokens + completion,
            cost_nanos=outcome.cost_nanos + cost,
        )
    assert ledger == received
    assert received["prompt"] > 0 and received["cost_nanos"] > 0
