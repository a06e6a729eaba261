"""How an abandoned stream ends, in-process: a deployment billed per token is read on to its usage
report and only then settled, once; the reading stops at the output cap it was sent and at its
total timeout; a deployment billed by time is closed at once."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from entrepot.api import streaming
from entrepot.config import ModelConfig, Price
from entrepot.types import JSON, UsageRecord

PRICE = Price(input_per_1m=Decimal(1000), output_per_1m=Decimal(2000), as_of=dt.date(2026, 11, 1))
BODY = {"model": "t", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def word(text: str) -> JSON:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


@dataclass
class Upstream:
    """A provider whose stream is scripted: `words` chunks of `size` bytes each, then a usage
    report unless `hang` (wait forever) or `endless` (words without end, ignoring the cap)."""

    words: int = 4
    size: int = 3
    hang: bool = False
    endless: bool = False
    sent: int = 0
    closed: bool = False
    log: list[str] = field(default_factory=list)

    async def stream_chat(self, body: JSON) -> AsyncIterator[JSON]:
        try:
            while self.endless or self.sent < self.words:
                await asyncio.sleep(0)
                self.sent += 1
                yield word(f" w{self.sent}".ljust(self.size, "w"))
            if self.hang:
                await asyncio.Event().wait()
            yield {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": self.sent}}
        finally:
            self.closed = True
            self.log.append("closed")


class Breaker:
    def record_failure(self) -> None:
        pass


@dataclass
class Deployment:
    provider: Upstream
    price: Price | None
    config: ModelConfig
    alias: str = "a"
    name: str = "a"
    breaker: Breaker = field(default_factory=Breaker)


def deployment(upstream: Upstream, price: Price | None = PRICE, **fields: Any) -> Any:
    config = ModelConfig.model_validate(
        {
            "alias": "a",
            "provider": "openai_compatible",
            "target": "t",
            "base_url": "http://up.example/v1",
            "hardware_cost_per_hour": "3.6",
            **fields,
        }
    )
    return Deployment(upstream, price, config)


async def abandon(target: Any) -> tuple[UsageRecord, list[str]]:
    """Read the first word, leave as a disconnecting client does, and wait for the request's
    end; returns the record and the order in which the upstream closed and the request ended."""
    record = UsageRecord(request_id="r", endpoint="chat", model_alias="a")
    ended = asyncio.Event()

    async def on_end() -> None:
        target.provider.log.append("ended")
        ended.set()

    opened = await streaming.open_stream(target, "stream_chat", BODY)
    events = streaming.stream_events(
        target, opened, record, time.perf_counter(), streaming.OpenAIEvents("m", False), on_end
    )
    await anext(events)
    await events.aclose()
    await asyncio.wait_for(ended.wait(), 30)
    return record, target.provider.log


def test_an_abandoned_stream_is_read_to_its_usage_report_then_settled_once() -> None:
    upstream = Upstream(words=5)
    record, log = asyncio.run(abandon(deployment(upstream)))
    assert upstream.sent == 5 and log == ["closed", "ended"]
    assert (record.prompt_tokens, record.completion_tokens, record.usage_reported) == (2, 5, True)
    assert record.cost_nanos == 2 * 1_000_000 + 5 * 2_000_000
    assert (record.status, record.error_type) == (499, "client_closed")


def test_reading_stops_past_the_output_cap_an_upstream_ignores() -> None:
    upstream = Upstream(endless=True)
    record, log = asyncio.run(abandon(deployment(upstream)))
    # The cap sent was 5: the sixth word proves the upstream ignores it, and reading stops.
    assert upstream.sent == 6 and log == ["closed", "ended"]
    assert (record.completion_tokens, record.usage_estimated) == (6, True)


def test_an_unreported_stream_is_billed_at_most_its_cap_unless_its_chunks_prove_more() -> None:
    """Chunks of 40 bytes (10 tokens by bytes) and no usage report: a stream that stopped within
    its cap of 5 chunks is billed the cap, not 50; one that ignores it, the chunks it sent."""
    within = Upstream(words=5, size=40, hang=True)
    record, _ = asyncio.run(abandon(deployment(within, timeouts={"total": 0.2})))
    assert (record.completion_tokens, record.usage_estimated) == (5, True)
    past = Upstream(endless=True, size=40)
    record, _ = asyncio.run(abandon(deployment(past)))
    assert past.sent == 6 and (record.completion_tokens, record.usage_estimated) == (6, True)


def test_reading_stops_at_the_total_timeout() -> None:
    upstream = Upstream(words=3, hang=True)
    record, log = asyncio.run(abandon(deployment(upstream, timeouts={"total": 0.2})))
    assert log == ["closed", "ended"]
    assert (record.completion_tokens, record.usage_estimated) == (3, True)
    assert record.cost_nanos and record.cost_nanos > 0


def test_a_stream_billed_by_time_is_closed_at_once() -> None:
    upstream = Upstream(words=1000)
    record, log = asyncio.run(abandon(deployment(upstream, price=None)))
    assert upstream.sent < 1000 and log == ["closed", "ended"]
    assert record.usage_estimated and record.currency == "USD"


def test_shutdown_bills_streams_still_draining() -> None:
    upstream = Upstream(words=2, hang=True)

    async def scenario() -> UsageRecord:
        record = UsageRecord(request_id="r", endpoint="chat", model_alias="a")
        ended = asyncio.Event()

        async def on_end() -> None:
            ended.set()

        target = deployment(upstream)
        opened = await streaming.open_stream(target, "stream_chat", BODY)
        events = streaming.stream_events(
            target, opened, record, time.perf_counter(), streaming.OpenAIEvents("m", False), on_end
        )
        await anext(events)
        await events.aclose()
        await streaming.finish_drains()
        assert ended.is_set()
        return record

    record = asyncio.run(scenario())
    assert upstream.closed and record.usage_estimated
    assert record.completion_tokens == upstream.sent  # what had been read when it stopped
