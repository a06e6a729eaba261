"""Bad input: each case gets the right 4xx in OpenAI's error format, is billed nothing, and
leaves the server up."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LOCAL, Server, create_key, usage_record
from tests.schemas import validate


def _post(gateway: Server, key: str | None, content: bytes | str, **headers: str) -> httpx.Response:
    sent = {"content-type": "application/json", **headers}
    if key:
        sent["authorization"] = f"Bearer {key}"
    return httpx.post(
        gateway.url + "/v1/chat/completions", content=content, headers=sent, timeout=30
    )


def _assert_error(
    response: httpx.Response, status: int, param: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    validate(body, "ErrorResponse")
    if param is not None:
        assert body["error"]["param"] == param
    assert body["error"]["message"]
    return dict(body["error"])


def _assert_unbilled_and_up(gateway: Server, response: httpx.Response) -> None:
    record = usage_record(gateway, response.headers["x-request-id"])
    assert record["status"] == response.status_code
    assert record["cost_nanos"] is None and record["prompt_tokens"] == 0
    assert httpx.get(gateway.url + "/health").json()["status"] == "ok"


BAD_BODIES = [
    ('{"model": "fake/echo", "messages": [', 400, None, "not valid JSON"),
    ('{"model": "fake/echo"}', 400, "messages", "messages is required"),
    ('{"model": "fake/echo", "messages": "hi"}', 400, "messages", "non-empty array"),
    ('{"model": "fake/echo", "messages": []}', 400, "messages", "non-empty array"),
    ('{"messages": [{"role": "user", "content": "x"}]}', 400, "model", "model is required"),
    ('{"model": 42, "messages": [{"role": "user", "content": "x"}]}', 400, "model", "string"),
    (
        '{"model": "fake/echo", "messages": [{"role": "wizard", "content": "x"}]}',
        400,
        "messages[0].role",
        "role must be one of",
    ),
    (
        '{"model": "fake/echo", "messages": [{"role": "user", "content": 5}]}',
        400,
        "messages[0].content",
        "string or an array",
    ),
    (
        '{"model": "fake/echo", "messages": [{"role": "user", "content": "x"}], "max_tokens": -5}',
        400,
        "max_tokens",
        "at least 1",
    ),
    (
        '{"model": "fake/echo", "messages": [{"role": "user", "content": "x"}], "max_tokens": "9"}',
        400,
        "max_tokens",
        "integer",
    ),
    (
        '{"model": "fake/echo", "messages": [{"role": "user", "content": "x"}], "temperature": 9}',
        400,
        "temperature",
        "between 0 and 2",
    ),
    (
        '{"model": "fake/echo", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
        400,
        "stream",
        "boolean",
    ),
    (
        '{"model": "fake/echo", "messages": [{"role": "user", "content": "x"}],'
        ' "stream_options": {"include_usage": true}}',
        400,
        "stream_options",
        "only allowed when stream is true",
    ),
    ("[1, 2, 3]", 400, "", "JSON object"),
    (
        '{"model": "no/such-model", "messages": [{"role": "user", "content": "x"}]}',
        404,
        "model",
        "does not exist",
    ),
]


@pytest.mark.parametrize(("body", "status", "param", "words"), BAD_BODIES)
def test_bad_bodies(
    gateway: Server, client_key: str, body: str, status: int, param: str | None, words: str
) -> None:
    response = _post(gateway, client_key, body)
    error = _assert_error(response, status, param)
    assert words in error["message"]
    _assert_unbilled_and_up(gateway, response)


def test_unknown_model_via_sdk_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model="gpt-nope", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.code == "model_not_found"


def test_ten_megabyte_body_is_rejected(gateway: Server, client_key: str) -> None:
    padding = "x" * (10 * 1024 * 1024)
    body = '{"model": "fake/echo", "messages": [{"role": "user", "content": "' + padding + '"}]}'
    response = _post(gateway, client_key, body)
    _assert_error(response, 413)
    _assert_unbilled_and_up(gateway, response)


def test_chunked_oversized_body_is_rejected(gateway: Server, client_key: str) -> None:
    def pieces() -> Any:
        yield b'{"model": "fake/echo", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * (1024 * 1024)
        yield b'"}]}'

    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=pieces(),
        headers={"content-type": "application/json", "authorization": f"Bearer {client_key}"},
        timeout=30,
    )
    _assert_error(response, 413)


def test_wrong_content_type(gateway: Server, client_key: str) -> None:
    response = _post(gateway, client_key, "model=x", **{"content-type": "text/plain"})
    _assert_error(response, 415)
    _assert_unbilled_and_up(gateway, response)


@pytest.mark.parametrize("key", [None, "ek-not-a-real-key", "sk-something-else"])
def test_missing_or_wrong_key(gateway: Server, key: str | None) -> None:
    response = _post(gateway, key, '{"model": "fake/echo", "messages": []}')
    _assert_error(response, 401)
    _assert_unbilled_and_up(gateway, response)


def test_wrong_key_via_sdk(gateway: Server) -> None:
    bad = openai.OpenAI(base_url=gateway.url + "/v1", api_key="ek-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="fake/echo", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_model_the_key_may_not_use(gateway: Server) -> None:
    key = create_key(gateway, "local-only", allowed_models=[LOCAL])
    limited = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        limited.chat.completions.create(
            model="fake/echo", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.code == "model_not_allowed"
    with pytest.raises(openai.PermissionDeniedError):
        limited.embeddings.create(model="fake/embedder", input="x")
    with pytest.raises(openai.PermissionDeniedError):
        limited.completions.create(model="fake/echo", prompt="x")
    assert [m.id for m in limited.models.list()] == [LOCAL]


def test_revoked_key_stops_working(gateway: Server) -> None:
    key = create_key(gateway, "short-lived")
    short = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    assert short.models.list().data
    revoked = httpx.delete(
        gateway.url + "/admin/keys/short-lived",
        headers={"authorization": "Bearer test-admin-key-0123456789"},
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    with pytest.raises(openai.AuthenticationError):
        short.models.list()


def test_unknown_route_and_method(gateway: Server) -> None:
    _assert_error(httpx.get(gateway.url + "/v1/nothing-here"), 404)
    _assert_error(httpx.get(gateway.url + "/v1/chat/completions"), 405)
