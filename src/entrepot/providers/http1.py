"""One keep-alive HTTP/1.1 socket to an upstream, as an asyncio protocol fed to httptools' parser.

It knows what the pool needs to decide a resend (`connection.py`): whether any of the answer
arrived, whether every byte of the request left this process, whether the idle socket has been
closed or written to by the server. It refuses what would mix two answers: an interim answer
(1xx) is skipped, and anything after the answer is an error, never the next request's answer.
"""

from __future__ import annotations

import asyncio
import select
import zlib
from collections import deque
from typing import cast

import httptools

PAUSE_READING_BYTES = 1 << 20


class Connection(asyncio.Protocol):
    """One socket, one request at a time. httptools calls the `on_*` methods from `feed_data`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._poll = select.poll()
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.received_any = False
        self.written = True  # every byte of the request handed to the kernel
        self.complete = False
        self._interim = False
        self.keep_alive = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        # Told (pause_writing) whenever any of a request is left in this process's buffer, and
        # (resume_writing) when the last byte has gone to the kernel.
        self.transport.set_write_buffer_limits(high=0)
        self._poll.register(transport.get_extra_info("socket").fileno(), select.POLLIN)

    def pause_writing(self) -> None:
        self.written = False

    def resume_writing(self) -> None:
        self.written = True

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ConnectionError("the upstream tried to switch protocols"))
        except httptools.HttpParserCallbackError as exc:
            self._fail(exc.__context__ or exc)  # raised by a callback below
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP answer ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.complete or self._error is not None:
            return
        if self.status and self._ends_at_close():
            self.on_message_complete()
        else:
            self._fail(ConnectionResetError("the upstream closed the connection mid-answer"))

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:
            # HTTP/1.1 without pipelining: no answer may follow an answer, in the same packet
            # or later; read on, it would be mixed into this answer or taken for the next one.
            raise ConnectionError("the upstream sent data nobody asked for")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            # An interim answer (100 Continue, 103 Early Hints) ends with its head and the real
            # one follows; taken for it, the generation would go unread and unbilled.
            self._interim = True
            self.headers = {}
            return
        self.status = status
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > PAUSE_READING_BYTES and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        # Asked now: once this callback returns, the parser answers for the next message.
        self.keep_alive = not self.closed and self._parser.should_keep_alive()
        self.complete = True
        self._wake()

    # used by Response

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self._reset()
        self.transport.write(data)
        if self.transport.is_closing():
            self.written = False  # the write failed at once: nothing was sent

    def stale(self) -> bool:
        """An idle connection the server has closed, or sent something on, that this loop has
        not yet read: any readiness of an idle HTTP/1.1 socket means it is not reusable."""
        return self.closed or bool(self._poll.poll(0))

    def unsent(self, error: BaseException) -> bool:
        """Whether a request that failed with `error` provably never reached the upstream as a
        whole: a reused connection found closed while the request was still being written."""
        unread = isinstance(error, ConnectionError) and not self.received_any
        return unread and self.reused and not self.written

    async def wait(self) -> None:
        """Until something new arrives (headers, a chunk, the end) or the request fails."""
        if self._error is not None:
            raise self._error
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def take(self) -> bytes:
        data = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    @property
    def has_data(self) -> bool:
        return bool(self._chunks)

    def expire(self) -> None:
        self._fail(TimeoutError())

    def reusable(self) -> bool:
        """Answered in full, and the request written in full (a server may answer early)."""
        return self.complete and self.keep_alive and not self.closed and self.written

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _ends_at_close(self) -> bool:
        return "content-length" not in self.headers and "chunked" not in self.headers.get(
            "transfer-encoding", ""
        )

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._error is not None:
                waiter.set_exception(self._error)
            else:
                waiter.set_result(None)


def decoder_for(content_encoding: str) -> zlib._Decompress | None:
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise ConnectionError(f"unsupported content encoding {encoding[:40]!r}")
