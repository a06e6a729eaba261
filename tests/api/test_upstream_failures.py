"""Upstream failures become 502/504 in OpenAI's format and are recorded as failed."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import Server, usage_record
from tests.schemas import validate

MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "hello there"}]


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("fake/broken", 502, "bad_gateway"),
        ("fake/reset", 502, "bad_gateway"),
        ("dead/unreachable", 502, "bad_gateway"),
        ("fake/hang", 504, "upstream_timeout"),
        ("fake/rate-limited", 429, "upstream_rejected"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_failure_is_reported_and_recorded(
    gateway: Server, client_key: str, model: str, status: int, code: str, stream: bool
) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": model, "messages": MESSAGES, "stream": stream},
        headers={"authorization": f"Bearer {client_key}"},
        timeout=30,
    )
    assert response.status_code == status, response.text
    body = response.json()
    validate(body, "ErrorResponse")
    assert body["error"]["code"] == code
    assert "test-upstream-key" not in response.text
    record = usage_record(gateway, response.headers["x-request-id"])
    assert (record["status"], record["error_type"]) == (status, code)
    # Unpriced models; the one received whole that timed out may have generated up to its cap.
    generated = model == "fake/hang"
    assert record["cost_nanos"] is None
    assert (record["completion_tokens"] > 0, bool(record["usage_estimated"])) == (generated,) * 2
    assert httpx.get(gateway.url + "/health").status_code == 200


def test_sdk_sees_upstream_errors_as_api_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="fake/broken", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.status_code == 502


def test_drop_mid_stream_ends_with_an_error_event(gateway: Server, client_key: str) -> None:
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json={"model": "fake/midstream", "messages": MESSAGES, "stream": True},
        headers={"authorization": f"Bearer {client_key}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert "[DONE]" not in events[-1]
    assert '"error"' in events[-1]
    record = usage_record(gateway, request_id)
    assert record["status"] == 502 and record["stream"] == 1
