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
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit

from entrepot.exceptions import ConfigError, UpstreamError, UpstreamTimeoutError
from entrepot.providers.http1 import Connection, decoder_for

IDLE_SECONDS = 4.0
ACCEPT_ENCODING = "gzip, deflate"


class Response:
    """An answer whose headers have arrived. Its body is read once, whole or in pieces; reading
    it to the end (or `release`) gives the connection back."""

    def __init__(self, pool: ConnectionPool, connection: Connection, timer: asyncio.Handle) -> None:
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
            decoder = decoder_for(self.headers.get("content-encoding", ""))
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
            # The upstream began its answer, so it generated (for all the gateway can tell).
            raise self._pool.failure(exc, delivered=200 <= self.status < 300) from None
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
        self._idle: deque[Connection] = deque()  # the most recently used last
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
        connection: Connection | None = None
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
                # A deadline that fired once the whole request had left: the upstream may be
                # generating still. A close before any answer is not counted so: it is also how
                # a server that never read the request (a keep-alive race) ends a connection.
                sent = connection is not None and connection.written
                delivered = isinstance(exc, TimeoutError) and sent
                raise self.failure(exc, delivered=delivered) from None
            raise

    def failure(self, exc: BaseException, *, delivered: bool) -> UpstreamError:
        """What the client is told, and whether the upstream may have generated (`delivered`,
        billed by the request path); the slot is released by whoever raised."""
        name = f"upstream {self.name}"
        if isinstance(exc, TimeoutError):
            return UpstreamTimeoutError(f"{name} did not answer in time", delivered=delivered)
        if isinstance(exc, zlib.error):
            body = "sent a body that does not decompress"
            return UpstreamError(f"{name} {body}", delivered=delivered)
        return UpstreamError(f"{name} failed: {exc}", delivered=delivered)

    def release(self, connection: Connection) -> None:
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

    async def _connection(self, loop: asyncio.AbstractEventLoop, deadline: float) -> Connection:
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
                    lambda: Connection(loop),
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
