"""A lean Redis connection for the scripts every limited request runs (its admission and its
settlement). Through redis-py each such call cost far more CPU in the gateway than the script
takes in Redis (command packing in Python, a pool checkout, health checks, retry wrappers);
here a call is one packed command (hiredis) and one future.

One connection per process, opened on first use, carries every call: commands are written
together once per turn of the event loop, and Redis answers them in order, so each reply (parsed
by hiredis) resolves the oldest call still waiting. What redis-py did for these calls is done
here:
- a call not answered within the timeout fails with `redis.exceptions.TimeoutError`, and the
  connection is dropped: the replies queued behind it cannot come sooner, so every call in
  flight fails with it (its caller then treats Redis as unavailable, as after a redis-py timeout);
- a lost connection fails the calls in flight with `redis.exceptions.ConnectionError`; the next
  call opens a new one (concurrent callers share the attempt);
- scripts run by their SHA-1; when Redis does not have one (restarted, or its scripts flushed)
  the script itself is sent once, which loads it again.
Failures are redis-py's exception classes, so callers handle one family whichever client ran
the call. Everything else (cache, circuits, key events, reconciliation) stays on redis-py.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | int | bytes


@dataclass(frozen=True)
class Address:
    """Where Redis is and how long to wait for it (None: as long as it takes)."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a Unix socket, instead of host and port
    db: int = 0
    username: str | None = None
    password: str | None = None
    timeout: float | None = None
    connect_timeout: float | None = None

    @classmethod
    def of(cls, client: Redis) -> Address | None:
        """The address a redis-py client connects to, with its timeouts; None for a connection
        this module does not speak (TLS)."""
        pool = client.connection_pool
        if pool.connection_class not in (Connection, UnixDomainSocketConnection):
            return None
        kw = pool.connection_kwargs
        return cls(
            host=kw.get("host", "127.0.0.1"),
            port=int(kw.get("port", 6379)),
            path=kw.get("path"),
            db=int(kw.get("db", 0)),
            username=kw.get("username"),
            password=kw.get("password"),
            timeout=kw.get("socket_timeout"),
            connect_timeout=kw.get("socket_connect_timeout", kw.get("socket_timeout")),
        )


class Script:
    """A Lua script, run by its SHA-1."""

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source).hexdigest().encode()


class _Wire(asyncio.Protocol):
    """One open connection: the calls in flight, oldest first, each with its deadline."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float | None) -> None:
        self._loop = loop
        self._timeout = timeout
        self._reader = hiredis.Reader(replyError=ResponseError)
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._watch: asyncio.TimerHandle | None = None
        self.closed = False
        self.gone: asyncio.Future[None] = loop.create_future()  # once its socket is closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def call(self, *args: Arg) -> asyncio.Future[Any]:
        """Send a command; its future gets the reply (an error reply as a `ResponseError`
        value, not raised: the caller decides)."""
        loop = self._loop
        future = loop.create_future()
        if self.closed:
            future.set_exception(RedisConnectionError("the connection to Redis is closed"))
            return future
        timeout = self._timeout
        deadline = 0.0 if timeout is None else loop.time() + timeout
        self._waiting.append((future, deadline))
        if not self._out:
            loop.call_soon(self._flush)
        self._out.append(hiredis.pack_command(args))  # type: ignore[arg-type]  # stub: a 1-tuple
        if timeout is not None and self._watch is None:
            self._watch = loop.call_at(deadline, self._check)
        return future

    def _flush(self) -> None:
        """Write what this turn of the loop asked for, in one go."""
        if not self.closed and self._transport is not None:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    def data_received(self, data: bytes) -> None:
        reader, waiting = self._reader, self._waiting
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                future, _ = waiting.popleft()
                if not future.done():  # its caller may have given up
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as error:  # garbled, or a reply nobody asked
            self.abort(RedisConnectionError(f"Redis answered out of protocol: {error!r}"))

    def _check(self) -> None:
        self._watch = None
        if not self._waiting:
            return
        deadline = self._waiting[0][1]
        if deadline <= self._loop.time():
            self.abort(RedisTimeoutError(f"Redis did not answer within {self._timeout} s"))
        else:
            self._watch = self._loop.call_at(deadline, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"the connection to Redis was lost ({exc or 'closed'})"))
        if not self.gone.done():
            self.gone.set_result(None)

    def abort(self, error: Exception) -> None:
        """Drop the connection, failing every call in flight with `error`."""
        self._fail(error)
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, error: Exception) -> None:
        self.closed = True
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(type(error)(*error.args))


class RedisWire:
    """Calls on one shared connection to Redis, reopened when it is lost."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self._wire: _Wire | None = None
        self._opening: asyncio.Task[_Wire] | None = None

    async def run(self, script: Script, keys: list[str], args: list[Arg]) -> Any:
        """Run `script` (EVALSHA, or EVAL when Redis does not have it) and return its reply;
        an error reply is raised as a `ResponseError`."""
        reply = await self.call(b"EVALSHA", script.sha, len(keys), *keys, *args)
        if type(reply) is ResponseError and str(reply).startswith("NOSCRIPT"):
            reply = await self.call(b"EVAL", script.source, len(keys), *keys, *args)
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def call(self, *args: Arg) -> Any:
        wire = self._wire
        if wire is None or wire.closed:
            wire = await self._connect()
        return await wire.call(*args)

    async def close(self) -> None:
        """Close the connection (calls in flight fail); a later call opens a new one."""
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.abort(RedisConnectionError("the connection to Redis was closed"))
            await wire.gone

    async def _connect(self) -> _Wire:
        """The open connection, opening one if needed: callers arriving meanwhile wait for the
        same attempt (and share its failure) instead of each trying in turn."""
        if self._opening is None or self._opening.done():
            self._opening = asyncio.ensure_future(self._open())
        self._wire = await asyncio.shield(self._opening)
        return self._wire

    async def _open(self) -> _Wire:
        loop = asyncio.get_running_loop()
        address = self.address
        wire: _Wire | None = None
        try:
            async with asyncio.timeout(address.connect_timeout):
                if address.path is not None:
                    _, wire = await loop.create_unix_connection(
                        lambda: _Wire(loop, address.timeout), address.path
                    )
                else:
                    _, wire = await loop.create_connection(
                        lambda: _Wire(loop, address.timeout), address.host, address.port
                    )
                await self._hello(wire)
        except TimeoutError as error:
            if wire is not None:
                wire.abort(RedisTimeoutError("Redis did not answer"))
            raise RedisTimeoutError(f"connecting to Redis at {self._where()}") from error
        except OSError as error:
            where = self._where()
            raise RedisConnectionError(f"connecting to Redis at {where}: {error}") from error
        return wire

    async def _hello(self, wire: _Wire) -> None:
        """Authenticate and select the database, as the URL says."""
        address = self.address
        if address.password is not None:
            auth: tuple[Arg, ...] = (address.password,)
            if address.username is not None:
                auth = (address.username, address.password)
            await self._expect_ok(wire, b"AUTH", *auth)
        if address.db:
            await self._expect_ok(wire, b"SELECT", address.db)

    @staticmethod
    async def _expect_ok(wire: _Wire, *args: Arg) -> None:
        reply = await wire.call(*args)
        if isinstance(reply, ResponseError):
            wire.abort(RedisConnectionError("refused"))
            raise reply

    def _where(self) -> str:
        address = self.address
        return address.path or f"{address.host}:{address.port}"
