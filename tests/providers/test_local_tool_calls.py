"""Reading tool calls out of a local model's text: crafted answers, fed whole and a character at
a time, come out as the same message, with deltas shaped as OpenAI streams them."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from entrepot.providers.local_tool_calls import (
    CallReader,
    ForcedCallReader,
    TaggedCallReader,
    message_of,
)

NAMES = frozenset({"get_weather", "get_time"})
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def _read(reader: CallReader, pieces: list[str]) -> list[dict[str, Any]]:
    deltas = [delta for piece in pieces for delta in reader.feed(piece)]
    return deltas + reader.close()


def _both_ways(make: Any, text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The message and deltas from single characters, checked equal to the whole text's."""
    whole = message_of(_read(make(), [text]))
    deltas = _read(make(), list(text))
    message = message_of(deltas)
    assert _without_ids(message) == _without_ids(whole)
    return message, deltas


def _without_ids(message: dict[str, Any]) -> dict[str, Any]:
    calls = [{**call, "id": None} for call in message.get("tool_calls", [])]
    return {**message, "tool_calls": calls}


def _tagged(parallel: bool = True) -> TaggedCallReader:
    return TaggedCallReader(NAMES, parallel)


def test_a_tagged_call_becomes_a_tool_call_and_the_text_around_it_content() -> None:
    message, deltas = _both_ways(_tagged, f"Let me check.\n{CALL}\n")
    assert message["content"] == "Let me check."
    (call,) = message["tool_calls"]
    assert re.fullmatch(r"call_[0-9a-f]{24}", call["id"])
    assert call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0] == {
        "index": 0,
        "id": call["id"],
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(later.keys() == {"index", "function"} for later in calls[1:])
    assert all(later["function"].keys() == {"arguments"} for later in calls[1:])


def test_only_calls_means_no_content_and_each_call_its_own_index() -> None:
    second = CALL.replace("get_weather", "get_time").replace("city", "zone")
    message, _ = _both_ways(_tagged, f"{CALL}\n{second}")
    assert message["content"] is None
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_weather", "get_time"]
    assert len({c["id"] for c in message["tool_calls"]}) == 2
    single, _ = _both_ways(lambda: _tagged(parallel=False), f"{CALL}\n{second}")
    assert [c["function"]["name"] for c in single["tool_calls"]] == ["get_weather"]


@pytest.mark.parametrize(
    "block",
    [
        "<tool_call>{not json}</tool_call>",
        '<tool_call>{"name": "launch_missiles", "arguments": {}}</tool_call>',
        '<tool_call>{"name": "get_weather", "arguments": "Paris"}</tool_call>',
        '<tool_call>["get_weather"]</tool_call>',
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Pa',  # cut short
    ],
)
def test_what_is_no_call_of_an_offered_function_stays_text(block: str) -> None:
    text = f"Answer: \n{block} done"
    message, _ = _both_ways(_tagged, text)
    assert message == {"role": "assistant", "content": text, "refusal": None}


def test_plain_text_passes_through_exactly() -> None:
    for text in ["Hello there.  \n", "a < b and <tool is not <tool_call", "  x", ""]:
        message, _ = _both_ways(_tagged, text)
        assert message["content"] == text and "tool_calls" not in message


def test_an_unclosed_complete_call_at_the_end_counts() -> None:
    message, _ = _both_ways(_tagged, CALL.removesuffix("</tool_call>"))
    assert message["tool_calls"][0]["function"]["name"] == "get_weather"


def test_text_that_may_open_a_block_is_held_back_until_it_does_not() -> None:
    reader = _tagged()
    assert reader.feed("Hello <tool") == [{"content": "Hello"}]
    assert reader.feed("kit") == [{"content": " <toolkit"}]


FORCED = '{"name": "get_weather", "arguments": {"city": "Pa}r\\"is", "at": {"x": [1]}} }'


def test_a_forced_call_streams_its_arguments_as_written() -> None:
    message, deltas = _both_ways(ForcedCallReader, FORCED)
    assert message["content"] is None
    (call,) = message["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": 'Pa}r"is', "at": {"x": [1]}}
    # One delta per character once the arguments began: nothing was held back.
    assert len(deltas) == 1 + len(call["function"]["arguments"])


def test_a_forced_call_cut_before_its_arguments_is_text() -> None:
    message, _ = _both_ways(ForcedCallReader, '{"name": "get_wea')
    assert message["content"] == '{"name": "get_wea' and "tool_calls" not in message
