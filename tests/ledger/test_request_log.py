"""One log line per request: id, key name, model, deployment, status, tokens, cost, latency —
and never the request's content."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import httpx
import pytest

from entrepot.ledger.request_log import line, log_requests
from entrepot.types import UsageRecord
from tests.conftest import UPSTREAM_KEY, Server, fake_model, start_gateway

SECRET_PROMPT = "the merger code name is bluefin"
PRICE = {"input_per_1m": "2.00", "output_per_1m": "8.00", "as_of": "2026-11-01"}


def test_a_line_says_who_what_and_how_it_went() -> None:
    record = UsageRecord(
        request_id="req_1", endpoint="chat.completions", key_name="research",
        model_alias="fake/echo", deployment="openai_compatible:fake/echo", status=200,
        prompt_tokens=1_234, completion_tokens=56, cost_nanos=2_500_000_123, currency="USD",
        latency_ms=842,
    )  # fmt: skip
    assert line(record) == (
        "request req_1 key=research model=fake/echo deployment=openai_compatible:fake/echo"
        " status=200 tokens=1234/56 cost=2.500000123 USD latency=842ms"
    )
    unknown = UsageRecord(request_id="req_2", endpoint="messages", status=404, shadow_of="req_1")
    assert line(unknown) == (
        "request req_2 key=- model=- deployment=- status=404 tokens=0/0 cost=- latency=0ms"
        " shadow_of=req_1"
    )


def test_nothing_is_formatted_below_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="entrepot.requests")
    log_requests([UsageRecord(request_id="r", endpoint="e")])
    assert caplog.records == []
    caplog.set_level(logging.INFO, logger="entrepot.requests")
    log_requests([UsageRecord(request_id="r1", endpoint="e"), UsageRecord("r2", "e")])
    (logged,) = caplog.records
    assert logged.getMessage().splitlines()[1:] == [
        line(UsageRecord("r1", "e")),
        line(UsageRecord("r2", "e")),
    ]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_openai: Server) -> Iterator[Server]:
    config = {
        "store": {"ledger_flush_seconds": 0.05},
        "models": [fake_model(fake_openai, "fake/echo", "echo-model", price=PRICE)],
    }
    tmp = tmp_path_factory.mktemp("request-log")
    server = start_gateway(tmp, "logged", config, {"FAKE_UPSTREAM_KEY": UPSTREAM_KEY})
    yield server
    server.stop()


def test_a_served_request_is_logged_without_its_content(gateway: Server) -> None:
    body = {"model": "fake/echo", "messages": [{"role": "user", "content": SECRET_PROMPT}]}
    answer = httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=30)
    assert answer.status_code == 200
    request_id = answer.headers["x-request-id"]
    deadline = time.monotonic() + 10
    while f"request {request_id} " not in gateway.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = gateway.log.read_text()
    (logged,) = [text for text in log.splitlines() if text.startswith(f"request {request_id} ")]
    assert "key=- model=fake/echo deployment=openai_compatible:fake/echo status=200" in logged
    assert " USD latency=" in logged
    assert SECRET_PROMPT not in log and "bluefin" not in log
