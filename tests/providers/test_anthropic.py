from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from entrepot.config import ModelConfig
from entrepot.exceptions import InvalidRequestError, UpstreamError
from entrepot.providers.anthropic import AnthropicProvider
from entrepot.providers.anthropic_translate import (
    DEFAULT_MAX_TOKENS,
    JSON_OBJECT_INSTRUCTION,
    StreamTranslator,
    request_to_anthropic,
    response_to_openai,
    usage_from_anthropic,
)
from tests.fakes.anthropic_upstream import DEFAULT_KEY, RunningFake, serve
from tests.schemas import validate

JSON = dict[str, Any]
KEY_ENV = "ENTREPOT_TEST_ANTHROPIC_KEY"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def chat_body(*messages: JSON, **extra: Any) -> JSON:
    return {"model": "claude-test", "messages": list(messages), **extra}


def user(content: Any) -> JSON:
    return {"role": "user", "content": content}


# --- request translation ------------------------------------------------------------------


def test_system_and_developer_messages_become_top_level_system() -> None:
    request = request_to_anthropic(
        chat_body(
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Be kind."}]},
            user("hi"),
        )
    )
    assert request["system"] == "Be brief.\n\nBe kind."
    assert request["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert request["model"] == "claude-test"


def test_no_system_key_without_system_messages() -> None:
    assert "system" not in request_to_anthropic(chat_body(user("hi")))


def test_max_tokens_default_and_overrides() -> None:
    assert request_to_anthropic(chat_body(user("x")))["max_tokens"] == DEFAULT_MAX_TOKENS
    assert request_to_anthropic(chat_body(user("x"), max_tokens=7))["max_tokens"] == 7
    both = chat_body(user("x"), max_tokens=7, max_completion_tokens=9)
    assert request_to_anthropic(both)["max_tokens"] == 9


def test_stop_sampling_user_and_ignored_fields() -> None:
    request = request_to_anthropic(
        chat_body(user("x"), stop="END", temperature=0.2, top_p=0.9, user="u-1", seed=3, foo=1)
    )
    assert request["stop_sequences"] == ["END"]
    assert request["temperature"] == 0.2
    assert request["top_p"] == 0.9
    assert request["metadata"] == {"user_id": "u-1"}
    assert "seed" not in request and "foo" not in request
    listed = request_to_anthropic(chat_body(user("x"), stop=["a", "b"]))
    assert listed["stop_sequences"] == ["a", "b"]


def test_consecutive_same_role_turns_are_merged() -> None:
    request = request_to_anthropic(
        chat_body(user("a"), user("b"), {"role": "assistant", "content": "c"})
    )
    assert request["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "c"}]},
    ]


def test_image_parts() -> None:
    parts = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    blocks = request_to_anthropic(chat_body(user(parts)))["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }
    assert blocks[2] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
    }


def test_unsupported_content_part_is_refused() -> None:
    audio = [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]
    with pytest.raises(InvalidRequestError) as info:
        request_to_anthropic(chat_body(user(audio)))
    assert info.value.param == "messages"


def test_assistant_tool_calls_and_tool_results() -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": ""}},
    ]
    request = request_to_anthropic(
        chat_body(
            user("go"),
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "call_1", "content": "one"},
            {
                "role": "tool",
                "tool_call_id": "call_2",
                "content": [{"type": "text", "text": "two"}],
            },
            user("and?"),
        )
    )
    assistant, results = request["messages"][1], request["messages"][2]
    assert assistant == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
            {"type": "tool_use", "id": "call_2", "name": "g", "input": {}},
        ],
    }
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "one"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "two"},
            {"type": "text", "text": "and?"},
        ],
    }
    assert len(request["messages"]) == 3


def test_malformed_tool_call_arguments_are_refused() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{nope"}}
    with pytest.raises(InvalidRequestError):
        request_to_anthropic(chat_body(user("x"), {"role": "assistant", "tool_calls": [call]}))


def test_tools_translated() -> None:
    request = request_to_anthropic(chat_body(user("x"), tools=[WEATHER_TOOL]))
    assert request["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    assert request["tool_choice"] == {"type": "auto"}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_tool_choice_mapping(choice: Any, expected: JSON) -> None:
    request = request_to_anthropic(chat_body(user("x"), tools=[WEATHER_TOOL], tool_choice=choice))
    assert request["tool_choice"] == expected


def test_parallel_tool_calls_false() -> None:
    request = request_to_anthropic(
        chat_body(
            user("x"), tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False
        )
    )
    assert request["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_n_greater_than_one_is_refused() -> None:
    with pytest.raises(InvalidRequestError) as info:
        request_to_anthropic(chat_body(user("x"), n=2))
    assert info.value.param == "n"


def test_response_format() -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
    with pytest.raises(InvalidRequestError) as info:
        request_to_anthropic(chat_body(user("x"), response_format=schema))
    assert info.value.param == "response_format"
    request = request_to_anthropic(
        chat_body(
            {"role": "system", "content": "S"}, user("x"), response_format={"type": "json_object"}
        )
    )
    assert request["system"] == f"S\n\n{JSON_OBJECT_INSTRUCTION}"


# --- response translation -----------------------------------------------------------------


def anthropic_message(content: list[JSON], stop_reason: str = "end_turn", **usage: int) -> JSON:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


def test_text_response() -> None:
    completion = response_to_openai(anthropic_message([{"type": "text", "text": "hi"}]), "m")
    assert completion["id"] == "chatcmpl-msg_1"
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "m"
    assert isinstance(completion["created"], int)
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]


def test_tool_use_and_thinking_response() -> None:
    message = anthropic_message(
        [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {"city": "Paris"}},
        ],
        stop_reason="tool_use",
    )
    choice = response_to_openai(message, "m")["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["reasoning_content"] == "hmm"
    [call] = choice["message"]["tool_calls"]
    assert call["id"] == "toolu_9" and call["type"] == "function"
    assert call["function"]["name"] == "f"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_finish_reason_mapping(stop_reason: str, finish: str) -> None:
    message = anthropic_message([{"type": "text", "text": "x"}], stop_reason=stop_reason)
    assert response_to_openai(message, "m")["choices"][0]["finish_reason"] == finish


def test_usage_mapping_counts_cache_as_prompt() -> None:
    usage = usage_from_anthropic(
        {
            "input_tokens": 10,
            "output_tokens": 4,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 20,
        }
    ).to_openai()
    assert usage["prompt_tokens"] == 130
    assert usage["completion_tokens"] == 4
    assert usage["total_tokens"] == 134
    assert usage["prompt_tokens_details"] == {"cached_tokens": 100}


def test_non_message_answer_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        response_to_openai({"type": "error"}, "m")


def test_stream_translator_event_sequence() -> None:
    translator = StreamTranslator("m")
    events: list[JSON] = [
        {"type": "message_start", "message": {"id": "msg_2", "usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "t"},
        },
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "hi"}},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": "{}"},
        },
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 8},
        },
        {"type": "message_stop"},
    ]
    chunks = [chunk for event in events for chunk in translator.feed(event)]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {"reasoning_content": "t"}
    assert deltas[2] == {"content": "hi"}
    assert deltas[3]["tool_calls"][0]["index"] == 0
    assert deltas[4] == {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert all(c["id"] == "chatcmpl-msg_2" for c in chunks)
    assert translator.finished
    usage = translator.usage_chunk()
    assert usage["choices"] == []
    assert usage["usage"]["prompt_tokens"] == 3 and usage["usage"]["completion_tokens"] == 8


# --- against the fake upstream ------------------------------------------------------------


def run_with_provider(
    monkeypatch: pytest.MonkeyPatch,
    scenario: Callable[[AnthropicProvider, RunningFake], Awaitable[Any]],
    key: str = DEFAULT_KEY,
) -> Any:
    monkeypatch.setenv(KEY_ENV, key)
    monkeypatch.delenv("FAKE_ANTHROPIC_KEY", raising=False)

    async def main() -> Any:
        async with serve() as fake:
            config = ModelConfig(
                alias="claude",
                provider="anthropic",
                target="claude-test",
                base_url=fake.url,
                api_key_env=KEY_ENV,
            )
            provider = AnthropicProvider(config)
            await provider.start()
            try:
                return await scenario(provider, fake)
            finally:
                await provider.close()

    return asyncio.run(main())


async def collect(provider: AnthropicProvider, body: JSON) -> list[JSON]:
    return [chunk async for chunk in provider.stream_chat(body)]


def assert_chunk_shape(chunk: JSON) -> None:
    validate(chunk, "CreateChatCompletionStreamResponse")
    assert {"id", "object", "created", "model", "choices"} <= chunk.keys()
    assert chunk["object"] == "chat.completion.chunk"
    for choice in chunk["choices"]:
        assert {"index", "delta", "finish_reason", "logprobs"} <= choice.keys()


def test_chat_against_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(provider: AnthropicProvider, fake: RunningFake) -> None:
        body = chat_body({"role": "system", "content": "Be brief."}, user("hello there"))
        completion = await provider.chat(body)
        validate(completion, "CreateChatCompletionResponse")
        assert completion["choices"][0]["message"]["content"] == "echo: hello there"
        assert completion["choices"][0]["finish_reason"] == "stop"
        assert completion["usage"]["prompt_tokens"] == 4
        assert completion["usage"]["completion_tokens"] == 3
        assert fake.last_request["system"] == "Be brief."
        assert fake.last_request["max_tokens"] == DEFAULT_MAX_TOKENS
        assert "stream" not in fake.last_request

    run_with_provider(monkeypatch, scenario)


def test_stream_chat_against_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(provider: AnthropicProvider, fake: RunningFake) -> None:
        body = chat_body({"role": "system", "content": "think first"}, user("one two three"))
        chunks = await collect(provider, body)
        assert fake.last_request["stream"] is True
        for chunk in chunks:
            assert_chunk_shape(chunk)
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
        text = "".join(d.get("content") or "" for d in deltas)
        reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
        assert text == "echo: one two three"
        assert reasoning == "thinking about it"
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
        assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-2])
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"]["prompt_tokens"] == 5
        assert chunks[-1]["usage"]["completion_tokens"] == 4

    run_with_provider(monkeypatch, scenario)


def test_stream_tool_call_reassembles(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(provider: AnthropicProvider, fake: RunningFake) -> None:
        body = chat_body(user("what is the weather?"), tools=[WEATHER_TOOL])
        chunks = await collect(provider, body)
        for chunk in chunks:
            assert_chunk_shape(chunk)
        calls = [
            call
            for chunk in chunks
            if chunk["choices"]
            for call in chunk["choices"][0]["delta"].get("tool_calls") or []
        ]
        assert calls[0]["id"] == "toolu_1"
        assert calls[0]["function"]["name"] == "get_weather"
        assert len(calls) > 2 and all(call["index"] == 0 for call in calls)
        arguments = "".join(call["function"]["arguments"] for call in calls)
        assert json.loads(arguments) == {"city": "Paris"}
        assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
        assert chunks[-1]["choices"] == [] and "usage" in chunks[-1]

    run_with_provider(monkeypatch, scenario)


def test_chat_tool_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(provider: AnthropicProvider, fake: RunningFake) -> None:
        first = await provider.chat(chat_body(user("weather please"), tools=[WEATHER_TOOL]))
        validate(first, "CreateChatCompletionResponse")
        message = first["choices"][0]["message"]
        assert first["choices"][0]["finish_reason"] == "tool_calls"
        [call] = message["tool_calls"]
        result = {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}
        second = await provider.chat(
            chat_body(user("weather please"), message, result, tools=[WEATHER_TOOL])
        )
        assert second["choices"][0]["message"]["content"] == "echo: sunny"
        sent = fake.last_request["messages"]
        assert sent[1]["content"][0] == {
            "type": "tool_use",
            "id": "toolu_1",
            "name": "get_weather",
            "input": {"city": "Paris"},
        }
        assert sent[2]["content"] == [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}
        ]

    run_with_provider(monkeypatch, scenario)


def test_error_event_midstream_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(provider: AnthropicProvider, fake: RunningFake) -> list[JSON]:
        received: list[JSON] = []
        with pytest.raises(UpstreamError, match="overloaded_error"):
            async for chunk in provider.stream_chat(chat_body(user("please fail-midstream"))):
                received.append(chunk)
        return received

    received = run_with_provider(monkeypatch, scenario)
    assert len(received) == 2


def test_wrong_key_is_a_bad_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(provider: AnthropicProvider, fake: RunningFake) -> None:
        with pytest.raises(UpstreamError) as info:
            await provider.chat(chat_body(user("hi")))
        assert info.value.status_code == 502
        with pytest.raises(UpstreamError):
            await collect(provider, chat_body(user("hi")))

    run_with_provider(monkeypatch, scenario, key="wrong-key")


def test_legacy_completions(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(provider: AnthropicProvider, fake: RunningFake) -> None:
        body = {"model": "claude-test", "prompt": "say this", "max_tokens": 2}
        completion = await provider.complete(body)
        validate(completion, "CreateCompletionResponse")
        assert completion["object"] == "text_completion"
        assert completion["id"].startswith("cmpl-")
        assert completion["choices"] == [
            {"text": "echo: say", "index": 0, "logprobs": None, "finish_reason": "length"}
        ]
        chunks = [chunk async for chunk in provider.stream_complete({**body, "prompt": ["a b"]})]
        assert all(chunk["object"] == "text_completion" for chunk in chunks)
        assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "echo: a"
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2
        with pytest.raises(InvalidRequestError) as info:
            await provider.complete({**body, "prompt": ["a", "b"]})
        assert info.value.param == "prompt"

    run_with_provider(monkeypatch, scenario)


def test_embed_refused_and_health(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(provider: AnthropicProvider, fake: RunningFake) -> None:
        assert await provider.health() is True
        with pytest.raises(InvalidRequestError) as info:
            await provider.embed({"model": "claude-test", "input": "x"})
        assert info.value.param == "model"
        await provider.close()
        assert await provider.health() is False

    run_with_provider(monkeypatch, scenario)


def test_a_midstream_error_message_is_passed_on_without_paths_or_traceback() -> None:
    from entrepot.providers.anthropic import _error_text

    message = (
        'Traceback (most recent call last):\n  File "/srv/app/server.py", line 3\nValueError: boom'
    )
    text = _error_text({"type": "error", "error": {"type": "api_error", "message": message}})
    assert text == "api_error: ValueError: boom"
