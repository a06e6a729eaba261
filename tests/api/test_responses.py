"""The Responses API through the running gateway with the official SDK, every body validated
against OpenAI's spec: answers from each kind of model, input forms, output formats, usage and
the ledger, and the requests refused before any upstream is called."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LOCAL, Server, usage_record
from tests.schemas import validate

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": False,
}


def create(client: openai.OpenAI, **fields: Any) -> tuple[dict[str, Any], str]:
    """The Response body (checked against the spec) and the gateway's request id."""
    raw = client.responses.with_raw_response.create(**fields)
    body: dict[str, Any] = raw.http_response.json()
    validate(body, "Response")
    return body, raw.headers["x-request-id"]


def refused(client: openai.OpenAI, **fields: Any) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(**fields)
    return caught.value


def upstream_body(fake: Server) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(fake.url + "/last-request").json()
    return body


@pytest.mark.parametrize("model", [LOCAL, "fake/echo", "fake/claude", "remote/smollm2"])
def test_every_kind_of_model_answers_a_response(client: openai.OpenAI, model: str) -> None:
    body, _ = create(client, model=model, input="Say hello in one word.", max_output_tokens=12)
    assert body["id"].startswith("resp_") and body["object"] == "response"
    assert body["model"] == model
    assert body["status"] in ("completed", "incomplete")
    message = body["output"][-1]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["id"].startswith("msg_")
    assert message["content"][0]["type"] == "output_text"
    assert message["content"][0]["annotations"] == []
    assert message["content"][0]["text"]
    usage = body["usage"]
    assert usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_the_answer_and_usage_are_the_upstreams(gateway: Server, client: openai.OpenAI) -> None:
    body, request_id = create(
        client, model="fake/echo", input="one two three", metadata={"ticket": "T-1"}
    )
    response = client.responses.retrieve(body["id"])
    assert response.output_text == "echo: one two three"
    assert body["status"] == "completed" and body["completed_at"] is not None
    assert body["incomplete_details"] is None and body["error"] is None
    assert body["metadata"] == {"ticket": "T-1"} and body["store"] is True
    assert body["usage"] == {
        "input_tokens": 3,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 7,
    }
    record = usage_record(gateway, request_id)
    assert record["endpoint"] == "responses" and record["status"] == 200
    assert (record["prompt_tokens"], record["completion_tokens"]) == (3, 4)
    assert record["cost_nanos"] == 3 * 2_000 + 4 * 8_000  # fake/echo: $2 in, $8 out per 1M


def test_instructions_and_items_become_the_chat_messages(
    client: openai.OpenAI, fake_openai: Server
) -> None:
    body, _ = create(
        client,
        model="fake/echo",
        instructions="Be brief.",
        input=[
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look at"},
                    {"type": "input_image", "image_url": "https://example.com/a.png"},
                ],
            },
        ],
        temperature=0.5,
        top_p=0.9,
        max_output_tokens=50,
        user="user-7",
    )
    assert body["instructions"] == "Be brief."
    assert (body["temperature"], body["top_p"], body["max_output_tokens"]) == (0.5, 0.9, 50)
    sent = upstream_body(fake_openai)
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Answer in English."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look at"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/a.png", "detail": "auto"},
                },
            ],
        },
    ]
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"]) == (0.5, 0.9, 50)
    assert sent["user"] == "user-7"
    assert "store" not in sent and "metadata" not in sent


def test_text_formats_become_response_formats(client: openai.OpenAI, fake_openai: Server) -> None:
    body, _ = create(
        client, model="fake/echo", input="json please", text={"format": {"type": "json_object"}}
    )
    assert json.loads(body["output"][0]["content"][0]["text"]) == {"echo": True}
    assert upstream_body(fake_openai)["response_format"] == {"type": "json_object"}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}
    body, _ = create(client, model="fake/echo", input="a thing", text={"format": fmt})
    assert body["text"]["format"] == fmt
    assert upstream_body(fake_openai)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": True},
    }


def test_json_schema_output_from_the_local_model(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string"}},
        "required": ["colour"],
        "additionalProperties": False,
    }
    body, _ = create(
        client,
        model=LOCAL,
        input="Name a colour.",
        max_output_tokens=40,
        text={"format": {"type": "json_schema", "name": "colour", "schema": schema}},
    )
    assert isinstance(json.loads(body["output"][-1]["content"][0]["text"])["colour"], str)


def test_reasoning_is_an_output_item_and_effort_is_passed_on(
    client: openai.OpenAI, fake_openai: Server
) -> None:
    body, _ = create(client, model="fake/reasoner", input="why", reasoning={"effort": "low"})
    reasoning, message = body["output"]
    assert reasoning["type"] == "reasoning" and reasoning["id"].startswith("rs_")
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "let me think"}]
    assert reasoning["summary"] == []
    assert message["content"][0]["text"] == "echo: why"
    assert body["reasoning"]["effort"] == "low"
    assert body["usage"]["output_tokens_details"] == {"reasoning_tokens": 3}
    assert body["usage"]["input_tokens_details"]["cached_tokens"] == 1
    assert upstream_body(fake_openai)["reasoning_effort"] == "low"
    create(client, model="fake/reasoner", input="and?", previous_response_id=body["id"])
    assert upstream_body(fake_openai)["messages"][1] == {  # the reasoning goes back with its turn
        "role": "assistant",
        "content": "echo: why",
        "reasoning_content": "let me think",
    }


@pytest.mark.parametrize("model", [LOCAL, "fake/claude"])
def test_models_without_reasoning_controls_still_answer(client: openai.OpenAI, model: str) -> None:
    body, _ = create(
        client, model=model, input="Hi.", reasoning={"effort": "high"}, max_output_tokens=8
    )
    assert body["reasoning"] == {"effort": "high", "summary": None}
    assert body["output"][-1]["type"] == "message"


def test_a_length_cut_is_an_incomplete_response(client: openai.OpenAI) -> None:
    body, _ = create(
        client, model="fake/claude", input="one two three four five", max_output_tokens=2
    )
    assert body["status"] == "incomplete" and body["completed_at"] is None
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "incomplete"


def test_a_replayed_cached_answer_is_a_response_of_its_own(client: openai.OpenAI) -> None:
    cached = client.with_options(default_headers={"x-entrepot-cache": "on"})
    first, _ = create(cached, model="fake/echo", input="cache me please")
    raw = cached.responses.with_raw_response.create(model="fake/echo", input="cache me please")
    assert raw.headers["x-entrepot-cache"] == "hit"
    second = raw.http_response.json()
    validate(second, "Response")
    assert second["id"] != first["id"]
    assert second["output"][0]["id"] != first["output"][0]["id"]
    assert second["output"][0]["content"] == first["output"][0]["content"]
    assert client.responses.retrieve(second["id"]).id == second["id"]
    assert client.responses.retrieve(first["id"]).id == first["id"]


# --- refused before any upstream call ---------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": [{"type": "file_search_call", "id": "x"}]}, "input[0].type"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_video", "url": "x"}]}]},
            "input[0].content[0].type",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0].type",
        ),
        (
            {
                "input": [
                    {"role": "user", "content": "hi"},
                    {"type": "function_call_output", "call_id": "call_nope", "output": "1"},
                ]
            },
            "input[1].call_id",
        ),
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        (
            {"input": "hi", "tools": [{"type": "file_search", "vector_store_ids": []}]},
            "tools[0].type",
        ),
        ({"input": "hi", "background": True}, "background"),
        ({"input": "hi", "tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
        ({"input": "hi", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "hi", "temperature": 3}, "temperature"),
        ({"input": "hi", "metadata": {"k": 1}}, "metadata"),
        ({"input": []}, "input"),
        ({"input": "hi", "reasoning": {"effort": "enormous"}}, "reasoning.effort"),
    ],
)
def test_bad_requests_are_refused_naming_the_param(
    gateway: Server, client: openai.OpenAI, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.with_raw_response.create(model="fake/echo", **fields)
    error = caught.value
    assert error.status_code == 400
    body: Any = error.body
    assert body["param"] == param and body["type"] == "invalid_request_error"
    validate({"error": body}, "ErrorResponse")
    record = usage_record(gateway, error.response.headers["x-request-id"])
    assert record["status"] == 400 and record["cost_nanos"] is None
    assert record["deployment"] is None  # no upstream was called


def test_unsupported_tools_say_so(client: openai.OpenAI) -> None:
    error = refused(client, model="fake/echo", input="hi", tools=[{"type": "web_search"}])
    assert "not supported" in error.message


def test_other_methods_and_paths(gateway: Server, client_key: str) -> None:
    headers = {"Authorization": f"Bearer {client_key}"}
    listing = httpx.get(gateway.url + "/v1/responses", headers=headers)
    assert listing.status_code == 405 and listing.headers["allow"] == "POST"
    unknown = httpx.get(gateway.url + "/v1/responses/resp_unknown", headers=headers)
    assert unknown.status_code == 404
    validate(unknown.json(), "ErrorResponse")
    anonymous = httpx.get(gateway.url + "/v1/responses/resp_unknown")
    assert anonymous.status_code == 401
