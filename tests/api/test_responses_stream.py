"""Streamed Responses through the running gateway: every event checked against OpenAI's spec
and its `event:` line, sequence numbers from 0 without gaps, the official SDK's stream helper,
tool calls, reasoning, cut-off and failed streams, and the stored copy written before the
stream says it is complete."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.api.test_responses import WEATHER_TOOL
from tests.conftest import LOCAL, Server, usage_record
from tests.schemas import validate


def stream_events(
    gateway: Server, key: str, body: dict[str, Any], on_event: Any = None
) -> tuple[list[dict[str, Any]], str]:
    """Every event of one streamed response, checked, and the gateway's request id.
    `on_event(event)` runs as each event arrives, while the stream is still open."""
    events: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream(
        "POST",
        gateway.url + "/v1/responses",
        json={**body, "stream": True},
        headers=headers,
        timeout=120,
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                event = json.loads(line.removeprefix("data: "))
                assert event["type"] == name
                validate(event, "ResponseStreamEvent")
                events.append(event)
                if on_event is not None:
                    on_event(event)
        request_id = response.headers["x-request-id"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    return events, request_id


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


@pytest.mark.parametrize("model", [LOCAL, "fake/echo", "fake/claude", "remote/smollm2"])
def test_each_kind_of_model_streams_the_full_event_sequence(
    gateway: Server, client_key: str, model: str
) -> None:
    events, _ = stream_events(
        gateway, client_key, {"model": model, "input": "Say hello.", "max_output_tokens": 12}
    )
    kinds = [e["type"] for e in events]
    assert kinds[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert kinds[-4:-1] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    deltas = "".join(e["delta"] for e in of_type(events, "response.output_text.delta"))
    assert deltas and of_type(events, "response.output_text.done")[0]["text"] == deltas
    final = events[-1]["response"]
    validate(final, "Response")
    assert final["model"] == model and final["usage"]["output_tokens"] > 0
    assert final["output"][0]["content"][0]["text"] == deltas


def test_the_sdk_stream_helper_and_the_ledger(gateway: Server, client: openai.OpenAI) -> None:
    with client.responses.stream(model="fake/echo", input="one two three") as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(texts) == final.output_text == "echo: one two three"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 4)
    with client.responses.with_streaming_response.create(
        model="fake/echo", input="one two three", stream=True
    ) as raw:
        request_id = raw.headers["x-request-id"]
        assert [e.type for e in raw.parse()][-1] == "response.completed"
    record = usage_record(gateway, request_id)
    assert record["endpoint"] == "responses" and record["stream"] == 1
    assert (record["prompt_tokens"], record["completion_tokens"]) == (3, 4)
    assert record["cost_nanos"] == 3 * 2_000 + 4 * 8_000


def test_the_stored_copy_exists_before_completed_is_sent(
    gateway: Server, client_key: str, client: openai.OpenAI
) -> None:
    found: list[str] = []

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "response.completed":  # the stream is still open here
            found.append(client.responses.retrieve(event["response"]["id"]).output_text)

    events, _ = stream_events(
        gateway, client_key, {"model": "fake/echo", "input": "kept first"}, on_event
    )
    assert found == ["echo: kept first"]
    final = events[-1]["response"]
    stored = httpx.get(
        f"{gateway.url}/v1/responses/{final['id']}",
        headers={"Authorization": f"Bearer {client_key}"},
    )
    assert stored.json() == final


def test_a_streamed_tool_call_and_its_round_trip(
    gateway: Server, client_key: str, client: openai.OpenAI
) -> None:
    events, _ = stream_events(
        gateway,
        client_key,
        {"model": "fake/claude", "input": "weather in Paris?", "tools": [WEATHER_TOOL]},
    )
    added = [e["item"] for e in of_type(events, "response.output_item.added")]
    call = next(item for item in added if item["type"] == "function_call")
    assert call["id"].startswith("fc_") and call["call_id"] == "toolu_1"
    assert call["name"] == "get_weather" and call["status"] == "in_progress"
    arguments = "".join(
        e["delta"] for e in of_type(events, "response.function_call_arguments.delta")
    )
    (done,) = of_type(events, "response.function_call_arguments.done")
    assert json.loads(arguments) == json.loads(done["arguments"]) == {"city": "Paris"}
    assert done["item_id"] == call["id"] and done["name"] == "get_weather"
    final = events[-1]["response"]
    assert final["output"][-1]["type"] == "function_call"
    assert final["output"][-1]["status"] == "completed"

    follow_up, _ = stream_events(
        gateway,
        client_key,
        {
            "model": "fake/claude",
            "previous_response_id": final["id"],
            "input": [{"type": "function_call_output", "call_id": "toolu_1", "output": "sunny"}],
            "tools": [WEATHER_TOOL],
        },
    )
    answer = follow_up[-1]["response"]
    assert answer["previous_response_id"] == final["id"]
    assert answer["output"][0]["content"][0]["text"] == "echo: sunny"
    items = client.responses.input_items.list(answer["id"], order="asc").data
    assert [item.type for item in items] == ["message", "function_call", "function_call_output"]


def test_streamed_reasoning_is_a_reasoning_item(gateway: Server, client_key: str) -> None:
    events, _ = stream_events(gateway, client_key, {"model": "fake/reasoner", "input": "why"})
    first = of_type(events, "response.output_item.added")[0]
    assert first["item"]["type"] == "reasoning" and first["output_index"] == 0
    (part,) = [e for e in of_type(events, "response.content_part.added") if e["output_index"] == 0]
    assert part["part"] == {"type": "reasoning_text", "text": ""}
    deltas = "".join(e["delta"] for e in of_type(events, "response.reasoning_text.delta"))
    assert deltas == of_type(events, "response.reasoning_text.done")[0]["text"] == "let me think"
    reasoning, message = events[-1]["response"]["output"]
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "let me think"}]
    assert message["type"] == "message"
    assert of_type(events, "response.output_text.delta")[0]["output_index"] == 1
    assert events[-1]["response"]["usage"]["output_tokens_details"]["reasoning_tokens"] == 3


def test_a_cut_off_stream_ends_incomplete(gateway: Server, client_key: str) -> None:
    events, _ = stream_events(
        gateway,
        client_key,
        {"model": "fake/claude", "input": "one two three four", "max_output_tokens": 2},
    )
    assert events[-1]["type"] == "response.incomplete"
    final = events[-1]["response"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete"


@pytest.mark.parametrize(
    ("model", "text"), [("fake/midstream", "one two three"), ("fake/claude", "fail-midstream")]
)
def test_a_failure_mid_stream_is_response_failed(
    gateway: Server, client_key: str, client: openai.OpenAI, model: str, text: str
) -> None:
    events, request_id = stream_events(gateway, client_key, {"model": model, "input": text})
    assert events[-1]["type"] == "response.failed"
    failed = events[-1]["response"]
    validate(failed, "Response")
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "server_error" and failed["error"]["message"]
    assert failed["output"][0]["status"] == "incomplete"
    assert of_type(events, "response.output_text.delta")  # it had begun
    record = usage_record(gateway, request_id)
    assert record["status"] >= 500 and record["completion_tokens"] > 0
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(failed["id"])


def test_local_model_streams_a_required_tool_call(gateway: Server, client_key: str) -> None:
    """Needs tool support for local models (grammar-forced calls for tool_choice required)."""
    events, _ = stream_events(
        gateway,
        client_key,
        {
            "model": LOCAL,
            "input": "What is the weather in Paris?",
            "tools": [WEATHER_TOOL],
            "tool_choice": "required",
            "max_output_tokens": 60,
        },
    )
    final = events[-1]["response"]
    calls = [item for item in final["output"] if item["type"] == "function_call"]
    assert calls and calls[0]["name"] == "get_weather"
    assert isinstance(json.loads(calls[0]["arguments"]), dict)
