"""Keep-alive HTTP/1.1 connections to one upstream, on asyncio protocols with httptools' parser.

The upstream call is most of a forwarded request's cost. A general-purpose client (aiohttp, the
lightest measured) spent ~110 µs of CPU on each POST to a local mock; this path spends ~30 µs,
JSON included (`benchmarks/upstream_client.py`): one write per request, headers built once per
upstream, and the response parsed by the same C parser uvicorn uses for requests. It does what
an upstream AI API needs and nothing else: POST and GET with a body in memory, Content-Length or
chunked answers (or one ending at close), gzip/deflate, TLS, a per-request deadline, and a
connection limit.

A request is sent again only when the upstream provably did not receive it: an upstream call is
a paid generation, and one sent twice runs twice while the gateway bills one. A connection
taken from the pool may have been closed by the server while idle; before it is written to, it
is polled (one `poll` system call) and discarded if the server's close or anything else has
arrived. If a reused connection is found closed while the request is still being written —
part of it never left this process, so the server cannot have acted on it — the request goes
once more on a new connection. Never after a timeout (the upstream may be generating), never
after any byte of an answer, never once the whole request was handed to the kernel: a close
then may come from a server that read the request and died.

Idle connections are retired after `IDLE_SECONDS`, before the keep-alive timeout of the servers
AI APIs commonly run on (uvicorn, under vLLM and most Python servers, and Node: 5 s; the
llama.cpp server: 5 s; nginx: 75 s), so the server's close rarely meets a request in flight.
"""

from __future__ import annotations

import asyncio
import select
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

from entrepot.exceptions import ConfigError, GatewayError, UpstreamError, UpstreamTimeoutError

IDLE_SECONDS = 4.0
PAUSE_READING_BYTES = 1 << 20
ACCEPT_ENCODING = "gzip, deflate"


class _Connection(asyncio.Protocol):
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


class Response:
    """An answer whose headers have arrived. Its body is read once, whole or in pieces; reading
    it to the end (or `release`) gives the connection back."""

    def __init__(
        self, pool: ConnectionPool, connection: _Connection, timer: asyncio.Handle
    ) -> None:
        self.status = connection.status
        self.headers: Mapping[str, str] = connection.headers
        self._pool = pool
        self._connection = connection
        self._timer = timer
        self._released = False

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.iter_chunks()])

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        connection = self._connection
        try:
            decoder = _decoder(self.headers.get("content-encoding", ""))
            while True:
                if connection.has_data:
                    piece = connection.take()
                    yield decoder.decompress(piece) if decoder else piece
                elif connection.complete:
                    if decoder is not None and (tail := decoder.flush()):
                        yield tail
                    return
                else:
                    await connection.wait()
        except (OSError, TimeoutError, zlib.error) as exc:
            raise self._pool.failure(exc) from None
        finally:
            self.release()

    def release(self) -> None:
        """Back to the pool if the answer was read to its end, else closed. Safe to repeat."""
        if not self._released:
            self._released = True
            self._timer.cancel()
            self._pool.release(self._connection)


class ConnectionPool:
    """Connections to one base URL, reused LIFO (the warmest first), at most `limit` at once; it
    serves the event loop it is first used on."""

    def __init__(
        self,
        name: str,
        base_url: str,
        headers: Mapping[str, str],
        *,
        limit: int,
        connect_timeout: float,
        total_timeout: float,
    ) -> None:
        self.name = name
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"{name}: base_url must be an http(s) URL, got {base_url!r}")
        tls = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if tls else 80)
        self._ssl = ssl.create_default_context() if tls else None
        self._target_prefix = url.path.rstrip("/")
        self._query = f"?{url.query}" if url.query else ""
        host = f"[{self._host}]" if ":" in self._host else self._host
        fixed = {
            "Host": host if url.port is None else f"{host}:{self._port}",
            "Accept-Encoding": ACCEPT_ENCODING,
            **headers,
        }
        for field, value in fixed.items():
            if any(c in field + value for c in "\r\n\0") or not field.isascii():
                raise ConfigError(f"{name}: header {field!r} contains a forbidden character")
        self._fixed_headers = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._slots = asyncio.Semaphore(limit)
        self._idle: deque[_Connection] = deque()  # the most recently used last
        self._closing = False
        # Bound on first use, like the connections: asking asyncio for the running loop costs a
        # getpid() system call each time, which showed per request.
        self._loop: asyncio.AbstractEventLoop | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> Response:
        """Send the request and wait for the answer's headers. The deadline covers the whole
        exchange, body included; the caller reads the body or releases the response."""
        payload = (
            f"{method} {self._target_prefix}{path}{self._query} HTTP/1.1\r\n"
            f"{self._fixed_headers}Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + self._total_timeout
        await self._slots.acquire()
        retried = False
        connection: _Connection | None = None
        try:
            while True:
                connection = await self._connection(loop, deadline)
                timer = loop.call_at(deadline, connection.expire)
                connection.send(payload)
                try:
                    while not connection.status:
                        await connection.wait()
                    return Response(self, connection, timer)
                except BaseException as exc:
                    timer.cancel()
                    if retried or not connection.unsent(exc):
                        raise
                    connection.close()
                    retried = True
        except BaseException as exc:
            if connection is not None:
                connection.close()
            self._slots.release()
            if isinstance(exc, OSError | TimeoutError):
                raise self.failure(exc) from None
            raise

    def failure(self, exc: BaseException) -> GatewayError:
        """What the client is told; the slot is released by whoever raised."""
        if isinstance(exc, TimeoutError):
            return UpstreamTimeoutError(f"upstream {self.name} did not answer in time")
        if isinstance(exc, zlib.error):
            return UpstreamError(f"upstream {self.name} sent a body that does not decompress")
        return UpstreamError(f"upstream {self.name} failed: {exc}")

    def release(self, connection: _Connection) -> None:
        self._slots.release()
        if connection.reusable() and not self._closing:
            now = connection.idle_since = connection.loop.time()
            idle = self._idle
            idle.append(connection)
            # Reuse is LIFO, so the oldest idle connections sit at the front, perhaps for good.
            while now - idle[0].idle_since >= IDLE_SECONDS:
                idle.popleft().close()
        else:
            connection.close()

    async def close(self) -> None:
        self._closing = True
        for connection in self._idle:
            connection.close()
        self._idle.clear()

    async def _connection(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        now = loop.time()
        while self._idle:
            connection = self._idle.pop()
            if now - connection.idle_since < IDLE_SECONDS and not connection.stale():
                connection.reused = True
                return connection
            connection.close()
        try:
            async with asyncio.timeout_at(min(deadline, now + self._connect_timeout)):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl else None,
                )
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"upstream {self.name} did not accept a connection in time"
            ) from None
        except ssl.SSLError as exc:
            raise UpstreamError(
                f"upstream {self.name} failed the TLS handshake ({exc.reason or 'no reason'})"
            ) from None
        except OSError:
            raise UpstreamError(f"upstream {self.name} is unreachable") from None
        return connection


def _decoder(content_encoding: str) -> zlib._Decompress | None:
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise ConnectionError(f"unsupported content encoding {encoding[:40]!r}")
