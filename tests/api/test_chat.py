"""Chat completions through the running gateway with the official SDK, validated against
OpenAI's spec: the bundled model, a fake upstream with exact numbers, Anthropic translation,
and another Entrepôt as a real remote upstream."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LOCAL, Server, usage_record
from tests.schemas import validate

HELLO = [{"role": "user", "content": "Say hello in one word."}]
WEATHER_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def _raw(response: Any) -> tuple[dict[str, Any], str]:
    """The parsed body and the gateway's request id from a with_raw_response call."""
    return response.http_response.json(), response.headers["x-request-id"]


@pytest.mark.parametrize("model", [LOCAL, "fake/echo", "fake/claude", "remote/smollm2"])
def test_chat_answers_and_matches_the_spec(client: openai.OpenAI, model: str) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=HELLO, max_tokens=12, temperature=0
    )
    body, _ = _raw(raw)
    validate(body, "CreateChatCompletionResponse")
    completion = raw.parse()
    assert completion.model == model
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0


@pytest.mark.parametrize("model", [LOCAL, "fake/echo", "fake/claude", "remote/smollm2"])
def test_stream_chunks_match_the_spec_and_usage_is_last(client: openai.OpenAI, model: str) -> None:
    with client.chat.completions.with_streaming_response.create(
        model=model,
        messages=HELLO,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ) as raw:
        chunks = list(raw.parse())
    for chunk in chunks:
        validate(chunk.model_dump(exclude_unset=True), "CreateChatCompletionStreamResponse")
    assert all(c.model == model for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert [c for c in chunks[:-1] if c.usage is not None] == []


def test_stream_without_include_usage_hides_usage_but_still_bills(
    gateway: Server, client: openai.OpenAI
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="fake/echo", messages=[{"role": "user", "content": "one two three"}], stream=True
    ) as raw:
        chunks = list(raw.parse())
        request_id = raw.headers["x-request-id"]
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "echo: one two three"
    )
    record = usage_record(gateway, request_id)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (3, 4)
    assert record["stream"] == 1 and record["status"] == 200


def test_fake_upstream_bill_is_exact(gateway: Server, client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="fake/echo", messages=[{"role": "user", "content": "a b c d e"}]
    )
    body, request_id = _raw(raw)
    assert body["usage"]["prompt_tokens"] == 5 and body["usage"]["completion_tokens"] == 6
    record = usage_record(gateway, request_id)
    # 5 x $2.00/1M + 6 x $8.00/1M = $0.000058
    assert record["cost_nanos"] == 58_000
    assert (record["currency"], record["price_date"]) == ("USD", "2026-11-01")
    assert record["deployment"] == "openai_compatible:fake/echo"
    assert record["jurisdiction"] == "US" and record["key_name"] == "tests"


def test_reasoning_content_and_cache_counts_are_preserved(
    gateway: Server, client: openai.OpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="fake/reasoner", messages=[{"role": "user", "content": "why is the sky blue"}]
    )
    body, request_id = _raw(raw)
    assert body["choices"][0]["message"]["reasoning_content"] == "let me think"
    record = usage_record(gateway, request_id)
    assert record["reasoning_tokens"] == 3 and record["cached_tokens"] == 2
    assert record["deployment"] == "deepseek-direct" and record["jurisdiction"] == "CN"
    # Priced from the catalogue: not matched by "reasoner", so unpriced rather than guessed.
    assert record["cost_nanos"] is None


def test_parameters_reach_the_upstream(fake_openai: Server, client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="fake/echo",
        messages=[{"role": "user", "content": "what is the weather"}],
        tools=WEATHER_TOOLS,
        tool_choice="auto",
        n=2,
        stop=["zzz"],
        max_completion_tokens=50,
        temperature=0.5,
        top_p=0.9,
        seed=7,
        response_format={"type": "json_object"},
        extra_body={"vendor_extension": {"kept": True}},
    )
    assert completion.choices[0].message.tool_calls is not None
    assert completion.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert len(completion.choices) == 2
    sent = httpx.get(fake_openai.url + "/last-request").json()
    assert sent["model"] == "echo-model"
    for field in ("tools", "tool_choice", "n", "stop", "seed"):
        assert field in sent
    # The cap goes in the field most OpenAI-compatible servers honour (`output_cap_field`).
    assert sent["max_tokens"] == 50 and "max_completion_tokens" not in sent
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["vendor_extension"] == {"kept": True}


def test_anthropic_tool_calls_are_translated(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="fake/claude",
        messages=[{"role": "user", "content": "what is the weather"}],
        tools=WEATHER_TOOLS,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Paris"}


def test_local_stop_sequence_and_seed_are_honoured(client: openai.OpenAI) -> None:
    prompt = [{"role": "user", "content": "Count from one to ten in words."}]
    first = client.chat.completions.create(
        model=LOCAL, messages=prompt, max_tokens=30, temperature=0.9, seed=11
    )
    again = client.chat.completions.create(
        model=LOCAL, messages=prompt, max_tokens=30, temperature=0.9, seed=11
    )
    assert first.choices[0].message.content == again.choices[0].message.content
    text = first.choices[0].message.content or ""
    assert len(text) > 3
    stop = text[2:4]
    stopped = client.chat.completions.create(
        model=LOCAL, messages=prompt, max_tokens=30, temperature=0.9, seed=11, stop=[stop]
    )
    assert stopped.choices[0].message.content == text[: text.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"


def test_local_n_gives_several_choices(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=LOCAL, messages=HELLO, max_tokens=5, n=2, seed=3
    )
    assert [c.index for c in completion.choices] == [0, 1]
    assert completion.usage is not None and completion.usage.completion_tokens <= 10


def test_local_json_mode_constrains_output(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=LOCAL,
        messages=[{"role": "user", "content": "Describe a cat as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "cat",
                "schema": {
                    "type": "object",
                    "properties": {"name": {"type": "string", "maxLength": 12}},
                    "required": ["name"],
                    "additionalProperties": False,
                },
            },
        },
        max_tokens=40,
        temperature=0,
    )
    parsed = json.loads(completion.choices[0].message.content or "")
    assert set(parsed) == {"name"}
