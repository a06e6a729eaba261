"""Tool use through the Messages API with Anthropic's SDK: a call, its result and the final
answer make a round trip, complete and streamed; parallel calls keep their ids, each its own
block; a thinking block survives the tool turn; on an OpenAI-compatible upstream the
conversation arrives as tool calls and tool messages; the local model calls a forced tool."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import jsonschema
import pytest
from anthropic.types import Message

from tests.api.test_messages import WEATHER_TOOL, check_sequence, sse, strict_message
from tests.conftest import LOCAL, Server

WEATHER = [{"role": "user", "content": "What's the weather in Paris?"}]


@pytest.fixture(scope="module")
def claude(gateway: Server, client_key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=client_key, max_retries=0, timeout=120)


def ask(claude: anthropic.Anthropic, stream: bool, **options: Any) -> Message:
    """One answer, from `create` or from the SDK's stream helper."""
    if not stream:
        raw = claude.messages.with_raw_response.create(**options)
        return strict_message(raw.http_response.json())
    with claude.messages.stream(**options) as events:
        return strict_message(events.get_final_message().model_dump())


def results(message: Message, *texts: str) -> list[Any]:
    """The next turns: the assistant's message as it came, then a result for each call."""
    calls = [block for block in message.content if block.type == "tool_use"]
    answers = [
        {"type": "tool_result", "tool_use_id": call.id, "content": text}
        for call, text in zip(calls, texts, strict=True)
    ]
    return [
        {
            "role": "assistant",
            "content": [b.model_dump(exclude_none=True) for b in message.content],
        },
        {"role": "user", "content": answers},
    ]


def last_request(fake: Server) -> Any:
    return httpx.get(fake.url + "/last-request").json()


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_round_trip_on_anthropic(
    claude: anthropic.Anthropic, fake_anthropic: Server, stream: bool
) -> None:
    options: Any = {"model": "fake/claude", "max_tokens": 100, "tools": [WEATHER_TOOL]}
    called = ask(claude, stream, **options, messages=WEATHER)
    assert called.stop_reason == "tool_use"
    [call] = called.content
    assert (call.type, call.id, call.name, call.input) == (  # type: ignore[union-attr]
        "tool_use",
        "toolu_1",
        "get_weather",
        {"city": "Paris"},
    )
    final = ask(claude, stream, **options, messages=WEATHER + results(called, "sunny, 21C"))
    assert final.stop_reason == "end_turn"
    assert final.content[0].text == "echo: sunny, 21C"  # type: ignore[union-attr]
    sent = last_request(fake_anthropic)["messages"]
    assert sent[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 21C"}
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_calls_keep_their_ids(claude: anthropic.Anthropic, stream: bool) -> None:
    options: Any = {"model": "fake/claude", "max_tokens": 100, "tools": [WEATHER_TOOL]}
    asked = [{"role": "user", "content": "weather in Paris and London, in parallel"}]
    called = ask(claude, stream, **options, messages=asked)
    calls = [(b.id, b.input) for b in called.content if b.type == "tool_use"]
    assert calls == [("toolu_1", {"city": "Paris"}), ("toolu_2", {"city": "London"})]
    final = ask(claude, stream, **options, messages=asked + results(called, "sun", "rain"))
    assert final.content[0].text == "echo: sun rain"  # type: ignore[union-attr]


@pytest.mark.parametrize("stream", [False, True])
def test_thinking_survives_a_tool_turn(
    claude: anthropic.Anthropic, fake_anthropic: Server, stream: bool
) -> None:
    """With thinking on, Anthropic refuses a tool turn that lost its thinking block."""
    options: Any = {
        "model": "fake/claude",
        "max_tokens": 2000,
        "system": "think step by step",
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [WEATHER_TOOL],
    }
    called = ask(claude, stream, **options, messages=WEATHER)
    assert [b.type for b in called.content] == ["thinking", "tool_use"]
    final = ask(claude, stream, **options, messages=WEATHER + results(called, "sunny"))
    assert final.stop_reason == "end_turn"
    thought = last_request(fake_anthropic)["messages"][1]["content"][0]
    assert thought == {"type": "thinking", "thinking": "thinking about it", "signature": "sig"}


def test_a_tool_conversation_translated(claude: anthropic.Anthropic, fake_openai: Server) -> None:
    options: Any = {"model": "fake/echo", "max_tokens": 100, "tools": [WEATHER_TOOL]}
    called = ask(claude, False, **options, messages=WEATHER)
    assert called.stop_reason == "tool_use"
    [call] = [b for b in called.content if b.type == "tool_use"]
    assert (call.id, call.input) == ("call_1", {"city": "Paris"})
    turns = results(called, "no such city")
    turns[0]["content"].insert(0, {"type": "thinking", "thinking": "ask it", "signature": "s"})
    turns[1]["content"][0]["is_error"] = True
    turns[1]["content"].append({"type": "text", "text": "try again"})
    ask(claude, False, **options, messages=WEATHER + turns)
    sent = last_request(fake_openai)["messages"]
    assert sent[1:] == [
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "ask it",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Error: no such city"},
        {"role": "user", "content": "try again"},
    ]


def test_translated_tool_calls_stream_as_tool_use_blocks(gateway: Server, client_key: str) -> None:
    body = {"model": "fake/echo", "max_tokens": 100, "tools": [WEATHER_TOOL], "messages": WEATHER}
    events, _ = sse(gateway, client_key, body)
    message = check_sequence(events)
    [call] = [b for b in message.content if b.type == "tool_use"]
    assert (call.id, call.name, call.input) == ("call_1", "get_weather", {"city": "Paris"})
    assert message.stop_reason == "tool_use"
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert starts[-1]["content_block"] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "get_weather",
        "input": {},
    }


@pytest.mark.parametrize("stream", [False, True])
def test_the_local_model_calls_a_forced_tool(claude: anthropic.Anthropic, stream: bool) -> None:
    options: Any = {
        "model": LOCAL,
        "max_tokens": 60,
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "any"},
        "extra_body": {"temperature": 0},
    }
    called = ask(claude, stream, **options, messages=WEATHER)
    assert called.stop_reason == "tool_use"
    calls = [b for b in called.content if b.type == "tool_use"]
    assert calls and all(c.name == "get_weather" for c in calls)
    for call in calls:
        jsonschema.validate(call.input, WEATHER_TOOL["input_schema"])
    options["tool_choice"] = {"type": "none"}
    final = ask(
        claude, stream, **options, messages=WEATHER + results(called, *["sunny"] * len(calls))
    )
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.content and final.content[0].type == "text"
