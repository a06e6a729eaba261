"""Tools on the bundled local model, through a real gateway with the official client: a forced
choice gives a call whose arguments fit the schema, streamed or not; a call, its result and the
answer make a round trip; in "auto" a `<tool_call>` the model writes becomes a tool call."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.conftest import LOCAL, Server
from tests.schemas import validate

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}
TIME_PARAMETERS = {
    "type": "object",
    "properties": {"timezone": {"type": "string"}},
    "required": ["timezone"],
}
SCHEMAS = {"get_weather": WEATHER_PARAMETERS, "get_time": TIME_PARAMETERS}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": name, "description": f"{name} somewhere", "parameters": schema},
    }
    for name, schema in SCHEMAS.items()
]
QUESTION: list[Any] = [{"role": "user", "content": "What is the weather in Paris this week?"}]
NAMED = {"type": "function", "function": {"name": "get_time"}}


def _check_call(call: Any, names: set[str]) -> None:
    assert re.fullmatch(r"call_[0-9a-f]+", call.id) and call.type == "function"
    assert call.function.name in names
    jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def _streamed(client: openai.OpenAI, model: str = LOCAL, **request: Any) -> list[dict[str, Any]]:
    """The calls a client assembles from a stream's deltas: a delta with an id opens a call,
    and every delta's name and argument pieces are appended, as SDK helpers do."""
    calls: dict[tuple[int, int], dict[str, Any]] = {}
    for chunk in client.chat.completions.create(model=model, stream=True, **request):
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                key = (choice.index, delta.index)
                if delta.id:
                    assert key not in calls, "a second opening delta for one call"
                    assert delta.type == "function" and delta.function.arguments == ""
                    calls[key] = {"id": delta.id, "name": "", "arguments": ""}
                else:
                    assert delta.type is None and delta.function.name is None
                calls[key]["name"] += delta.function.name or ""
                calls[key]["arguments"] += delta.function.arguments or ""
            if choice.finish_reason:
                assert choice.finish_reason == "tool_calls"
    return [calls[key] for key in sorted(calls)]


@pytest.mark.parametrize(("choice", "names"), [("required", set(SCHEMAS)), (NAMED, {"get_time"})])
def test_a_forced_choice_is_a_call_fitting_the_schema(
    client: openai.OpenAI, choice: Any, names: set[str]
) -> None:
    answer = client.chat.completions.create(
        model=LOCAL, messages=QUESTION, tools=TOOLS, tool_choice=choice, n=2, max_tokens=120
    )
    assert len(answer.choices) == 2
    for one in answer.choices:
        assert one.finish_reason == "tool_calls" and one.message.content is None
        (call,) = one.message.tool_calls or []
        _check_call(call, names)


# remote/smollm2 is the same model behind another Entrepôt: its stream passes through the
# OpenAI-compatible provider's tool-call normaliser on the way.
@pytest.mark.parametrize("model", [LOCAL, "remote/smollm2"])
@pytest.mark.parametrize(("choice", "names"), [("required", set(SCHEMAS)), (NAMED, {"get_time"})])
def test_a_forced_call_streams_as_openai_does(
    client: openai.OpenAI, model: str, choice: Any, names: set[str]
) -> None:
    request = {
        "messages": QUESTION,
        "tools": TOOLS,
        "tool_choice": choice,
        "max_tokens": 120,
        "temperature": 0,
    }
    calls = _streamed(client, model, **request, n=2)
    assert len(calls) == 2 and calls[0]["id"] != calls[1]["id"]
    for streamed in calls:
        assert streamed["name"] in names
        jsonschema.validate(json.loads(streamed["arguments"]), SCHEMAS[streamed["name"]])
    plain = client.chat.completions.create(model=model, **request)
    (call,) = plain.choices[0].message.tool_calls or []
    assert (call.function.name, call.function.arguments) == (
        calls[0]["name"],
        calls[0]["arguments"],
    )


def test_streamed_tool_chunks_follow_the_spec_and_bill_like_the_answer(
    gateway: Server, client_key: str
) -> None:
    body = {
        "model": LOCAL,
        "messages": QUESTION,
        "tools": TOOLS,
        "tool_choice": "required",
        "max_tokens": 120,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"authorization": f"Bearer {client_key}"}
    chunks = []
    with httpx.stream(
        "POST", gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=120
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    for chunk in chunks:
        validate(chunk, "CreateChatCompletionStreamResponse")
    plain = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={**body, "stream": False, "stream_options": None},
        headers=headers,
        timeout=120,
    ).json()
    validate(plain, "CreateChatCompletionResponse")
    usage = chunks[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
        plain["usage"]["prompt_tokens"],
        plain["usage"]["completion_tokens"],
    )


def _call_turns(city: str, number: int) -> list[Any]:
    call = {
        "id": f"call_{number}",
        "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
    }
    return [
        {"role": "user", "content": f"Weather in {city}?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
    ]


# Three earlier questions answered with calls teach the 135M model (never trained for tools) to
# answer the next one with a call too.
FEW_SHOT = [
    turn
    for number, city in enumerate(["Paris", "Rome", "Oslo"])
    for turn in _call_turns(city, number)
]
AUTO_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def test_auto_reads_the_call_the_model_writes(client: openai.OpenAI) -> None:
    request = {
        "messages": [*FEW_SHOT, {"role": "user", "content": "Weather in Berlin?"}],
        "tools": AUTO_TOOLS,
        "max_tokens": 60,
        "temperature": 0,
    }
    plain = client.chat.completions.create(model=LOCAL, **request)
    choice = plain.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Berlin"}
    (streamed,) = _streamed(client, **request)
    assert (streamed["name"], streamed["arguments"]) == ("get_weather", call.function.arguments)
    # The same answer with the tools withdrawn is text, however much it looks like a call.
    none = client.chat.completions.create(model=LOCAL, **request, tool_choice="none")
    assert none.choices[0].finish_reason == "stop" and not none.choices[0].message.tool_calls
    assert "<tool_call>" in (none.choices[0].message.content or "")


def test_a_call_its_result_and_the_answer_make_a_round_trip(client: openai.OpenAI) -> None:
    question: list[Any] = [{"role": "user", "content": "What is the weather in Berlin?"}]
    called = client.chat.completions.create(
        model=LOCAL,
        messages=question,
        tools=AUTO_TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=60,
        temperature=0,
    )
    message = called.choices[0].message
    (call,) = message.tool_calls or []
    answers = []
    for result in ("rain, 12 degrees", "heatwave, 35 degrees"):
        conversation = [
            *question,
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": result},
        ]
        answer = client.chat.completions.create(
            model=LOCAL, messages=conversation, tools=AUTO_TOOLS, max_tokens=40, temperature=0
        )
        assert answer.choices[0].message.content
        answers.append(answer)
    # The model read the results: other results, other answers.
    assert answers[0].choices[0].message.content != answers[1].choices[0].message.content
    assert answers[0].usage and answers[1].usage
    assert answers[0].usage.prompt_tokens != answers[1].usage.prompt_tokens


def _place(field: str, kind: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"place": {"$ref": "#/$defs/Place"}},
        "required": ["place"],
        "$defs": {
            "Place": {
                "type": "object",
                "properties": {field: {"type": kind}},
                "required": [field],
                "additionalProperties": False,
            }
        },
    }


def test_functions_whose_definitions_share_names_each_get_their_own(
    client: openai.OpenAI,
) -> None:
    schemas = {"by_city": _place("city", "string"), "by_zip": _place("zip", "integer")}
    tools: list[Any] = [
        {"type": "function", "function": {"name": name, "parameters": schema}}
        for name, schema in schemas.items()
    ]
    for name in schemas:
        answer = client.chat.completions.create(
            model=LOCAL,
            messages=QUESTION,
            tools=tools,
            tool_choice={"type": "function", "function": {"name": name}},
            max_tokens=60,
        )
        (call,) = answer.choices[0].message.tool_calls or []
        assert call.function.name == name
        jsonschema.validate(json.loads(call.function.arguments), schemas[name])
