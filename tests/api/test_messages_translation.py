"""The Messages surface's translations, without a server: a Messages body into the internal
chat body (every text where the personal-data detector reads it), an internal answer and its
stream chunks back into Anthropic's message and events."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from anthropic.types import Message

from entrepot.api.messages.answer import Asked, message
from entrepot.api.messages.events import MessagesEvents
from entrepot.api.messages.request import internal_body
from entrepot.api.validation import validate_chat
from entrepot.config import DetectorConfig
from entrepot.exceptions import InvalidRequestError, UpstreamError, UpstreamTimeoutError
from entrepot.policy.detector import PiiDetector
from entrepot.providers.anthropic import NATIVE_EVENT, NATIVE_MESSAGE
from tests.api.test_messages import assemble, check_sequence

JSON = dict[str, Any]
EMAIL = "jane.doe@example.com"
CALL: JSON = {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}}


def body(*messages: JSON, **fields: Any) -> JSON:
    return {"model": "claude-x", "max_tokens": 10, "messages": list(messages), **fields}


def user(content: Any) -> JSON:
    return {"role": "user", "content": content}


def assistant(content: Any) -> JSON:
    return {"role": "assistant", "content": content}


def result(content: Any, **fields: Any) -> JSON:
    return {"type": "tool_result", "tool_use_id": "toolu_1", "content": content, **fields}


def refused(request: JSON, where: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        internal_body(request)
    assert caught.value.message.startswith(where), caught.value.message
    assert caught.value.param == where


# --- requests -----------------------------------------------------------------------------


def test_system_blocks_and_user_blocks() -> None:
    image = {"type": "url", "url": "https://example.com/cat.png"}
    internal = internal_body(
        body(
            user([{"type": "text", "text": "look"}, {"type": "image", "source": image}]),
            system=[{"type": "text", "text": "A.", "cache_control": {"type": "ephemeral"}}],
        )
    )
    assert internal["messages"] == [
        {"role": "system", "content": "A."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            ],
        },
    ]
    assert validate_chat(internal) is internal


def test_documents() -> None:
    text = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}}
    pdf = {
        "type": "document",
        "title": "a.pdf",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
    }
    [turn] = internal_body(body(user([text, pdf])))["messages"]
    assert turn["content"] == [
        {"type": "text", "text": "d"},
        {
            "type": "file",
            "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
        },
    ]
    url = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    refused(body(user([url])), "messages.0.content.0.source")


def test_tool_results_come_first_and_the_rest_after_in_order() -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
    }
    internal = internal_body(
        body(
            user("go"),
            assistant([{"type": "redacted_thinking", "data": "opaque"}, CALL]),
            user(
                [
                    {"type": "text", "text": "and?"},
                    result(
                        [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}, image],
                        is_error=True,
                    ),
                ]
            ),
        )
    )
    assert internal["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q":"x"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: a\nb"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "and?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("messages", "where"),
    [
        ([user([result("x")])], "messages.0.content.0"),
        ([user("go"), assistant([CALL]), user("no result")], "messages.2"),
        ([user("go"), assistant([CALL]), assistant("again")], "messages.2"),
        ([user("go"), assistant([CALL]), user([result("x"), result("y")])], "messages.2.content.1"),
        ([user([{"type": "server_tool_use"}])], "messages.0.content.0.type"),
        ([assistant([{"type": "image", "source": {}}])], "messages.0.content.0.type"),
        ([{"role": "system", "content": "x"}], "messages.0.role"),
        ([user(None)], "messages.0.content"),
        ([assistant([{**CALL, "input": "x"}])], "messages.0.content.0.input"),
    ],
)
def test_conversations_anthropic_refuses(messages: list[JSON], where: str) -> None:
    refused(body(*messages), where)


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"container": "c"}, "container"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "sometimes"}}, "thinking.type"),
        ({"tools": [{"name": "f"}]}, "tools.0.input_schema"),
        (
            {"tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "tool"}},
            "tool_choice.name",
        ),
        ({"output_config": {"format": {"type": "regex"}}}, "output_config.format.type"),
        ({"metadata": {"user_id": 7}}, "metadata.user_id"),
    ],
)
def test_fields_anthropic_refuses(fields: JSON, where: str) -> None:
    request = body(user("hi"), **fields)
    if fields.get("max_tokens", 1) is None:
        del request["max_tokens"]
    refused(request, where)


def test_hints_change_nothing_and_counting_needs_no_max_tokens() -> None:
    hints = {"service_tier": "auto", "cache_control": {"type": "ephemeral"}, "speed": "fast"}
    assert internal_body(body(user("hi"), **hints)) == internal_body(body(user("hi")))
    counted = internal_body({"model": "m", "messages": [user("hi")]}, counting=True)
    assert "max_tokens" not in counted


@pytest.mark.parametrize(
    ("choice", "internal", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
        ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}, None),
        ({"type": "none", "disable_parallel_tool_use": True}, "none", None),
    ],
)
def test_tool_choices(choice: JSON, internal: Any, parallel: bool | None) -> None:
    tools = [{"name": "f", "input_schema": {"type": "object"}, "strict": True}]
    translated = internal_body(body(user("hi"), tools=tools, tool_choice=choice))
    assert translated["tool_choice"] == internal
    assert translated.get("parallel_tool_calls") == parallel
    assert translated["tools"][0]["function"]["strict"] is True


@pytest.mark.parametrize(
    ("fields", "effort"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "low"),
        ({"thinking": {"type": "enabled", "budget_tokens": 8000}}, "medium"),
        ({"thinking": {"type": "enabled", "budget_tokens": 32000}}, "high"),
        ({"thinking": {"type": "adaptive"}}, None),
        ({"thinking": {"type": "disabled"}}, None),
        ({"output_config": {"effort": "max"}}, "high"),
    ],
)
def test_thinking_becomes_reasoning_effort(fields: JSON, effort: str | None) -> None:
    assert internal_body(body(user("hi"), **fields)).get("reasoning_effort") == effort


def test_structured_output_becomes_a_json_schema_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    output = {"format": {"type": "json_schema", "schema": schema}}
    translated = internal_body(body(user("hi"), output_config=output))
    assert translated["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }


@pytest.mark.parametrize(
    "where",
    ["system", "user", "tool_result", "tool_input", "thinking", "document"],
)
def test_every_text_reaches_the_detector(where: str) -> None:
    texts = dict.fromkeys(
        ["system", "user", "tool_result", "tool_input", "thinking", "document"], "nothing"
    )
    texts[where] = f"mail {EMAIL}"
    document = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": texts["document"]},
    }
    request = body(
        user([{"type": "text", "text": texts["user"]}, document]),
        assistant(
            [
                {"type": "thinking", "thinking": texts["thinking"], "signature": "s"},
                {**CALL, "input": {"q": texts["tool_input"]}},
            ]
        ),
        user([result(texts["tool_result"])]),
        system=texts["system"],
    )
    assert PiiDetector(DetectorConfig()).scan(internal_body(request)) == {"email": 1}


# --- answers ------------------------------------------------------------------------------


def completion(reply: JSON, finish: str = "stop", **choice: Any) -> JSON:
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 4,
        "prompt_tokens_details": {"cached_tokens": 3},
    }
    return {
        "id": "chatcmpl-abc",
        "choices": [{"index": 0, "message": reply, "finish_reason": finish, **choice}],
        "usage": usage,
    }


def test_an_answer_as_a_message() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    reply = {"role": "assistant", "content": "hi", "reasoning_content": "hmm", "tool_calls": [call]}
    written = message(completion(reply, "tool_calls"), Asked("claude-x"))
    Message.model_validate(written)
    assert written["id"] == "msg_abc" and written["model"] == "claude-x"
    assert written["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": ""},
        {"type": "text", "text": "hi"},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
    ]
    assert written["stop_reason"] == "tool_use"
    assert written["usage"] == {
        "input_tokens": 7,
        "output_tokens": 4,
        "cache_read_input_tokens": 3,
        "cache_creation_input_tokens": 0,
    }


@pytest.mark.parametrize(
    ("finish", "extra", "text", "expected"),
    [
        ("stop", {}, "done", ("end_turn", None)),
        ("length", {}, "done", ("max_tokens", None)),
        ("content_filter", {}, "done", ("refusal", None)),
        ("stop", {"stop_reason": "##"}, "done", ("stop_sequence", "##")),
        ("stop", {"stop_reason": "other"}, "done", ("end_turn", None)),
        ("stop", {"stop_reason": 151645}, "done", ("end_turn", None)),
        ("stop", {}, "done ##", ("stop_sequence", "##")),
    ],
)
def test_stop_reasons(
    finish: str, extra: JSON, text: str, expected: tuple[str, str | None]
) -> None:
    reply = {"role": "assistant", "content": text}
    written = message(completion(reply, finish, **extra), Asked("m", ("##", "@@")))
    assert (written["stop_reason"], written["stop_sequence"]) == expected


def test_a_native_answer_is_the_upstreams_message() -> None:
    native = {"id": "msg_up", "type": "message", "model": "claude-sonnet-4-5", "content": []}
    answer = {**completion({"role": "assistant", "content": ""}), NATIVE_MESSAGE: native}
    assert message(answer, Asked("my-name")) == {**native, "model": "my-name"}


def test_broken_tool_arguments_are_the_upstreams_fault() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    with pytest.raises(UpstreamError):
        message(
            completion({"role": "assistant", "content": None, "tool_calls": [call]}), Asked("m")
        )


# --- streams ------------------------------------------------------------------------------


def chunk(delta: JSON, finish: str | None = None, **choice: Any) -> JSON:
    return {
        "id": "chatcmpl-s",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, **choice}],
    }


def encode(chunks: list[JSON], asked: Asked) -> list[JSON]:
    encoder = MessagesEvents(asked)
    raw = b"".join(encoder.chunk(c) for c in chunks) + asyncio.run(encoder.done())
    events = []
    for block in raw.decode().split("\n\n")[:-1]:
        name, data = block.split("\n")
        event = orjson.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        events.append(event)
    return events


def test_a_stream_of_every_kind_of_block() -> None:
    def call(index: int, **fields: Any) -> JSON:
        return {"tool_calls": [{"index": index, **fields}]}

    usage = {
        "prompt_tokens": 9,
        "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 4},
    }
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "hm"}),
        chunk({"reasoning_content": "m"}),
        chunk({"content": "Let me "}),
        chunk({"content": "check."}),
        chunk(call(0, id="call_a", type="function", function={"name": "f", "arguments": ""})),
        chunk(call(0, function={"arguments": '{"a":'})),
        chunk(call(1, id="call_b", type="function", function={"name": "g", "arguments": "{}"})),
        chunk(call(0, function={"arguments": "1}"})),  # late: still reaches its own block
        chunk({}, "tool_calls"),
        {"id": "chatcmpl-s", "choices": [], "usage": usage},
    ]
    events = encode(chunks, Asked("claude-x"))
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use", "tool_use"]
    late = [e for e in events if e.get("delta", {}).get("partial_json") == "1}"]
    assert late[0]["index"] == 2
    blocks = assemble(events).content
    assert [(b.id, b.input) for b in blocks if b.type == "tool_use"] == [
        ("call_a", {"a": 1}),
        ("call_b", {}),
    ]
    delta = events[-2]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"] == {
        "input_tokens": 5,
        "output_tokens": 5,
        "cache_read_input_tokens": 4,
        "cache_creation_input_tokens": 0,
    }
    assert events[0]["message"]["id"] == "msg_s" and events[0]["message"]["model"] == "claude-x"


def test_a_stream_in_order_is_anthropics_sequence() -> None:
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "hm"}),
        chunk({"content": "Hi ##"}),
        chunk({}, "stop"),
        {"id": "chatcmpl-s", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
    ]
    assembled = check_sequence(encode(chunks, Asked("claude-x", ("##",))))
    assert [b.type for b in assembled.content] == ["thinking", "text"]
    assert (assembled.stop_reason, assembled.stop_sequence) == ("stop_sequence", "##")
    assert (assembled.usage.input_tokens, assembled.usage.output_tokens) == (3, 2)


def test_an_empty_stream_is_still_a_message() -> None:
    assembled = check_sequence(encode([], Asked("claude-x")))
    assert assembled.content == [] and assembled.stop_reason == "end_turn"


def test_native_events_are_relayed_under_the_clients_name() -> None:
    start = {"type": "message_start", "message": {"id": "msg_up", "model": "claude-sonnet-4-5"}}
    ping = {"type": "ping"}
    encoder = MessagesEvents(Asked("my-name"))
    first = encoder.chunk({"choices": [], NATIVE_EVENT: start})
    assert orjson.loads(first.split(b"data: ")[1]) == {
        **start,
        "message": {"id": "msg_up", "model": "my-name"},
    }
    assert (
        encoder.chunk({"choices": [], NATIVE_EVENT: ping})
        == b'event: ping\ndata: {"type":"ping"}\n\n'
    )
    assert encoder.chunk({"choices": [], "usage": {"prompt_tokens": 1}}) == b""
    assert asyncio.run(encoder.done()) == b""


def test_a_failure_is_an_error_event() -> None:
    encoder = MessagesEvents(Asked("m"))
    written = encoder.error(UpstreamTimeoutError("too slow"))
    error = {"type": "error", "error": {"type": "timeout_error", "message": "too slow"}}
    assert written == b"event: error\ndata: " + orjson.dumps(error) + b"\n\n"
