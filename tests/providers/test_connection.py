"""The upstream connection pool against a scripted server on loopback: each test decides, byte
by byte, what the upstream answers and when it hangs up."""

from __future__ import annotations

import asyncio
import gzip
import inspect
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvicorn

from entrepot.exceptions import ConfigError, UpstreamError, UpstreamTimeoutError
from entrepot.providers import connection
from entrepot.providers.connection import ConnectionPool

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


@dataclass
class Request:
    head: str
    body: bytes


@dataclass
class ScriptedServer:
    """Answers each request with `answer(request, writer)`; counts connections and requests."""

    answer: Callable[[Request, asyncio.StreamWriter], Awaitable[bool]]
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    requests: list[Request] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                length = next(
                    int(line.split(":", 1)[1])
                    for line in head.split("\r\n")
                    if line.lower().startswith("content-length:")
                )
                request = Request(head, await reader.readexactly(length))
                self.requests.append(request)
                if not await self.answer(request, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


def run(
    answer: Callable[[Request, asyncio.StreamWriter], Awaitable[bool]],
    scenario: Callable[[ConnectionPool, ScriptedServer], Awaitable[None]],
    **pool_options: float,
) -> ScriptedServer:
    script = ScriptedServer(answer)

    async def main() -> None:
        server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
        script.port = server.sockets[0].getsockname()[1]
        pool = ConnectionPool(
            "scripted",
            f"http://127.0.0.1:{script.port}/v1",
            {"Authorization": "Bearer upstream-secret"},
            limit=int(pool_options.get("limit", 8)),
            connect_timeout=1.0,
            total_timeout=pool_options.get("total_timeout", 5.0),
        )
        try:
            await scenario(pool, script)
        finally:
            await pool.close()
            server.close()

    asyncio.run(main())
    return script


async def answer_ok(request: Request, writer: asyncio.StreamWriter) -> bool:
    writer.write(OK)
    return True


def test_sends_the_request_and_reuses_the_connection() -> None:
    async def scenario(pool: ConnectionPool, script: ScriptedServer) -> None:
        for _ in range(3):
            response = await pool.request("POST", "/chat/completions", b'{"model":"m"}')
            assert response.status == 200
            assert response.headers["content-type"] == "application/json"
            assert await response.read() == b'{"ok":true}'

    script = run(answer_ok, scenario)
    assert script.connections == 1
    head = script.requests[0].head
    assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{script.port}\r\n" in head
    assert "Authorization: Bearer upstream-secret\r\n" in head
    assert script.requests[0].body == b'{"model":"m"}'


def test_reads_chunked_gzip_and_until_close_answers() -> None:
    packed = gzip.compress(b'{"packed":true}')

    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        if "/chunked" in request.head:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b"data: one\n\n", b"data: two\n\n"):
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            return True
        if "/gzip" in request.head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n")
            writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(packed), packed))
            return True
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
        return False

    async def scenario(pool: ConnectionPool, script: ScriptedServer) -> None:
        response = await pool.request("POST", "/chunked")
        assert [c async for c in response.iter_chunks()] in (
            [b"data: one\n\n", b"data: two\n\n"],
            [b"data: one\n\ndata: two\n\n"],
        )
        assert await (await pool.request("POST", "/gzip")).read() == b'{"packed":true}'
        assert await (await pool.request("POST", "/close")).read() == b"until the end"
        assert await (await pool.request("POST", "/gzip")).read() == b'{"packed":true}'

    script = run(answer, scenario)
    assert script.connections == 2  # the answer that ended at close took its connection along


def test_a_pooled_connection_the_server_closed_is_replaced_transparently() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK)
        await writer.drain()
        return False  # the server hangs up after each answer, keep-alive notwithstanding

    async def scenario(pool: ConnectionPool, script: ScriptedServer) -> None:
        for _ in range(3):
            assert await (await pool.request("POST", "/x")).read() == b'{"ok":true}'
            await asyncio.sleep(0.05)

    script = run(answer, scenario)
    assert len(script.requests) == 3
    assert script.connections == 3


def test_a_connection_dropped_mid_answer_fails_and_is_not_reused() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        if "/drop" in request.head:
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial')
            return False
        writer.write(OK)
        return True

    async def scenario(pool: ConnectionPool, script: ScriptedServer) -> None:
        response = await pool.request("POST", "/drop")
        with pytest.raises(UpstreamError, match="closed the connection mid-answer"):
            await response.read()
        assert await (await pool.request("POST", "/after")).read() == b'{"ok":true}'

    script = run(answer, scenario)
    assert script.connections == 2
    assert len(script.requests) == 2  # the dropped request was not sent twice


def test_malformed_answers_and_unreachable_upstreams_are_upstream_errors() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SMTP ready\r\n\r\n")
        return True

    async def scenario(pool: ConnectionPool, script: ScriptedServer) -> None:
        with pytest.raises(UpstreamError, match="malformed HTTP answer"):
            await pool.request("POST", "/x")

    run(answer, scenario)

    async def unreachable() -> None:
        server = await asyncio.start_server(answer_ok, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        pool = ConnectionPool(
            "gone", f"http://127.0.0.1:{port}", {}, limit=1, connect_timeout=1, total_timeout=1
        )
        with pytest.raises(UpstreamError, match="unreachable"):
            await pool.request("POST", "/x")

    asyncio.run(unreachable())


def test_the_deadline_covers_the_headers_and_the_body() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        if "/slow-body" in request.head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{")
        await asyncio.sleep(5)
        return False

    async def scenario(pool: ConnectionPool, script: ScriptedServer) -> None:
        with pytest.raises(UpstreamTimeoutError):
            await pool.request("POST", "/silent")
        response = await pool.request("POST", "/slow-body")
        with pytest.raises(UpstreamTimeoutError):
            await response.read()

    run(answer, scenario, total_timeout=0.3)


def test_the_limit_holds_and_a_cancelled_request_gives_its_slot_back() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.3 if "/hang" in request.head else 0.02)
        writer.write(OK)
        return True

    async def scenario(pool: ConnectionPool, script: ScriptedServer) -> None:
        hung = asyncio.create_task(pool.request("POST", "/hang"))
        await asyncio.sleep(0.05)
        hung.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hung
        await asyncio.sleep(0.4)  # the server finishes with the abandoned request
        script.most_open = script.open_now

        async def one() -> bytes:
            return await (await pool.request("POST", "/x")).read()

        assert await asyncio.gather(*(one() for _ in range(6))) == [b'{"ok":true}'] * 6

    script = run(answer, scenario, limit=1)
    assert script.most_open == 1
    assert script.connections == 2  # the cancelled request's connection was not reused


@pytest.mark.parametrize(
    ("base_url", "headers", "problem"),
    [
        ("ftp://example.com", {}, "http"),
        ("http://127.0.0.1", {"X-Note": "a\r\nInjected: yes"}, "forbidden character"),
    ],
)
def test_bad_configuration_is_refused_at_start(
    base_url: str, headers: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        ConnectionPool("bad", base_url, headers, limit=1, connect_timeout=1, total_timeout=1)


def test_https_upstreams_are_verified_against_the_trusted_certificates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)

    async def start() -> tuple[asyncio.Server, int]:
        script = ScriptedServer(answer_ok)
        server = await asyncio.start_server(script.handle, "127.0.0.1", 0, ssl=server_context)
        return server, server.sockets[0].getsockname()[1]

    async def call() -> bytes:
        server, port = await start()
        pool = ConnectionPool(
            "tls", f"https://127.0.0.1:{port}/v1", {}, limit=1, connect_timeout=2, total_timeout=5
        )
        try:
            return await (await pool.request("POST", "/chat/completions", b"{}")).read()
        finally:
            await pool.close()
            server.close()

    with pytest.raises(UpstreamError, match="TLS handshake \\(CERTIFICATE_VERIFY_FAILED\\)"):
        asyncio.run(call())  # an authority the system does not trust
    bundle = tmp_path / "authority.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert asyncio.run(call()) == b'{"ok":true}'


# When a request may be sent twice. The server runs in a thread with its own event loop here, so
# the client's loop can be held still (a blocking sleep) while the server closes a connection:
# the close then reaches the client's socket before the client's loop has read it, as when a
# keep-alive timeout fires between two requests on a busy gateway.


@dataclass
class Upstream:
    """A scripted server on a thread: `handle(head, reader, writer)` answers one request (it
    reads the body itself) and returns whether to keep the connection."""

    handle: Callable[[str, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]
    idle_timeout: float | None = None  # closes a connection idle this long, as servers do
    heads: list[str] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                wait = reader.readuntil(b"\r\n\r\n")
                head = (await asyncio.wait_for(wait, self.idle_timeout)).decode("latin-1")
                self.heads.append(head)
                if not await self.handle(head, reader, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()


def in_thread(upstream: Upstream) -> Callable[[], None]:
    """Start `upstream` on a thread; returns how to stop it."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    server: asyncio.Server | None = None

    async def start() -> None:
        nonlocal server
        server = await asyncio.start_server(upstream.serve, "127.0.0.1", 0)
        upstream.port = server.sockets[0].getsockname()[1]
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop)
    ready.wait(10)

    def stop() -> None:
        async def close() -> None:
            assert server is not None
            server.close()
            handlers = asyncio.all_tasks() - {asyncio.current_task()}
            for handler in handlers:
                handler.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

    return stop


def against(
    upstream: Upstream,
    scenario: Callable[[ConnectionPool], Awaitable[None]],
    total_timeout: float = 5.0,
) -> Upstream:
    stop = in_thread(upstream)

    async def main() -> None:
        pool = ConnectionPool(
            "threaded",
            f"http://127.0.0.1:{upstream.port}/v1",
            {},
            limit=8,
            connect_timeout=2,
            total_timeout=total_timeout,
        )
        try:
            await scenario(pool)
        finally:
            await pool.close()

    try:
        asyncio.run(main())
    finally:
        stop()
    return upstream


async def read_body(head: str, reader: asyncio.StreamReader) -> bytes:
    length = next(
        int(line.split(":", 1)[1])
        for line in head.split("\r\n")
        if line.lower().startswith("content-length:")
    )
    return await reader.readexactly(length)


def to(path: str, head: str) -> bool:
    return head.startswith(f"POST /v1{path} ")


async def warm(pool: ConnectionPool, connections: int = 1) -> None:
    """Leave `connections` answered keep-alive connections in the pool."""

    async def one() -> None:
        assert await (await pool.request("POST", "/warm", b"{}")).read() == b'{"ok":true}'

    await asyncio.gather(*(one() for _ in range(connections)))


async def ok_or(
    special: Callable[[str, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]],
    head: str,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> bool:
    if to("/warm", head):
        await read_body(head, reader)
        writer.write(OK)
        return True
    return await special(head, reader, writer)


def test_a_request_whose_deadline_fired_is_not_sent_again() -> None:
    """The upstream got it and may be generating: a second send would generate twice."""

    async def silent(head: str, reader: asyncio.StreamReader, writer: Any) -> bool:
        await read_body(head, reader)
        await asyncio.sleep(3)
        return False

    async def scenario(pool: ConnectionPool) -> None:
        await warm(pool, connections=2)  # a second pooled connection to send it again on
        with pytest.raises(UpstreamTimeoutError):
            await pool.request("POST", "/generate", b'{"model":"m"}')
        await asyncio.sleep(0.3)  # time for a second copy to arrive, were one sent

    upstream = against(Upstream(partial(ok_or, silent)), scenario, total_timeout=0.3)
    assert [h for h in upstream.heads if to("/generate", h)] == [upstream.heads[2]]


def test_a_request_read_whole_by_a_server_that_then_hung_up_is_not_sent_again() -> None:
    """A close after the whole request was sent may come from a server that read it and died
    mid-generation; only a request that provably never arrived is sent again."""

    async def hang_up(head: str, reader: asyncio.StreamReader, writer: Any) -> bool:
        await read_body(head, reader)
        return False

    async def scenario(pool: ConnectionPool) -> None:
        await warm(pool, connections=2)
        with pytest.raises(UpstreamError, match="closed the connection"):
            await pool.request("POST", "/generate", b'{"model":"m"}')
        await asyncio.sleep(0.3)

    upstream = against(Upstream(partial(ok_or, hang_up)), scenario)
    assert len([h for h in upstream.heads if to("/generate", h)]) == 1


def test_a_request_is_not_sent_again_after_any_byte_of_an_answer() -> None:
    async def partial_head(head: str, reader: asyncio.StreamReader, writer: Any) -> bool:
        await read_body(head, reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Le")
        await writer.drain()
        return False

    async def scenario(pool: ConnectionPool) -> None:
        await warm(pool, connections=2)
        with pytest.raises(UpstreamError):
            await pool.request("POST", "/generate", b'{"model":"m"}')
        await asyncio.sleep(0.3)

    upstream = against(Upstream(partial(ok_or, partial_head)), scenario)
    assert len([h for h in upstream.heads if to("/generate", h)]) == 1


def test_a_connection_closed_while_idle_is_replaced_before_anything_is_sent() -> None:
    """The safe case: the server's keep-alive timeout closed the pooled connection, and the
    client's loop has not read that close yet when the next request takes the connection."""

    async def answer(head: str, reader: asyncio.StreamReader, writer: Any) -> bool:
        await read_body(head, reader)
        writer.write(OK)
        return True

    async def scenario(pool: ConnectionPool) -> None:
        await warm(pool)
        time.sleep(0.3)  # the client's loop stands still while the server closes
        assert await (await pool.request("POST", "/generate", b"{}")).read() == b'{"ok":true}'

    upstream = against(Upstream(partial(ok_or, answer), idle_timeout=0.05), scenario)
    assert upstream.connections == 2
    assert len([h for h in upstream.heads if to("/generate", h)]) == 1


def test_a_request_cut_off_while_being_written_is_sent_again() -> None:
    """The server closed a reused connection after reading only the request's head: the rest of
    the body never left the client, so the server cannot have acted on it. It goes again on a
    new connection (the body is larger than the sockets' buffers, so the write is unfinished)."""
    body = b'{"pad":"' + b"x" * (48 << 20) + b'"}'
    cut = 0

    async def cut_once(head: str, reader: asyncio.StreamReader, writer: Any) -> bool:
        nonlocal cut
        if not cut:
            cut += 1
            return False  # close with the body unread
        received = await read_body(head, reader)
        writer.write(OK if received == body else b"HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n")
        return True

    async def scenario(pool: ConnectionPool) -> None:
        await warm(pool)
        response = await pool.request("POST", "/generate", body)
        assert response.status == 200 and await response.read() == b'{"ok":true}'

    upstream = against(Upstream(partial(ok_or, cut_once)), scenario)
    assert len([h for h in upstream.heads if to("/generate", h)]) == 2
    assert upstream.connections == 2


@pytest.mark.parametrize("loop_held", [False, True], ids=["read-while-idle", "unread"])
def test_data_nobody_asked_for_makes_a_connection_unusable(loop_held: bool) -> None:
    """Bytes arriving on an idle connection would be read as the next request's answer."""

    async def answer_twice(head: str, reader: asyncio.StreamReader, writer: Any) -> bool:
        await read_body(head, reader)
        writer.write(OK)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{"stale":true}')
        return True

    async def scenario(pool: ConnectionPool) -> None:
        assert await (await pool.request("POST", "/first", b"{}")).read() == b'{"ok":true}'
        if loop_held:
            time.sleep(0.3)
        else:
            await asyncio.sleep(0.3)
        response = await pool.request("POST", "/warm", b"{}")
        assert await response.read() == b'{"ok":true}'

    upstream = against(Upstream(partial(ok_or, answer_twice)), scenario)
    assert upstream.connections == 2


@pytest.mark.parametrize("apart", [True, False], ids=["written-apart", "written-together"])
@pytest.mark.parametrize(
    "interim",
    [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=x\r\n\r\n"],
    ids=["100-continue", "103-early-hints"],
)
def test_an_interim_answer_is_not_taken_for_the_answer(interim: bytes, apart: bool) -> None:
    """The real answer follows it: read as the answer, the generation would be lost unbilled
    and the request sent on elsewhere."""

    async def interim_first(head: str, reader: asyncio.StreamReader, writer: Any) -> bool:
        await read_body(head, reader)
        if apart:
            writer.write(interim)
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(OK)
        else:
            writer.write(interim + OK)
        return True

    async def scenario(pool: ConnectionPool) -> None:
        for _ in range(2):  # and the connection is fit for the next request
            response = await pool.request("POST", "/generate", b"{}")
            assert response.status == 200 and "link" not in response.headers
            assert await response.read() == b'{"ok":true}'

    upstream = against(Upstream(interim_first), scenario)
    assert upstream.connections == 1 and len(upstream.heads) == 2


def test_idle_connections_are_retired_before_the_common_keep_alive_timeouts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server's keep-alive close racing a request on that connection fails the request (it
    cannot be sent again safely), so the pool gives connections up before servers do: under
    uvicorn's 5 s, the timeout of vLLM and most Python servers."""
    keep_alive = inspect.signature(uvicorn.Config.__init__).parameters["timeout_keep_alive"]
    assert keep_alive.default > connection.IDLE_SECONDS
    monkeypatch.setattr(connection, "IDLE_SECONDS", 0.05)

    async def scenario(pool: ConnectionPool) -> None:
        await warm(pool)
        await asyncio.sleep(0.2)  # idle past the limit; the server would still take it
        await warm(pool)

    async def only_warm(head: str, reader: asyncio.StreamReader, writer: Any) -> bool:
        raise AssertionError(f"unexpected request {head!r}")

    upstream = against(Upstream(partial(ok_or, only_warm)), scenario)
    assert upstream.connections == 2


def test_an_answer_is_not_mixed_with_data_sent_after_it_in_the_same_packet() -> None:
    """Bytes after an answer's end, arriving with it, are no part of it (nor of the next
    request's answer): mixed in, they would spoil a paid answer, which would then be sent on to
    the next deployment unbilled."""
    stale = b'HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 14\r\n\r\n{"stale":true}'

    async def answer_twice(head: str, reader: asyncio.StreamReader, writer: Any) -> bool:
        await read_body(head, reader)
        writer.write(OK + stale)
        return True

    async def scenario(pool: ConnectionPool) -> None:
        for _ in range(2):
            response = await pool.request("POST", "/generate", b"{}")
            assert "content-encoding" not in response.headers
            assert await response.read() == b'{"ok":true}'

    upstream = against(Upstream(answer_twice), scenario)
    assert upstream.connections == 2
