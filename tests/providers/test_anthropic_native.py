"""The Anthropic provider's pass-through for Messages API clients: the client's body reaches the
upstream as it came (model and output cap the deployment's), and the answer is still an internal
one — for billing and the stream's tally — carrying the upstream's own message or events."""

from __future__ import annotations

from typing import Any

import pytest

from entrepot.exceptions import UpstreamError, UpstreamRejectedError
from entrepot.providers.anthropic import NATIVE_EVENT, NATIVE_MESSAGE, AnthropicProvider
from tests.fakes.anthropic_upstream import CACHE_WRITE_TOKENS, RunningFake
from tests.providers.test_anthropic import run_with_provider as run
from tests.schemas import validate

JSON = dict[str, Any]
# The internal body the pipeline sends: the deployment's model name and the reserved cap.
INTERNAL: JSON = {
    "model": "claude-test",
    "max_tokens": 50,
    "messages": [{"role": "user", "content": "ignored: the native body is sent"}],
}


def native(*content: JSON | str, **extra: Any) -> JSON:
    messages = [{"role": "user", "content": c} for c in content]
    return {
        "model": "claude-what-the-client-said",
        "max_tokens": 9999,
        "messages": messages,
        **extra,
    }


def test_messages_sends_the_body_as_it_came(monkeypatch: pytest.MonkeyPatch) -> None:
    system = [
        {"type": "text", "text": "one two three", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "four"},
    ]
    sent = native("hello there", system=system, stop_sequences=["there"], stream=False)

    async def scenario(provider: AnthropicProvider, fake: RunningFake) -> None:
        answer = await provider.messages(INTERNAL, sent)
        expected = {k: v for k, v in sent.items() if k != "stream"}
        assert fake.last_request == {**expected, "model": "claude-test", "max_tokens": 50}
        message = answer[NATIVE_MESSAGE]
        assert message["stop_reason"] == "stop_sequence"
        assert message["stop_sequence"] == "there"
        assert message["content"] == [{"type": "text", "text": "echo: hello"}]
        validate(
            {k: v for k, v in answer.items() if k != NATIVE_MESSAGE}, "CreateChatCompletionResponse"
        )
        assert answer["choices"][0]["message"]["content"] == "echo: hello"
        # Billed as OpenAI counts: cache reads and writes are part of the prompt.
        cached = 3
        usage = message["usage"]
        assert usage["cache_read_input_tokens"] == cached
        assert usage["cache_creation_input_tokens"] == CACHE_WRITE_TOKENS
        assert answer["usage"]["prompt_tokens"] == (
            usage["input_tokens"] + cached + CACHE_WRITE_TOKENS
        )
        assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] == cached

    run(monkeypatch, scenario)


def test_stream_messages_carries_every_upstream_event(monkeypatch: pytest.MonkeyPatch) -> None:
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    sent = native("weather, in parallel", system="think", tools=tools)

    async def scenario(provider: AnthropicProvider, fake: RunningFake) -> list[JSON]:
        return [chunk async for chunk in provider.stream_messages(INTERNAL, sent)]

    chunks = run(monkeypatch, scenario)
    events = [c[NATIVE_EVENT] for c in chunks if NATIVE_EVENT in c]
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["message_start", "ping"]
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 3
    assert any(e.get("delta", {}).get("type") == "signature_delta" for e in events)
    # Every chunk but the usage report carries exactly the event it came from, in order.
    assert all(NATIVE_EVENT in c for c in chunks[:-1])
    usage = chunks[-1]
    assert usage["choices"] == [] and NATIVE_EVENT not in usage
    assert usage["usage"]["completion_tokens"] == 6
    # The internal chunks still say what was generated, for the stream's tally.
    calls = [
        call
        for c in chunks
        for choice in c["choices"]
        for call in choice["delta"].get("tool_calls") or ()
        if call.get("id")
    ]
    assert [c["id"] for c in calls] == ["toolu_1", "toolu_2"]


def test_an_error_event_fails_the_native_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(provider: AnthropicProvider, fake: RunningFake) -> None:
        with pytest.raises(UpstreamError, match="overloaded_error"):
            async for _chunk in provider.stream_messages(INTERNAL, native("fail-midstream")):
                pass

    run(monkeypatch, scenario)


def test_the_upstreams_refusal_is_its_status(monkeypatch: pytest.MonkeyPatch) -> None:
    body = native("hi", thinking={"type": "enabled", "budget_tokens": 1024})
    body["messages"] = [
        {"role": "user", "content": "weather"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sun"}],
        },
    ]

    async def scenario(provider: AnthropicProvider, fake: RunningFake) -> None:
        with pytest.raises(UpstreamRejectedError, match="Expected `thinking`") as caught:
            await provider.messages(INTERNAL, body)
        assert caught.value.status_code == 400

    run(monkeypatch, scenario)
