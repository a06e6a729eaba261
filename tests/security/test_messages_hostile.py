"""Hostile Messages API bodies, sent to a real gateway in front of a translated model
(`fake/echo`) and a model speaking Anthropic's protocol (`fake/claude`).

Each refused body is a 4xx in Anthropic's error format (`{"type": "error", "error": {"type",
"message"}}`), recorded in the ledger at no cost; a body that is merely unusual (NUL bytes, huge
but valid numbers) is served as a Message. Never a 5xx, and the gateway stays up after each.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Server, usage_record
from tests.security.surfaces import CLAUDE, ECHO, surfaces_gateway, surfaces_key

__all__ = ["surfaces_gateway", "surfaces_key"]

HELLO = [{"role": "user", "content": "hello"}]
CALL = {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}}
TOOL = {"name": "lookup", "input_schema": {"type": "object"}}
DEEP = 200


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"a": value}
    return value


def body(**fields: Any) -> dict[str, Any]:
    """A valid body (for the model the test sets), with `fields` replaced or added."""
    return {"model": None, "max_tokens": 16, "messages": HELLO, **fields}


def user(*blocks: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(blocks)}]


def called_then(*blocks: Any) -> list[dict[str, Any]]:
    """A tool call made, then a user turn with `blocks`."""
    return [
        {"role": "user", "content": "look it up"},
        {"role": "assistant", "content": [CALL]},
        {"role": "user", "content": list(blocks)},
    ]


TYPED_FIELDS = (
    *("model", "max_tokens", "messages", "system", "metadata", "stop_sequences", "stream"),
    *("temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "output_config"),
)
WRONG_TYPES = {
    f"{field}-{label}": body(**{field: value})
    for field in TYPED_FIELDS
    for label, value in (("list", [1, {}]), ("object", {"x": [1]}), ("number", -3.5))
    if (field, label) != ("metadata", "object")  # an object, as metadata is
}

REFUSED: dict[str, Any] = {
    **WRONG_TYPES,
    "not-an-object": [body()],
    "null-body": None,
    "max-tokens-negative": body(max_tokens=-1),
    "max-tokens-zero": body(max_tokens=0),
    "max-tokens-huge": body(max_tokens=10**30),
    "max-tokens-float": body(max_tokens=16.5),
    "max-tokens-bool": body(max_tokens=True),
    "max-tokens-missing": {"model": None, "messages": HELLO},
    "temperature-above-one": body(temperature=1.5),
    "top-k-huge": body(top_k=10**40),
    "stream-yes": body(stream="yes"),
    "unknown-field": body(frequency_penalty=1),
    "unknown-role": body(messages=[{"role": "system", "content": "hi"}]),
    "role-list": body(messages=[{"role": ["user"], "content": "hi"}]),
    "role-missing": body(messages=[{"content": "hi"}]),
    "message-not-object": body(messages=["hi"]),
    "empty-content": body(messages=[{"role": "user", "content": []}]),
    "empty-messages": body(messages=[]),
    "content-number": body(messages=[{"role": "user", "content": 42}]),
    "unknown-block": body(messages=user({"type": "hologram", "data": "x"})),
    "block-type-object": body(messages=user({"type": {"text": "x"}, "text": "x"})),
    "block-not-object": body(messages=user("text")),
    "nested-unknown-blocks": body(
        messages=called_then(
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "tool_use"}]}
        )
    ),
    "text-number": body(messages=user({"type": "text", "text": 7})),
    "text-null": body(messages=user({"type": "text", "text": None})),
    "text-object": body(messages=user({"type": "text", "text": {"t": "x"}})),
    "tool-result-without-tool-use": body(
        messages=user({"type": "tool_result", "tool_use_id": "toolu_9", "content": "ok"})
    ),
    "tool-result-id-list": body(
        messages=called_then({"type": "tool_result", "tool_use_id": ["toolu_1"]})
    ),
    "tool-use-unanswered": body(
        messages=[*HELLO, {"role": "assistant", "content": [CALL]}, *HELLO]
    ),
    "tool-use-in-user-turn": body(messages=user(CALL)),
    "tool-input-not-object": body(
        messages=[*HELLO, {"role": "assistant", "content": [{**CALL, "input": "q=x"}]}]
    ),
    "tool-too-deep-to-forward": body(
        messages=[*HELLO, {"role": "assistant", "content": [{**CALL, "input": nested(300)}]}]
    ),
    "thinking-not-string": body(
        messages=[*HELLO, {"role": "assistant", "content": [{"type": "thinking", "thinking": 1}]}]
    ),
    "image-source-list": body(messages=user({"type": "image", "source": ["x"]})),
    "image-url-not-http": body(
        messages=user({"type": "image", "source": {"type": "url", "url": "file:///etc/passwd"}})
    ),
    "system-block-not-text": body(system=[{"type": "image"}]),
    "system-text-number": body(system=[{"type": "text", "text": 1}]),
    "server-tool": body(tools=[{"type": "web_search_20250305", "name": "web_search"}]),
    "tool-without-schema": body(tools=[{"name": "lookup"}]),
    "tool-type-object": body(tools=[{**TOOL, "type": {"custom": True}}]),
    "tool-choice-unknown": body(tools=[TOOL], tool_choice={"type": "all"}),
    "tool-choice-type-list": body(tools=[TOOL], tool_choice={"type": ["auto"]}),
    "tool-choice-name-number": body(tools=[TOOL], tool_choice={"type": "tool", "name": 3}),
    "thinking-budget-string": body(thinking={"type": "enabled", "budget_tokens": "lots"}),
    "thinking-type-list": body(thinking={"type": ["enabled"]}),
    "effort-object": body(output_config={"effort": {"level": "max"}}),
    "format-not-object": body(output_config={"format": "json"}),
    "stop-sequences-numbers": body(stop_sequences=[1, 2]),
    "metadata-user-number": body(metadata={"user_id": 5}),
}

SERVED: dict[str, Any] = {
    "nul-bytes": body(messages=[{"role": "user", "content": "a\u0000b"}]),
    "nul-in-block": body(messages=user({"type": "text", "text": "\u0000" * 100})),
    "deep-tool-input": body(
        messages=[
            {"role": "user", "content": "look it up"},
            {"role": "assistant", "content": [{**CALL, "input": nested(DEEP)}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]},
        ]
    ),
    "five-thousand-messages": body(
        messages=[
            {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"}
            for i in range(5001)
        ]
    ),
    "max-tokens-large": body(max_tokens=2**31),
    "empty-system": body(system=[]),
}

RAW: dict[str, bytes] = {
    "lone-surrogate": b'{"model": "MODEL", "max_tokens": 16, "messages": [{"role": "user",'
    b' "content": "\\ud800"}]}',
    "lone-surrogate-system": b'{"model": "MODEL", "max_tokens": 16, "system": "\\udfff",'
    b' "messages": [{"role": "user", "content": "hi"}]}',
    "invalid-utf8": b'{"model": "MODEL", "max_tokens": 16, "messages": [{"role": "user",'
    b' "content": "\xff\xfe"}]}',
    "huge-int-literal": b'{"model": "MODEL", "max_tokens": ' + b"9" * 5000 + b', "messages": []}',
    "float-overflow": b'{"model": "MODEL", "max_tokens": 1e400, "messages": []}',
    "nan": b'{"model": "MODEL", "max_tokens": NaN, "messages": []}',
    "truncated": b'{"model": "MODEL", "max_tokens": 16, "messages": [',
    "deep-arrays": b"[" * 100_000,
}

MODELS = pytest.mark.parametrize("model", [ECHO, CLAUDE])


def send(gateway: Server, key: str, content: bytes, path: str = "/v1/messages") -> httpx.Response:
    headers = {"content-type": "application/json", "x-api-key": key}
    return httpx.post(gateway.url + path, content=content, headers=headers, timeout=60)


def encoded(value: Any, model: str) -> bytes:
    if isinstance(value, dict) and "model" in value and value["model"] is None:
        value = {**value, "model": model}
    return json.dumps(value).encode()


def assert_refused(response: httpx.Response, gateway: Server) -> None:
    """A 4xx in Anthropic's error format, recorded unbilled; the gateway still up."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    error = response.json()
    assert error["type"] == "error", error
    assert set(error["error"]) == {"type", "message"}, error
    assert isinstance(error["error"]["type"], str) and isinstance(error["error"]["message"], str)
    request_id = response.headers.get("x-request-id")
    if request_id is not None:  # refused before a request began (auth, body): nothing to bill
        row = usage_record(gateway, request_id)
        assert row["status"] == response.status_code
        assert row["cost_nanos"] in (None, 0), row
        assert row["prompt_tokens"] == row["completion_tokens"] == 0, row
    assert httpx.get(gateway.url + "/health").status_code == 200


@MODELS
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_bad_bodies_are_refused_in_anthropics_format(
    surfaces_gateway: Server, surfaces_key: str, name: str, model: str
) -> None:
    response = send(surfaces_gateway, surfaces_key, encoded(REFUSED[name], model))
    assert_refused(response, surfaces_gateway)


@MODELS
@pytest.mark.parametrize("name", sorted(RAW))
def test_bad_json_is_refused_in_anthropics_format(
    surfaces_gateway: Server, surfaces_key: str, name: str, model: str
) -> None:
    response = send(surfaces_gateway, surfaces_key, RAW[name].replace(b"MODEL", model.encode()))
    assert_refused(response, surfaces_gateway)


@MODELS
@pytest.mark.parametrize("name", sorted(SERVED))
def test_unusual_bodies_are_served(
    surfaces_gateway: Server, surfaces_key: str, name: str, model: str
) -> None:
    response = send(surfaces_gateway, surfaces_key, encoded(SERVED[name], model))
    assert response.status_code == 200, response.text[:500]
    answer = response.json()
    assert answer["type"] == "message" and answer["role"] == "assistant", answer
    assert httpx.get(surfaces_gateway.url + "/health").status_code == 200


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_count_tokens_refuses_bad_bodies_too(
    surfaces_gateway: Server, surfaces_key: str, name: str
) -> None:
    value = REFUSED[name]
    if isinstance(value, dict) and "max_tokens" in name:
        pytest.skip("count_tokens takes no max_tokens")
    response = send(
        surfaces_gateway, surfaces_key, encoded(value, ECHO), "/v1/messages/count_tokens"
    )
    if response.status_code == 200:  # fields count_tokens does not read
        assert isinstance(response.json()["input_tokens"], int)
        return
    assert_refused(response, surfaces_gateway)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from([name for name in TYPED_FIELDS if name != "model"])


@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    field=FIELDS,
    value=JSON_VALUES,
    block=st.dictionaries(
        st.sampled_from(
            ["type", "text", "id", "name", "input", "tool_use_id", "content", "source"]
        ),
        JSON_VALUES | st.sampled_from(["text", "tool_use", "tool_result", "image", "thinking"]),
        max_size=5,
    ),
)
def test_any_value_anywhere_is_never_a_server_error(
    surfaces_gateway: Server, surfaces_key: str, field: str, value: Any, block: Any
) -> None:
    """A random JSON value in one field, and a random block in the user turn."""
    fuzzed = {**body(model=ECHO, messages=user(block)), field: value}
    response = send(surfaces_gateway, surfaces_key, json.dumps(fuzzed).encode())
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        error = response.json()
        assert error["type"] == "error" and set(error["error"]) == {"type", "message"}, error
