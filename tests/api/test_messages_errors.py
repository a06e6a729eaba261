"""Failures on the Messages API in Anthropic's format and with its status codes, so that
Anthropic's SDK raises the exception class it would for the same failure at Anthropic; refused
input reaches no upstream and bills nothing; a stream that fails after it began ends with an
`error` event."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from entrepot.api.messages.errors import error_response
from entrepot.exceptions import (
    AuthenticationError,
    BudgetExceededError,
    EgressDeniedError,
    GatewayError,
    InvalidRequestError,
    ModelNotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    RateLimitedError,
    UnsupportedMediaTypeError,
    UpstreamError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
)
from tests.conftest import Server, create_key, usage_record

HELLO: list[Any] = [{"role": "user", "content": "hello there"}]
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "anthropic-beta": "some-feature-2025-01-01"}


def post(gateway: Server, key: str, body: Any, path: str = "/v1/messages") -> httpx.Response:
    headers = {**ANTHROPIC_HEADERS, "x-api-key": key}
    return httpx.post(gateway.url + path, json=body, headers=headers, timeout=60)


def anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    """Check an error answer's shape; its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind
    assert body["request_id"] == response.headers["x-request-id"] == response.headers["request-id"]
    assert set(body) == {"type", "error", "request_id"}
    message: str = body["error"]["message"]
    return message


def received(fake: Server) -> int:
    count: int = httpx.get(fake.url + "/received").json()
    return count


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"model": "fake/claude", "messages": HELLO}, "max_tokens: Field required"),
        (
            {
                "model": "fake/claude",
                "max_tokens": 10,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}
                        ],
                    }
                ],
            },
            "messages.0.content.0: unexpected `tool_use_id`",
        ),
        (
            {
                "model": "fake/claude",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": [{"type": "hologram", "data": "x"}]}],
            },
            "messages.0.content.0.type: 'hologram' blocks are not supported",
        ),
        (
            {"model": "fake/claude", "max_tokens": 10, "messages": HELLO, "mcp_servers": []},
            "mcp_servers: this field is not supported",
        ),
        (
            {
                "model": "fake/claude",
                "max_tokens": 10,
                "messages": HELLO,
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "tools.0.type: 'web_search_20250305' is one of Anthropic's server tools",
        ),
    ],
)
def test_bad_input_is_a_400_and_costs_nothing(
    gateway: Server, client_key: str, fake_anthropic: Server, body: Any, names: str
) -> None:
    before = received(fake_anthropic)
    response = post(gateway, client_key, body)
    assert anthropic_error(response, 400, "invalid_request_error").startswith(names)
    assert received(fake_anthropic) == before
    row = usage_record(gateway, response.headers["x-request-id"])
    assert (row["endpoint"], row["status"], row["error_type"]) == (
        "messages",
        400,
        "invalid_request_error",
    )
    assert row["cost_nanos"] in (None, 0) and row["prompt_tokens"] == row["completion_tokens"] == 0
    assert row["deployment"] is None


def test_the_sdk_raises_bad_request(gateway: Server, client_key: str) -> None:
    claude = anthropic.Anthropic(base_url=gateway.url, api_key=client_key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="fake/claude",
            max_tokens=10,
            messages=[
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
                },
                *HELLO,
            ],  # type: ignore[list-item]
        )
    assert caught.value.type == "invalid_request_error"
    assert "`tool_use` ids were found without `tool_result` blocks" in str(caught.value.api_message)
    assert caught.value.request_id is not None and caught.value.request_id.startswith("req_")


def test_authentication(gateway: Server) -> None:
    for headers in ({}, {"x-api-key": "ent-wrong-key-0123456789"}):
        response = httpx.post(gateway.url + "/v1/messages", json={}, headers=headers)
        anthropic_error(response, 401, "authentication_error")
    claude = anthropic.Anthropic(base_url=gateway.url, api_key="ent-wrong-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        claude.messages.create(model="fake/claude", max_tokens=5, messages=HELLO)
    assert caught.value.type == "authentication_error"


def test_bearer_tokens_are_accepted_too(gateway: Server, client_key: str) -> None:
    response = httpx.post(
        gateway.url + "/v1/messages?beta=true",
        json={"model": "fake/claude", "max_tokens": 5, "messages": HELLO},
        headers={**ANTHROPIC_HEADERS, "authorization": f"Bearer {client_key}"},
    )
    assert response.status_code == 200 and response.json()["type"] == "message"


def test_refusals_raise_the_sdks_classes(gateway: Server, client_key: str) -> None:
    narrow = create_key(gateway, "messages-narrow", allowed_models=["fake/echo"])
    broke = create_key(gateway, "messages-broke", budget={"amount": "0", "currency": "USD"})
    cases: list[tuple[str, str, type[anthropic.APIStatusError], int, str]] = [
        (narrow, "fake/claude", anthropic.PermissionDeniedError, 403, "permission_error"),
        (client_key, "claude-nonexistent", anthropic.NotFoundError, 404, "not_found_error"),
        (broke, "fake/echo", anthropic.PaymentRequiredError, 402, "billing_error"),
        (client_key, "fake/rate-limited", anthropic.RateLimitError, 429, "rate_limit_error"),
        (client_key, "fake/broken", anthropic.InternalServerError, 502, "api_error"),
        (client_key, "fake/hang", anthropic.GatewayTimeoutError, 504, "timeout_error"),
    ]
    for key, model, error, status, kind in cases:
        claude = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
        with pytest.raises(error) as caught:
            claude.messages.create(model=model, max_tokens=5, messages=HELLO)
        assert (caught.value.status_code, caught.value.type) == (status, kind), model
        row = usage_record(gateway, str(caught.value.request_id))
        assert (row["endpoint"], row["status"]) == ("messages", status)
        assert row["cost_nanos"] is None


def test_upstream_retry_after_is_passed_on(gateway: Server, client_key: str) -> None:
    response = post(
        gateway, client_key, {"model": "fake/rate-limited", "max_tokens": 5, "messages": HELLO}
    )
    anthropic_error(response, 429, "rate_limit_error")
    assert response.headers["retry-after"] == "7"


def test_a_body_too_large_is_request_too_large(gateway: Server, client_key: str) -> None:
    claude = anthropic.Anthropic(base_url=gateway.url, api_key=client_key, max_retries=0)
    huge = "x" * (9 * 1024 * 1024)
    with pytest.raises(anthropic.ContentTooLargeError) as caught:
        claude.messages.create(
            model="fake/claude", max_tokens=5, messages=[{"role": "user", "content": huge}]
        )
    assert caught.value.type == "request_too_large"


@pytest.mark.parametrize(
    ("model", "message"), [("fake/claude", "overloaded_error: Overloaded"), ("fake/midstream", "")]
)
def test_a_failure_mid_stream_is_an_error_event(
    gateway: Server, client_key: str, model: str, message: str
) -> None:
    body = {
        "model": model,
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "fail-midstream now"}],
    }
    headers = {**ANTHROPIC_HEADERS, "x-api-key": client_key}
    with httpx.stream(
        "POST", gateway.url + "/v1/messages", json=body, headers=headers, timeout=60
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert lines[0] == "event: message_start"
    assert lines[-2] == "event: error"
    error = httpx.Response(200, content=lines[-1].removeprefix("data: ")).json()
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert message in error["error"]["message"]
    assert "event: message_stop" not in lines
    row = usage_record(gateway, response.headers["x-request-id"])
    assert (row["status"], row["stream"]) == (502, 1)
    claude = anthropic.Anthropic(base_url=gateway.url, api_key=client_key, max_retries=0)
    with pytest.raises(anthropic.APIStatusError, match="api_error"):
        for _event in claude.messages.create(**body):
            pass


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (InvalidRequestError("x"), 400, "invalid_request_error"),
        (AuthenticationError("x"), 401, "authentication_error"),
        (BudgetExceededError("x", headers={}), 402, "billing_error"),
        (EgressDeniedError("x"), 403, "permission_error"),
        (ModelNotFoundError("x"), 404, "not_found_error"),
        (PayloadTooLargeError("x"), 413, "request_too_large"),
        (UnsupportedMediaTypeError("x"), 415, "invalid_request_error"),
        (RateLimitedError("x", kind="tokens", headers={}), 429, "rate_limit_error"),
        (UpstreamRejectedError("x", status_code=409), 409, "invalid_request_error"),
        (UpstreamRejectedError("x", status_code=529), 529, "overloaded_error"),
        (GatewayError("x"), 500, "api_error"),
        (UpstreamError("x"), 502, "api_error"),
        (OverloadedError("x"), 529, "overloaded_error"),
        (UpstreamTimeoutError("x"), 504, "timeout_error"),
    ],
)
def test_status_and_type_for_every_failure(error: GatewayError, status: int, kind: str) -> None:
    answer, body = error_response(error)
    assert answer == status
    assert httpx.Response(200, content=body).json() == {
        "type": "error",
        "error": {"type": kind, "message": "x"},
    }


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_another_method_is_a_405_in_anthropics_format(gateway: Server, path: str) -> None:
    response = httpx.get(gateway.url + path)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_another_method_on_chat_completions_stays_openai_format(gateway: Server) -> None:
    response = httpx.get(gateway.url + "/v1/chat/completions")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
