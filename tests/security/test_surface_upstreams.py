"""Hostile upstreams behind the Responses and Messages surfaces, streamed and not: OpenAI-style
upstreams sending malformed tool calls, choices and deltas, Anthropic upstreams sending deltas for
blocks never started, no usage, or events after `message_stop` (see the fakes' `HOSTILE` targets).

Each request is answered in the surface's own terms — a well-formed answer (checked against
OpenAI's schemas or Anthropic's SDK types) or the surface's error format — never the gateway's
internal error, always before the client's timeout, and billed exactly once.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.api.test_messages import EVENTS, check_sequence, strict_message
from tests.conftest import Server, usage_record
from tests.fakes.anthropic_upstream import LATE_OUTPUT_TOKENS
from tests.fakes.openai_upstream import HOSTILE_ARGUMENTS
from tests.schemas import validate
from tests.security.surfaces import (
    ANTHROPIC_TARGETS,
    OPENAI_TARGETS,
    surfaces_gateway,
    surfaces_key,
)

__all__ = ["surfaces_gateway", "surfaces_key"]

JSON = dict[str, Any]
MODELS = [f"hostile-openai/{t}" for t in OPENAI_TARGETS] + [
    f"hostile-anthropic/{t}" for t in ANTHROPIC_TARGETS
]
TOOL = {"name": "lookup", "input_schema": {"type": "object"}}
TIMEOUT = 30
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


def request(path: str, model: str, stream: bool) -> JSON:
    if path == "/v1/responses":
        tool = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
        return {
            "model": model,
            "input": "weather?",
            "tools": [tool],
            "max_output_tokens": 50,
            "stream": stream,
        }
    messages = [{"role": "user", "content": "weather?"}]
    return {
        "model": model,
        "max_tokens": 50,
        "messages": messages,
        "tools": [TOOL],
        **({"stream": True} if stream else {}),
    }


def post(gateway: Server, key: str, path: str, body: JSON) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"}
    return httpx.post(gateway.url + path, json=body, headers=headers, timeout=TIMEOUT)


def named_events(response: httpx.Response) -> list[JSON]:
    """The stream's events; each `event:` name must be its data's type."""
    lines = [line for line in response.text.splitlines() if line]
    events = []
    for name, data in zip(lines[::2], lines[1::2], strict=True):
        event = httpx.Response(200, content=data.removeprefix("data: ")).json()
        assert name == f"event: {event['type']}", (name, event)
        events.append(event)
    return events


def check_responses(response: httpx.Response, stream: bool) -> None:
    if response.status_code != 200:
        validate(response.json(), "ErrorResponse")
        return
    if not stream:
        validate(response.json(), "Response")
        return
    events = named_events(response)
    for number, event in enumerate(events):
        validate(event, "ResponseStreamEvent")
        assert event["sequence_number"] == number
    assert events[-1]["type"] in TERMINAL
    assert all(e["type"] not in TERMINAL for e in events[:-1])


def check_messages(response: httpx.Response, stream: bool) -> None:
    if response.status_code != 200:
        error = response.json()
        assert error["type"] == "error" and set(error["error"]) == {"type", "message"}, error
        return
    if not stream:
        strict_message(response.json())
        return
    events = named_events(response)
    if events[-1]["type"] != "error":
        check_sequence(events)
        return
    assert set(events[-1]["error"]) == {"type", "message"}, events[-1]
    for event in events[:-1]:
        if event["type"] != "ping":
            EVENTS.validate_python(event)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("path", ["/v1/responses", "/v1/messages"])
@pytest.mark.parametrize("model", MODELS)
def test_a_hostile_upstream_is_answered_in_the_surfaces_terms(
    surfaces_gateway: Server,
    surfaces_key: str,
    model: str,
    path: str,
    stream: bool,
) -> None:
    response = post(surfaces_gateway, surfaces_key, path, request(path, model, stream))
    assert response.status_code not in (500, 529), response.text[:1000]
    assert "Traceback" not in response.text and "internal error" not in response.text, (
        response.text[:1000]
    )
    (check_responses if path == "/v1/responses" else check_messages)(response, stream)
    row = usage_record(surfaces_gateway, response.headers["x-request-id"])  # exactly one
    assert row["completion_tokens"] < LATE_OUTPUT_TOKENS, row
    if (
        response.status_code == 200
        and "response.failed" not in response.text
        and ('"type":"error"' not in response.text)
    ):
        assert row["status"] == 200 and row["cost_nanos"], row
    assert httpx.get(surfaces_gateway.url + "/health").status_code == 200


@pytest.fixture
def request_node(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    return request


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_tool_arguments_sent_as_an_object_reach_the_client_as_json(
    surfaces_gateway: Server, surfaces_key: str, stream: bool
) -> None:
    """Written out as JSON (as the Responses API carries arguments), never as Python's repr."""
    model = "hostile-openai/tool-arguments-not-string"
    response = post(
        surfaces_gateway, surfaces_key, "/v1/responses", request("/v1/responses", model, stream)
    )
    assert response.status_code == 200, response.text[:500]
    if stream:
        done = [e for e in named_events(response) if e["type"] == "response.completed"]
        output = done[0]["response"]["output"]
    else:
        output = response.json()["output"]
    calls = [item for item in output if item["type"] == "function_call"]
    assert [json.loads(c["arguments"]) for c in calls] == [HOSTILE_ARGUMENTS]


def test_events_after_message_stop_are_neither_relayed_nor_billed(
    surfaces_gateway: Server, surfaces_key: str
) -> None:
    model = "hostile-anthropic/events-after-stop"
    response = post(
        surfaces_gateway, surfaces_key, "/v1/messages", request("/v1/messages", model, True)
    )
    events = named_events(response)
    assert [e["type"] for e in events].count("message_stop") == 1
    assert events[-1]["type"] == "message_stop" and " late" not in response.text
    row = usage_record(surfaces_gateway, response.headers["x-request-id"])
    assert row["status"] == 200 and row["completion_tokens"] < LATE_OUTPUT_TOKENS


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_usage_left_out_is_counted_by_the_gateway(
    surfaces_gateway: Server, surfaces_key: str, stream: bool
) -> None:
    """An Anthropic answer without its final usage is billed by the gateway's own count."""
    model = "hostile-anthropic/message-delta-without-usage"
    response = post(
        surfaces_gateway, surfaces_key, "/v1/messages", request("/v1/messages", model, stream)
    )
    assert response.status_code == 200, response.text[:500]
    row = usage_record(surfaces_gateway, response.headers["x-request-id"])
    assert row["usage_estimated"] and row["completion_tokens"] > 0 and row["cost_nanos"], row
