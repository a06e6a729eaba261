"""The lean Redis connection on a Redis of the test's own: concurrent callers answered in order
on one connection, a script reloaded after SCRIPT FLUSH, calls in flight failed when the
connection drops or Redis restarts (and the next call reconnects), a timeout on a paused Redis,
the database and password of the URL, and close."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis
import uvloop
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from entrepot.store.redis_wire import Address, RedisWire, Script
from tests.backing import Backing, start_redis
from tests.fleet.redis_control import restart

T = TypeVar("T")
ECHO = Script("return {KEYS[1], ARGV[1]}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Backing]:
    backing = start_redis(tmp_path / "redis")
    yield backing
    backing.process.send_signal(signal.SIGCONT)  # in case a test paused it
    backing.stop()


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> str:
    """Both loops: the gateway runs on uvloop, whose transports differ."""
    return str(request.param)


def run(
    loop: str, url: str, scenario: Callable[[RedisWire], Awaitable[T]], timeout: float = 1.0
) -> T:
    async def main() -> T:
        client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        address = Address.of(client)
        await client.aclose()
        assert address is not None
        wire = RedisWire(address)
        try:
            return await scenario(wire)
        finally:
            await wire.close()

    return uvloop.run(main()) if loop == "uvloop" else asyncio.run(main())


def test_concurrent_callers_each_get_their_own_reply(server: Backing, loop: str) -> None:
    async def scenario(wire: RedisWire) -> list[object]:
        return await asyncio.gather(*(wire.run(ECHO, [f"k{i}"], [i]) for i in range(500)))

    assert run(loop, server.url, scenario) == [
        [f"k{i}".encode(), str(i).encode()] for i in range(500)
    ]


def test_a_script_flushed_from_redis_is_sent_again(server: Backing, loop: str) -> None:
    async def scenario(wire: RedisWire) -> list[object]:
        first = await wire.run(ECHO, ["a"], [1])
        assert await wire.call(b"SCRIPT", b"FLUSH") == b"OK"
        again = await asyncio.gather(*(wire.run(ECHO, ["b"], [i]) for i in range(3)))
        loaded = await wire.call(b"SCRIPT", b"EXISTS", ECHO.sha)
        return [first, again, loaded]

    assert run(loop, server.url, scenario) == [
        [b"a", b"1"],
        [[b"b", b"0"], [b"b", b"1"], [b"b", b"2"]],
        [1],
    ]


def test_a_script_error_is_raised_and_the_connection_kept(server: Backing, loop: str) -> None:
    async def scenario(wire: RedisWire) -> object:
        with pytest.raises(ResponseError, match="boom"):
            await wire.run(Script("return redis.error_reply('boom')"), [], [])
        return await wire.run(ECHO, ["k"], ["v"])

    assert run(loop, server.url, scenario) == [b"k", b"v"]


def test_calls_in_flight_fail_when_the_connection_drops_and_the_next_reconnects(
    server: Backing, loop: str
) -> None:
    async def scenario(wire: RedisWire) -> list[object]:
        await wire.run(ECHO, ["k"], [0])
        # BLPOP holds this connection's replies (not Redis) until the connection is killed.
        held = asyncio.ensure_future(wire.call(b"BLPOP", b"nothing", 0))
        behind = [asyncio.ensure_future(wire.run(ECHO, ["k"], [i])) for i in range(5)]
        killer = redis.Redis.from_url(server.url)
        while killer.execute_command("CLIENT", "LIST", "TYPE", "normal").count(b"cmd=blpop") < 1:
            await asyncio.sleep(0.01)
        killer.execute_command("CLIENT", "KILL", "SKIPME", "yes")
        killer.close()
        outcomes = await asyncio.gather(held, *behind, return_exceptions=True)
        kinds = {type(outcome) for outcome in outcomes}
        return [kinds, await wire.run(ECHO, ["k"], ["after"])]

    assert run(loop, server.url, scenario) == [{RedisConnectionError}, [b"k", b"after"]]


def test_a_restart_of_redis_fails_what_is_in_flight_then_is_found_again(
    server: Backing, loop: str
) -> None:
    async def scenario(wire: RedisWire) -> list[object]:
        await wire.run(ECHO, ["k"], [0])
        server.process.send_signal(signal.SIGSTOP)  # so that the call cannot be answered
        call = asyncio.ensure_future(wire.run(ECHO, ["k"], [1]))
        await asyncio.sleep(0.05)
        server.process.kill()
        server.process.wait()
        await asyncio.to_thread(restart, server)
        failed = await asyncio.gather(call, return_exceptions=True)
        # Idle while Redis restarted: the connection's end is seen, the next call reconnects.
        server.stop()
        await asyncio.to_thread(restart, server)
        return [type(failed[0]), await wire.run(ECHO, ["k"], [2])]

    assert run(loop, server.url, scenario) == [RedisConnectionError, [b"k", b"2"]]


def test_a_paused_redis_times_out_every_call_in_flight_then_answers_again(
    server: Backing, loop: str
) -> None:
    async def scenario(wire: RedisWire) -> list[object]:
        await wire.run(ECHO, ["k"], [0])
        server.process.send_signal(signal.SIGSTOP)
        outcomes = await asyncio.gather(
            *(wire.run(ECHO, ["k"], [i]) for i in range(4)), return_exceptions=True
        )
        server.process.send_signal(signal.SIGCONT)
        return [{type(o) for o in outcomes}, await wire.run(ECHO, ["k"], [9])]

    assert run(loop, server.url, scenario, timeout=0.2) == [{RedisTimeoutError}, [b"k", b"9"]]


def test_a_stopped_redis_fails_to_connect_and_concurrent_callers_share_the_attempt(
    server: Backing, loop: str
) -> None:
    async def scenario(wire: RedisWire) -> list[object]:
        server.stop()
        outcomes = await asyncio.gather(
            *(wire.call(b"PING") for _ in range(8)), return_exceptions=True
        )
        await asyncio.to_thread(restart, server)
        return [{type(o) for o in outcomes}, await wire.call(b"PING")]

    assert run(loop, server.url, scenario) == [{RedisConnectionError}, b"PONG"]


def test_the_database_and_password_of_the_url_are_used(server: Backing, loop: str) -> None:
    admin = redis.Redis.from_url(server.url)
    admin.config_set("requirepass", "sesame")
    admin.close()
    url = server.url.replace("redis://", "redis://:sesame@").removesuffix("/0") + "/3"

    async def scenario(wire: RedisWire) -> object:
        await wire.call(b"SET", "where", "here")
        return await wire.call(b"CLIENT", b"INFO")

    info = run(loop, url, scenario)
    assert b" db=3 " in info
    reader = redis.Redis.from_url(url)
    assert reader.get("where") == b"here"
    reader.close()
    wrong = url.replace("sesame", "wrong")
    with pytest.raises(ResponseError):
        run(loop, wrong, lambda wire: wire.call(b"PING"))


def test_after_close_calls_reconnect_and_nothing_is_left_open(server: Backing, loop: str) -> None:
    async def scenario(wire: RedisWire) -> list[object]:
        await wire.call(b"PING")
        await wire.close()
        again = await wire.call(b"PING")
        await wire.close()
        return [again, await asyncio.to_thread(others, server.url)]

    assert run(loop, server.url, scenario) == [b"PONG", 0]


def others(url: str) -> int:
    """How many clients other than this one Redis has, once it has seen the closed ones go."""
    client = redis.Redis.from_url(url)
    try:
        for _ in range(500):
            count = len(client.client_list()) - 1
            if count == 0:
                break
            time.sleep(0.01)
        return count
    finally:
        client.close()
