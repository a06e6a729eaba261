"""The Responses stream encoder on crafted internal chunks: parallel tool calls whose deltas
interleave, reasoning before text, failures before and after the stored copy is written. Every
event is checked against OpenAI's spec and numbered from 0 without gaps."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from entrepot.api.responses.answer import skeleton
from entrepot.api.responses.events import ResponseEvents
from entrepot.exceptions import UpstreamError
from tests.schemas import validate

SETTINGS: dict[str, Any] = {
    "instructions": None,
    "model": "m",
    "tools": [],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "text": {"format": {"type": "text"}},
    "reasoning": {"effort": None, "summary": None},
    "max_output_tokens": None,
    "temperature": None,
    "top_p": None,
    "metadata": {},
    "store": True,
    "previous_response_id": None,
    "truncation": "disabled",
    "background": False,
}
USAGE = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def usage_chunk() -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [], "usage": USAGE}


def call_delta(index: int, arguments: str, call_id: str | None = None, name: str = "") -> Any:
    delta: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        delta |= {"id": call_id, "type": "function"}
        delta["function"]["name"] = name
    return chunk({"tool_calls": [delta]})


class Kept:
    def __init__(self, fail: bool = False) -> None:
        self.responses: list[dict[str, Any]] = []
        self.fail = fail

    async def __call__(self, response: dict[str, Any]) -> None:
        if self.fail:
            raise OSError("the store is down")
        self.responses.append(json.loads(json.dumps(response)))


def parse(data: bytes) -> list[dict[str, Any]]:
    events = []
    for block in data.decode().split("\n\n"):
        if not block:
            continue
        name, payload = block.split("\n")
        event = json.loads(payload.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        validate(event, "ResponseStreamEvent")
        events.append(event)
    return events


def run(encoder: ResponseEvents, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    data = b"".join(encoder.chunk(c) for c in chunks) + asyncio.run(encoder.done())
    events = parse(data)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def encoder(kept: Kept) -> ResponseEvents:
    return ResponseEvents(skeleton(SETTINGS, "resp_test", 1_700_000_000), kept)


def test_parallel_tool_calls_keep_their_indices_ids_and_call_ids() -> None:
    kept = Kept()
    events = run(
        encoder(kept),
        [
            chunk({"role": "assistant", "content": "Checking both."}),
            call_delta(0, '{"city":', "call_a", "get_weather"),
            call_delta(1, '{"city":', "call_b", "get_time"),
            call_delta(1, ' "Oslo"}'),
            call_delta(0, ' "Lima"}'),
            chunk({}, "tool_calls"),
            usage_chunk(),
        ],
    )
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["type"]) for e in added] == [
        (0, "message"),
        (1, "function_call"),
        (2, "function_call"),
    ]
    a, b = added[1]["item"], added[2]["item"]
    assert (a["call_id"], a["name"], b["call_id"], b["name"]) == (
        "call_a",
        "get_weather",
        "call_b",
        "get_time",
    )
    assert a["id"] != b["id"] and a["id"].startswith("fc_")
    deltas = [e for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert [(e["output_index"], e["item_id"]) for e in deltas] == [
        (1, a["id"]),
        (2, b["id"]),
        (2, b["id"]),
        (1, a["id"]),
    ]
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["output_index"], e["arguments"]) for e in done] == [
        (1, '{"city": "Lima"}'),
        (2, '{"city": "Oslo"}'),
    ]
    # The message was finished when the first call began, before any call's events.
    kinds = [e["type"] for e in events]
    assert kinds.index("response.output_text.done") < kinds.index(
        "response.function_call_arguments.delta"
    )
    final = events[-1]
    assert final["type"] == "response.completed"
    output = final["response"]["output"]
    assert [item["type"] for item in output] == ["message", "function_call", "function_call"]
    assert [item.get("call_id") for item in output[1:]] == ["call_a", "call_b"]
    assert all(item["status"] == "completed" for item in output)
    assert final["response"]["usage"]["total_tokens"] == 12
    assert kept.responses == [final["response"]]


def test_reasoning_then_text_are_two_items_in_order() -> None:
    events = run(
        encoder(Kept()),
        [
            chunk({"reasoning_content": "Hmm, "}),
            chunk({"reasoning_content": "easy."}),
            chunk({"content": "Four"}),
            chunk({"content": "."}, "stop"),
            usage_chunk(),
        ],
    )
    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    reasoning, message = events[-1]["response"]["output"]
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "Hmm, easy."}]
    assert message["content"][0]["text"] == "Four."
    assert events[2]["output_index"] == 0 and events[9]["output_index"] == 1


def test_a_refusal_is_a_part_of_its_own() -> None:
    events = run(encoder(Kept()), [chunk({"refusal": "I can't."}, "stop"), usage_chunk()])
    (message,) = events[-1]["response"]["output"]
    assert message["content"] == [{"type": "refusal", "refusal": "I can't."}]
    assert "response.refusal.done" in [e["type"] for e in events]


def test_a_length_cut_is_incomplete_down_to_the_item() -> None:
    events = run(encoder(Kept()), [chunk({"content": "One two"}, "length"), usage_chunk()])
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["response"]["output"][0]["status"] == "incomplete"


def test_an_empty_stream_still_starts_and_completes() -> None:
    events = run(encoder(Kept()), [usage_chunk()])
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]


def test_a_failure_mid_stream_is_response_failed_with_the_partial_output() -> None:
    kept = Kept()
    stream = encoder(kept)
    data = stream.chunk(chunk({"content": "Half an"}))
    data += stream.chunk(call_delta(0, '{"ci', "call_a", "f"))
    data += stream.error(UpstreamError("upstream went away"))
    events = parse(data)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    failed = events[-1]
    assert failed["type"] == "response.failed"
    response = failed["response"]
    assert response["status"] == "failed"
    assert response["error"] == {"code": "server_error", "message": "upstream went away"}
    message, call = response["output"]
    assert message["content"][0]["text"] == "Half an" and message["status"] == "completed"
    assert call["arguments"] == '{"ci' and call["status"] == "incomplete"
    assert kept.responses == []


def test_a_failure_to_store_ends_with_response_failed_right_after_what_was_sent() -> None:
    stream = encoder(Kept(fail=True))
    data = stream.chunk(chunk({"content": "Hello"}, "stop"))
    with pytest.raises(OSError):
        asyncio.run(stream.done())
    data += stream.error(UpstreamError("the gateway hit an internal error"))
    events = parse(data)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events][-2:] == ["response.output_text.delta", "response.failed"]
    assert "response.completed" not in [e["type"] for e in events]


def test_a_failure_before_any_chunk_still_starts_the_stream() -> None:
    events = parse(encoder(Kept()).error(UpstreamError("nothing came")))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
