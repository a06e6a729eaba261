"""Streaming responses: the first chunk is awaited under routing (so a failure to start can still
fall back or become a proper HTTP error); after it, the stream belongs to the client and a
failure can only end it with an error event — never a silent retry.

Every generated token is billed, however the stream ends. The upstream is read by a task of its
own, which counts the output as it passes (`ledger/estimate.py`), rather than by the task writing
to the client — a client disconnect cancels that one, and would cut the upstream off mid-answer
with its usage report unread. When the stream ends before the upstream has finished (the client
left, or relaying failed), a deployment billed per token is drained in the background: read on
to its usage report, for at most its total timeout and the output cap it was sent, and only then
is the request billed and its budget reservation settled, once. A deployment billed by time, or
not at all, is closed at once instead — that stops the generation, which is what costs. Whatever
the upstream did not report (it omitted `usage`, failed mid-way, or was cut off) is billed from
the gateway's own count and flagged `usage_estimated`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import orjson

from entrepot.api.asgi import error_body
from entrepot.api.errors import log_unexpected
from entrepot.exceptions import GatewayError, UpstreamIncapableError, UpstreamTimeoutError
from entrepot.ledger.billing import requested_output, settle
from entrepot.ledger.estimate import StreamTally
from entrepot.routing.table import Deployment
from entrepot.types import JSON, UsageRecord

DONE = b"data: [DONE]\n\n"
_END = None

# Streams whose client has gone, still read for their usage report (the draining task, and the
# upstream it waits for); `finish_drains` ends them.
_draining: dict[asyncio.Task[None], _Upstream] = {}


class Encoder(Protocol):
    """Writes one streamed answer in a surface's format, chunk by internal chunk. Each call
    returns the bytes to send (possibly none). Exactly one of `done` and `error` ends it."""

    def chunk(self, chunk: JSON) -> bytes: ...

    async def done(self) -> bytes: ...

    def error(self, exc: GatewayError) -> bytes: ...


@dataclass(slots=True)
class OpenedStream:
    first: JSON | None
    chunks: AsyncIterator[JSON]
    body: JSON  # as sent upstream: its prompt and output cap bound what the stream can cost


async def open_stream(
    deployment: Deployment, method: str, body: JSON, native: JSON | None = None
) -> OpenedStream:
    """Start the upstream stream; wait at most `timeouts.first_token` for its first chunk.
    With `native`, the provider's method takes the request in its surface's protocol too."""
    call = getattr(deployment.provider, method)
    chunks: AsyncIterator[JSON] = call(body) if native is None else call(body, native)
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
    return OpenedStream(first, chunks, body)


Item = JSON | Exception | None


class _Channel:
    """From the reading task to the relaying one: a deque and at most one waiter, which is all
    one producer and one consumer need (asyncio.Queue costs twice as much per chunk)."""

    __slots__ = ("items", "waiter")

    def __init__(self) -> None:
        self.items: deque[Item] = deque()
        self.waiter: asyncio.Future[None] | None = None

    def put(self, item: Item) -> None:
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Item:
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.items.popleft()


class _Upstream:
    """The upstream's chunks, read in a task of their own and tallied as they arrive. The relay
    takes them from `channel`, which ends with `_END` or the exception that ended the stream."""

    __slots__ = ("body", "cap", "channel", "chunks", "ended", "relaying", "tally", "task")

    def __init__(self, deployment: Deployment, opened: OpenedStream) -> None:
        self.body = opened.body
        self.chunks = opened.chunks
        self.tally = StreamTally()
        self.channel = _Channel()
        self.cap = requested_output(opened.body, deployment)
        self.relaying = True
        self.ended = opened.first is None
        if opened.first is None:
            self.channel.put(_END)
        else:
            self.tally.add(opened.first)
            self.channel.put(opened.first)
        self.task = asyncio.create_task(self._read(opened.chunks))

    async def _read(self, chunks: AsyncIterator[JSON]) -> None:
        exhausted = self.ended
        try:
            if not exhausted:
                async for chunk in chunks:
                    self.tally.add(chunk)
                    if self.relaying:
                        self.channel.put(chunk)
                    elif self.tally.pieces > self.cap:
                        break  # it ignores the cap it was sent: stop paying for more
                else:
                    exhausted = True
            self.ended = True
            self.channel.put(_END)
        except Exception as exc:
            self.ended = True
            self.channel.put(exc)
        finally:
            if not exhausted:  # an exhausted stream is closed already
                await close_stream(chunks)

    def detach(self) -> None:
        """Nobody relays any more: keep reading, but hold on to nothing."""
        self.relaying = False
        self.channel.items.clear()

    async def stop(self) -> None:
        """Close the upstream — at once if it is still sending, which stops its generation — and
        wait until it is closed."""
        if not self.ended:
            self.task.cancel()
        await asyncio.wait((self.task,))
        if self.task.cancelled():  # perhaps before it began, so before it could close them
            await close_stream(self.chunks)


async def stream_events(
    deployment: Deployment,
    opened: OpenedStream,
    record: UsageRecord,
    started: float,
    encoder: Encoder,
    on_end: Callable[[], Awaitable[None]],
) -> AsyncGenerator[bytes, None]:
    """Relay chunks in the client's format (`encoder`); `on_end` finishes the request's
    bookkeeping exactly once, after the stream is billed, however the stream ends."""
    upstream = _Upstream(deployment, opened)
    record.status, record.error_type = 499, "client_closed"
    try:
        while (item := await upstream.channel.get()) is not _END:
            if isinstance(item, Exception):
                raise item
            if record.ttft_ms is None and _has_output(item):
                record.ttft_ms = _ms_since(started)
            data = encoder.chunk(item)
            if data:
                yield data
        yield await encoder.done()
        record.status, record.error_type = 200, None
        deployment.breaker.record_success()
    except GatewayError as exc:
        if not isinstance(exc, UpstreamIncapableError):
            deployment.breaker.record_failure()
        record.status, record.error_type = exc.status_code, exc.code or exc.error_type
        yield encoder.error(exc)
    except Exception as exc:
        log_unexpected(exc)
        internal = GatewayError("the gateway hit an internal error")
        record.status, record.error_type = internal.status_code, internal.error_type
        yield encoder.error(internal)
    finally:
        if upstream.task.done():
            _bill(upstream, deployment, record, started)
            await on_end()
        elif upstream.ended or deployment.price is None:
            await asyncio.shield(_settle(upstream, deployment, record, started, on_end))
        else:
            upstream.detach()
            # Read on within the deployment's total timeout, counted from the request's start.
            left = deployment.config.timeouts.total - (time.perf_counter() - started)
            drain = asyncio.create_task(
                _settle(upstream, deployment, record, started, on_end, drain_for=max(left, 0.0))
            )
            _draining[drain] = upstream
            drain.add_done_callback(_forget)


class OpenAIEvents:
    """OpenAI's stream format, which is the internal one: each chunk as a `data:` event under the
    client's alias, then `[DONE]`. The usage chunk the gateway always asks for is passed on only
    to a client that asked for it too."""

    __slots__ = ("alias", "include_usage")

    def __init__(self, alias: str, include_usage: bool) -> None:
        self.alias = alias
        self.include_usage = include_usage

    def chunk(self, chunk: JSON) -> bytes:
        if not self.include_usage:
            if chunk.get("usage") is not None:
                del chunk["usage"]
            if not chunk.get("choices"):
                return b""
        chunk["model"] = self.alias
        for choice in chunk.get("choices") or ():
            choice.setdefault("finish_reason", None)
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    async def done(self) -> bytes:
        return DONE

    def error(self, exc: GatewayError) -> bytes:
        return b"data: " + orjson.dumps(error_body(exc)) + b"\n\n"


def _forget(drain: asyncio.Task[None]) -> None:
    _draining.pop(drain, None)


async def _settle(
    upstream: _Upstream,
    deployment: Deployment,
    record: UsageRecord,
    started: float,
    on_end: Callable[[], Awaitable[None]],
    drain_for: float | None = None,
) -> None:
    """Close the upstream if it is still open, bill the stream, and end the request — for an
    abandoned stream, after reading on for its usage report for at most `drain_for` seconds."""
    try:
        if drain_for is not None:
            await asyncio.wait((upstream.task,), timeout=drain_for)
    finally:
        await upstream.stop()
        _bill(upstream, deployment, record, started)
        await on_end()


def _bill(upstream: _Upstream, deployment: Deployment, record: UsageRecord, started: float) -> None:
    tally = upstream.tally
    estimate = partial(tally.estimate, upstream.body)
    settle(record, deployment, upstream.body, tally.usage, estimate, started)


async def finish_drains() -> None:
    """At shutdown: stop reading abandoned streams and bill them by what was counted so far,
    so that their records reach the ledger before it closes. Their readers are stopped, not the
    draining tasks, which then settle as after a timeout (even one that had not begun yet)."""
    for upstream in _draining.values():
        upstream.task.cancel()
    await asyncio.gather(*_draining, return_exceptions=True)


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
