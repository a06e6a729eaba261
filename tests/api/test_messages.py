"""Anthropic's Messages API through the running gateway, with Anthropic's official SDK: an
Anthropic upstream passed through as sent (`fake/claude`), an OpenAI-compatible upstream behind a
translation (`fake/echo`), and the bundled local model. Every body and event is checked against
the SDK's own types, strictly, and each request against its ledger row."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from tests.conftest import LOCAL, Server, create_key, usage_record

JSON = dict[str, Any]
EVENTS: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
HELLO: list[Any] = [{"role": "user", "content": "Say hello in one word."}]
WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
MODELS = ["fake/claude", "fake/echo", LOCAL]


@pytest.fixture(scope="module")
def claude(gateway: Server, client_key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=client_key, max_retries=0, timeout=120)


def strict_message(body: object) -> Message:
    """The body as the SDK's `Message`, validated (not merely constructed), which survives a
    `model_dump` round trip."""
    message = Message.model_validate(body)
    assert Message.model_validate(message.model_dump()) == message
    return message


def sse(
    gateway: Server, key: str, body: JSON, path: str = "/v1/messages"
) -> tuple[list[JSON], httpx.Headers]:
    """The events of a streamed answer, as sent: each `event:` name must be its data's type."""
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    with httpx.stream(
        "POST", gateway.url + path, json={**body, "stream": True}, headers=headers, timeout=120
    ) as response:
        assert response.status_code == 200, response.read()
        lines = [line for line in response.iter_lines() if line]
        answer_headers = response.headers
    events = []
    for name, data in zip(lines[::2], lines[1::2], strict=True):
        event = httpx.Response(200, content=data.removeprefix("data: ")).json()
        assert name == f"event: {event['type']}"
        events.append(event)
    return events, answer_headers


def check_sequence(events: list[JSON]) -> Message:
    """Anthropic's order: message_start, ping, blocks numbered from 0 (each opened, filled and
    closed), message_delta, message_stop — every event valid by the SDK's types. The message
    the SDK assembles from them is returned."""
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["message_start", "ping"]
    assert kinds[-2:] == ["message_delta", "message_stop"]
    opened: list[int] = []
    open_block: int | None = None
    for event in events:
        if event["type"] == "ping":
            continue
        EVENTS.validate_python(event)
        if event["type"] == "content_block_start":
            assert open_block is None and event["index"] == len(opened)
            opened.append(event["index"])
            open_block = event["index"]
        elif event["type"] == "content_block_delta":
            assert event["index"] == open_block
        elif event["type"] == "content_block_stop":
            assert event["index"] == open_block
            open_block = None
    assert open_block is None
    return assemble(events)


def assemble(events: list[JSON]) -> Message:
    """The message the SDK's stream helpers build from these events, validated."""
    snapshot: Any = None
    json_bufs: dict[int, bytes] = {}
    for event in events:
        if event["type"] != "ping":
            snapshot = accumulate_event(
                event=EVENTS.validate_python(event), current_snapshot=snapshot, json_bufs=json_bufs
            )
    return strict_message(snapshot.model_dump())


def billed(gateway: Server, request_id: str, usage: Any) -> JSON:
    """The ledger row of a successful Messages request, billed once with the answer's usage:
    the prompt is input plus cache reads and writes, as OpenAI counts it."""
    row = usage_record(gateway, request_id)
    assert (row["endpoint"], row["status"]) == ("messages", 200)
    prompt = (
        usage.input_tokens
        + (usage.cache_read_input_tokens or 0)
        + (usage.cache_creation_input_tokens or 0)
    )
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, usage.output_tokens)
    assert row["cached_tokens"] == (usage.cache_read_input_tokens or 0)
    assert not row["usage_estimated"]
    return row


def last_request(fake: Server) -> JSON:
    body: JSON = httpx.get(fake.url + "/last-request").json()
    return body


# --- complete answers ---------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_create_answers_in_anthropics_format(
    claude: anthropic.Anthropic, gateway: Server, model: str
) -> None:
    raw = claude.messages.with_raw_response.create(
        model=model, max_tokens=12, messages=HELLO, extra_body={"temperature": 0}
    )
    message = strict_message(raw.http_response.json())
    assert message == raw.parse()
    assert message.model == model and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.output_tokens > 0
    request_id = raw.headers["x-request-id"]
    assert raw.headers["request-id"] == request_id
    row = billed(gateway, request_id, message.usage)
    assert row["model_alias"] == model and row["requested_model"] is None


def test_an_anthropic_upstream_gets_the_body_as_sent(
    claude: anthropic.Anthropic, fake_anthropic: Server
) -> None:
    system: Any = [
        {"type": "text", "text": "Be brief and kind.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Answer in English."},
    ]
    sent: JSON = {
        "model": "fake/claude",
        "max_tokens": 40,
        "system": system,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi there"}]}],
        "metadata": {"user_id": "user-7"},
        "stop_sequences": ["NEVER"],
        "top_k": 5,
        "service_tier": "auto",
    }
    sampling = {"top_k": 5}  # not in this SDK's signature, but in Anthropic's API
    message = claude.messages.create(
        **{k: v for k, v in sent.items() if k not in sampling}, extra_body=sampling
    )
    assert last_request(fake_anthropic) == {**sent, "model": "claude-sonnet-4-5"}
    assert message.model == "fake/claude"
    assert message.id.startswith("msg_fake")  # the upstream's own message, not a rebuilt one
    assert message.usage.cache_read_input_tokens == 4
    assert message.usage.cache_creation_input_tokens == 3


def test_an_openai_compatible_upstream_gets_the_translation(
    claude: anthropic.Anthropic, fake_openai: Server
) -> None:
    image = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    claude.messages.create(
        model="fake/echo",
        max_tokens=30,
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image", "source": image},  # type: ignore[typeddict-item]
                ],
            }
        ],
        stop_sequences=["END"],
        extra_body={"temperature": 0.5, "top_p": 0.9, "top_k": 7},
        metadata={"user_id": "user-7"},
        tools=[WEATHER_TOOL],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        thinking={"type": "enabled", "budget_tokens": 2048},
    )
    sent = last_request(fake_openai)
    assert sent["model"] == "echo-model" and sent["max_tokens"] == 30
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief.\n\nBe kind."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        },
    ]
    assert (sent["stop"], sent["temperature"], sent["top_p"], sent["top_k"]) == (
        ["END"],
        0.5,
        0.9,
        7,
    )
    assert sent["user"] == "user-7" and sent["reasoning_effort"] == "low"
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather",
                "parameters": WEATHER_TOOL["input_schema"],
            },
        }
    ]
    assert (sent["tool_choice"], sent["parallel_tool_calls"]) == ("required", False)


def test_reasoning_becomes_a_thinking_block(claude: anthropic.Anthropic, gateway: Server) -> None:
    raw = claude.messages.with_raw_response.create(
        model="fake/reasoner", max_tokens=30, messages=HELLO
    )
    message = strict_message(raw.http_response.json())
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "let me think"  # type: ignore[union-attr]
    # The upstream's cache hits are reads, outside input_tokens.
    assert message.usage.cache_read_input_tokens == 2
    billed(gateway, raw.headers["x-request-id"], message.usage)


@pytest.mark.parametrize(
    ("model", "expected"),
    [("fake/claude", "stop_sequence"), ("fake/echo", "stop_sequence"), (LOCAL, "max_tokens")],
)
def test_stop_reasons(claude: anthropic.Anthropic, model: str, expected: str) -> None:
    """The Anthropic fake stops on the sequence itself; the echo shows it at the text's end;
    the local model runs into `max_tokens`."""
    message = claude.messages.create(
        model=model,
        max_tokens=1 if model == LOCAL else 50,
        messages=[{"role": "user", "content": "count to three then say END"}],
        stop_sequences=["STOP", "END"],
    )
    assert message.stop_reason == expected
    assert message.stop_sequence == ("END" if expected == "stop_sequence" else None)


def test_a_plain_stop_is_end_turn(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model="fake/echo", max_tokens=50, messages=HELLO, stop_sequences=["NEVER"]
    )
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)


def test_a_cached_answer_is_replayed_in_anthropics_format(gateway: Server) -> None:
    key = create_key(gateway, "messages-cache", cache_ttl_seconds=60)
    client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    for model in ("fake/claude", "fake/echo"):
        body: Any = {
            "model": model,
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "x"}],
        }
        first = client.messages.with_raw_response.create(**body)
        again = client.messages.with_raw_response.create(**body)
        assert (first.headers["x-entrepot-cache"], again.headers["x-entrepot-cache"]) == (
            "miss",
            "hit",
        )
        assert strict_message(again.http_response.json()) == first.parse()


# --- streams ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_stream_events_follow_anthropics_protocol(
    gateway: Server, client_key: str, model: str
) -> None:
    body = {"model": model, "max_tokens": 12, "temperature": 0, "messages": HELLO}
    events, headers = sse(gateway, client_key, body)
    message = check_sequence(events)
    assert message.model == model
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    billed(gateway, headers["x-request-id"], message.usage)


@pytest.mark.parametrize("model", MODELS)
def test_sdk_streams_assemble_the_same_message(claude: anthropic.Anthropic, model: str) -> None:
    options: Any = {"model": model, "max_tokens": 12, "messages": HELLO}
    with claude.messages.stream(**options, extra_body={"temperature": 0}) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert final.content[0].text == text and text  # type: ignore[union-attr]
    assert final.model == model and final.usage.output_tokens > 0
    events = list(claude.messages.create(model=model, max_tokens=12, messages=HELLO, stream=True))
    assert events[0].type == "message_start" and events[-1].type == "message_stop"


def test_a_native_stream_is_relayed_as_sent(
    gateway: Server, client_key: str, fake_anthropic: Server
) -> None:
    body: JSON = {
        "model": "fake/claude",
        "max_tokens": 30,
        "system": "think first",
        "messages": [{"role": "user", "content": "one two"}],
    }
    events, headers = sse(gateway, client_key, body)
    message = check_sequence(events)
    assert last_request(fake_anthropic) == {**body, "model": "claude-sonnet-4-5", "stream": True}
    assert events[0]["message"]["id"].startswith("msg_fake")
    deltas = [e["delta"]["type"] for e in events if e["type"] == "content_block_delta"]
    assert "signature_delta" in deltas  # an event the internal format has no word for
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].signature == "sig"  # type: ignore[union-attr]
    billed(gateway, headers["x-request-id"], message.usage)


def test_translated_reasoning_streams_as_a_thinking_block(gateway: Server, client_key: str) -> None:
    body = {"model": "fake/reasoner", "max_tokens": 30, "messages": HELLO}
    events, headers = sse(gateway, client_key, body)
    message = check_sequence(events)
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "let me think"  # type: ignore[union-attr]
    assert message.usage.cache_read_input_tokens == 2
    billed(gateway, headers["x-request-id"], message.usage)


def test_stream_stop_sequence(gateway: Server, client_key: str) -> None:
    for model in ("fake/claude", "fake/echo"):
        body = {
            "model": model,
            "max_tokens": 50,
            "stop_sequences": ["END"],
            "messages": [{"role": "user", "content": "then say END"}],
        }
        message = check_sequence(sse(gateway, client_key, body)[0])
        assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")
