"""Streaming responses: the first chunk is awaited under routing (so a failure to start can still
fall back or become a proper HTTP error); after it, the stream belongs to the client and a
failure can only end it with an error event — never a silent retry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import orjson

from entrepot.api.asgi import error_body
from entrepot.api.errors import log_unexpected
from entrepot.exceptions import GatewayError, UpstreamTimeoutError
from entrepot.ledger.billing import settle
from entrepot.routing.table import Deployment
from entrepot.types import JSON, UsageRecord

DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class OpenedStream:
    first: JSON | None
    chunks: AsyncIterator[JSON]


async def open_stream(deployment: Deployment, method: str, body: JSON) -> OpenedStream:
    """Start the upstream stream; wait at most `timeouts.first_token` for its first chunk."""
    chunks: AsyncIterator[JSON] = getattr(deployment.provider, method)(body)
    try:
        first = await asyncio.wait_for(anext(chunks), deployment.config.timeouts.first_token)
    except StopAsyncIteration:
        first = None
    except TimeoutError:
        await close_stream(chunks)
        raise UpstreamTimeoutError(
            f"upstream {deployment.name} sent nothing within"
            f" {deployment.config.timeouts.first_token:g}s"
        ) from None
    except BaseException:
        await close_stream(chunks)
        raise
    return OpenedStream(first, chunks)


async def stream_events(
    deployment: Deployment,
    opened: OpenedStream,
    record: UsageRecord,
    started: float,
    include_usage: bool,
    on_end: Callable[[], Awaitable[None]],
) -> AsyncGenerator[bytes, None]:
    """Relay chunks under the client's alias; bill from the upstream's usage report; `on_end`
    finishes the request's bookkeeping exactly once, however the stream ends."""
    alias = record.model_alias or deployment.alias
    usage: JSON | None = None
    finished = False
    record.status, record.error_type = 499, "client_closed"
    try:
        chunk = opened.first
        while chunk is not None:
            if chunk.get("usage") is not None:
                usage = chunk["usage"]
                if not include_usage:
                    del chunk["usage"]
            if record.ttft_ms is None and _has_output(chunk):
                record.ttft_ms = _ms_since(started)
            if chunk.get("choices") or include_usage:
                chunk["model"] = alias
                for choice in chunk.get("choices") or ():
                    choice.setdefault("finish_reason", None)
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            chunk = await anext(opened.chunks, None)
        yield DONE
        finished = True
        record.status, record.error_type = 200, None
    except GatewayError as exc:
        deployment.breaker.record_failure()
        record.status, record.error_type = exc.status_code, exc.code or exc.error_type
        yield b"data: " + orjson.dumps(error_body(exc)) + b"\n\n"
    except Exception as exc:
        log_unexpected(exc)
        internal = GatewayError("the gateway hit an internal error")
        record.status, record.error_type = internal.status_code, internal.error_type
        yield b"data: " + orjson.dumps(error_body(internal)) + b"\n\n"
    finally:
        await close_stream(opened.chunks)
        if finished or usage is not None:
            settle(record, deployment, usage, started)
        await on_end()


async def close_stream(chunks: AsyncIterator[JSON]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await asyncio.shield(close())


def _has_output(chunk: JSON) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content"):
            return True
        if choice.get("text"):
            return True
    return False


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
