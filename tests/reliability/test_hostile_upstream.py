"""A real gateway in front of an upstream that misbehaves on purpose, at the HTTP level: it
hangs up after reading a whole request, sends half an answer's head and stalls, answers a probe
with a 400, closes idle keep-alive connections early. Each request must reach the upstream at
most once per deployment, every send must be in the usage record, and the circuit's probe must
resolve however it ends.

The upstream is scripted: what it does with a request is named by the request's last message
("ok", "hangup", "stall", "bad", "fail"), and it counts every request it reads whole by that
name, so a test knows exactly how many generations the gateway asked for.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Server, start_gateway, usage_record

PRICE = {"input_per_1m": "1", "output_per_1m": "1", "as_of": "2026-11-01"}
COOLDOWN = 1.0
IDLE_TIMEOUT = 0.2  # the upstream's keep-alive timeout: far under the gateway's idle limit
CAP = 50  # the output cap the `billed` deployments are sent


def _raw(status: int, raw: bytes) -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(raw)}"
    return head.encode() + b"\r\n\r\n" + raw


def _answer(status: int, body: dict[str, Any]) -> bytes:
    return _raw(status, json.dumps(body).encode())


OK = _answer(
    200,
    {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    },
)
BAD = _answer(400, {"error": {"message": "messages: field required"}})
FAIL = _answer(503, {"error": {"message": "overloaded"}})


class Scripted:
    """The upstream, on a thread with its own event loop. `received` counts whole requests by
    behaviour; a connection idle for `IDLE_TIMEOUT` is closed, as keep-alive servers do."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        self.connections = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            handlers = asyncio.all_tasks() - {asyncio.current_task()}
            for handler in handlers:
                handler.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                wait = reader.readuntil(b"\r\n\r\n")
                head = (await asyncio.wait_for(wait, IDLE_TIMEOUT)).decode("latin-1")
                length = next(
                    int(line.split(":", 1)[1])
                    for line in head.split("\r\n")
                    if line.lower().startswith("content-length:")
                )
                body = json.loads(await reader.readexactly(length))
                what = body["messages"][-1]["content"]
                self.received[what] += 1
                if what == "hangup":
                    return
                if what == "stall":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Ty")
                    await writer.drain()
                    await asyncio.sleep(60)
                    return
                if what == "cut":  # the answer breaks off halfway through its body
                    writer.write(OK[: len(OK) - 40])
                    await writer.drain()
                    return
                if what == "garbled":  # a success that is not JSON
                    writer.write(_raw(200, b"{not json"))
                    await writer.drain()
                    continue
                writer.write({"ok": OK, "bad": BAD, "fail": FAIL}[what])
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Scripted]:
    scripted = Scripted()
    scripted.start()
    yield scripted
    scripted.stop()


def _model(upstream: Scripted, alias: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "alias": alias,
        "name": name,
        "provider": "openai_compatible",
        "target": "m",
        "base_url": f"http://127.0.0.1:{upstream.port}/v1",
        "jurisdiction": "US",
        "price": PRICE,
        **extra,
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: Scripted) -> Iterator[Server]:
    retry = {"max_attempts": 3, "backoff_seconds": 0}
    config = {
        "store": {"ledger_flush_seconds": 0.05},
        "breaker": {"failure_threshold": 1, "cooldown_seconds": COOLDOWN},
        "routes": {"solo": retry, "pair": retry, "probed": retry, "billed": retry},
        "models": [
            _model(upstream, "solo", "solo-1", timeouts={"total": 1}),
            _model(upstream, "pair", "pair-1", timeouts={"total": 1}),
            _model(upstream, "pair", "pair-2", timeouts={"total": 1}),
            _model(upstream, "probed", "probed-1"),
            _model(upstream, "billed", "billed-1", timeouts={"total": 1}, max_output_tokens=CAP),
            _model(upstream, "billed", "billed-2", timeouts={"total": 1}, max_output_tokens=CAP),
        ],
    }
    server = start_gateway(tmp_path_factory.mktemp("hostile"), "hostile", config)
    yield server
    server.stop()


def _chat(gateway: Server, model: str, text: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=30)


def _attempts(gateway: Server, response: httpx.Response) -> list[tuple[str, str, str | None]]:
    record = usage_record(gateway, response.headers["x-request-id"])
    return [(a["deployment"], a["outcome"], a["reason"]) for a in json.loads(record["attempts"])]


def _sent(upstream: Scripted, what: str) -> int:
    time.sleep(0.3)  # time for a second copy to arrive, were one sent
    return upstream.received[what]


@pytest.mark.parametrize(
    ("what", "status", "reason"),
    [("hangup", 502, "bad_gateway"), ("stall", 504, "upstream_timeout")],
    ids=["hung-up-after-the-request", "half-a-head-then-silence"],
)
def test_a_request_the_upstream_may_have_acted_on_is_sent_once_per_deployment(
    gateway: Server, upstream: Scripted, what: str, status: int, reason: str
) -> None:
    """On a warm keep-alive connection (the pool's resend path), with three attempts allowed."""
    before = upstream.received[what]
    assert _chat(gateway, "solo", "ok").status_code == 200  # a pooled connection to reuse
    failed = _chat(gateway, "solo", what)
    assert failed.status_code == status
    assert _attempts(gateway, failed) == [("solo-1", "failed", reason)]
    assert _sent(upstream, what) == before + 1
    time.sleep(COOLDOWN + 0.1)  # the circuit (threshold 1) opened: let it cool down


@pytest.mark.parametrize(
    ("what", "status", "reason"),
    [("hangup", 502, "bad_gateway"), ("stall", 504, "upstream_timeout")],
    ids=["hung-up-after-the-request", "half-a-head-then-silence"],
)
def test_the_next_deployment_gets_it_once_and_every_send_is_recorded(
    gateway: Server, upstream: Scripted, what: str, status: int, reason: str
) -> None:
    before = upstream.received[what]
    assert _chat(gateway, "pair", "ok").status_code == 200
    failed = _chat(gateway, "pair", what)
    assert failed.status_code == status
    assert _attempts(gateway, failed) == [
        ("pair-1", "failed", reason),
        ("pair-2", "failed", reason),
    ]
    assert _sent(upstream, what) == before + 2
    time.sleep(COOLDOWN + 0.1)


def test_a_probe_answered_with_a_400_is_released(gateway: Server, upstream: Scripted) -> None:
    """The 400 is the request's fault: it neither keeps the deployment shut nor counts."""
    opened = _chat(gateway, "probed", "fail")
    assert opened.status_code == 502
    refused = _chat(gateway, "probed", "ok")
    assert refused.status_code == 503
    assert _attempts(gateway, refused)[0][1] == "skipped"
    time.sleep(COOLDOWN + 0.1)
    probe = _chat(gateway, "probed", "bad")
    assert probe.status_code == 400
    assert _attempts(gateway, probe) == [("probed-1", "failed", "upstream_rejected")]
    answered = _chat(gateway, "probed", "ok")  # probes again, and recovers
    assert answered.status_code == 200
    assert _attempts(gateway, answered) == [("probed-1", "ok", None)]


def test_a_connection_the_upstream_closed_while_idle_is_never_a_failure(
    gateway: Server, upstream: Scripted
) -> None:
    before = upstream.received["ok"]
    for _ in range(4):
        response = _chat(gateway, "probed", "ok")
        assert response.status_code == 200
        time.sleep(IDLE_TIMEOUT * 2)  # the upstream closes the pooled connection meanwhile
    assert _sent(upstream, "ok") == before + 4


@pytest.mark.parametrize(
    ("what", "status"),
    [("stall", 504), ("cut", 502), ("garbled", 502)],
    ids=["deadline-while-generating", "answer-broke-off", "unreadable-success"],
)
def test_a_generation_that_never_arrived_whole_is_billed_for_each_send(
    gateway: Server, upstream: Scripted, what: str, status: int
) -> None:
    """The upstream received the request and generated (for all the gateway can tell): each of
    the two sends is billed as its prompt plus the output cap it was sent, flagged estimated."""
    failed = _chat(gateway, "billed", what)
    assert failed.status_code == status
    record = usage_record(gateway, failed.headers["x-request-id"])
    assert [a["deployment"] for a in json.loads(record["attempts"])] == ["billed-1", "billed-2"]
    assert record["usage_estimated"] and not record["usage_reported"]
    assert record["completion_tokens"] == 2 * CAP
    assert record["prompt_tokens"] > 0 and record["cost_nanos"] > 0
    time.sleep(COOLDOWN + 0.1)


def test_a_hang_up_before_any_answer_is_not_billed(gateway: Server, upstream: Scripted) -> None:
    """A close before any answer is also how a server that never read the request (a keep-alive
    race) ends a connection: nothing is known to have been generated."""
    failed = _chat(gateway, "billed", "hangup")
    assert failed.status_code == 502
    record = usage_record(gateway, failed.headers["x-request-id"])
    assert record["completion_tokens"] == 0 and not record["cost_nanos"]
    time.sleep(COOLDOWN + 0.1)
