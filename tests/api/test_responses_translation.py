"""A Responses request into the internal chat body: items into messages (reasoning, parallel
calls, tool outputs), tools and formats into their chat shapes, and every text the client sent
within the personal data detector's sight."""

from __future__ import annotations

from typing import Any

import pytest

from entrepot.api.responses.items import normalise_input, to_messages
from entrepot.api.responses.request import parse_request
from entrepot.api.validation import validate_chat
from entrepot.config import DetectorConfig
from entrepot.exceptions import InvalidRequestError
from entrepot.policy.detector import PiiDetector

TOOL = {"type": "function", "name": "f", "parameters": {"type": "object"}}


def messages(items: Any, instructions: str | None = None) -> list[dict[str, Any]]:
    return to_messages(instructions, [], normalise_input(items))


def test_a_string_input_is_one_user_message() -> None:
    (item,) = normalise_input("hi")
    assert item["id"].startswith("msg_") and item["role"] == "user"
    assert messages("hi", "Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]


def test_reasoning_and_parallel_calls_are_one_assistant_turn() -> None:
    built = messages(
        [
            {"role": "user", "content": "weather and time in Oslo?"},
            {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "Two lookups."}],
                "content": [{"type": "reasoning_text", "text": "Call both tools."}],
            },
            {"role": "assistant", "content": "Looking."},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "time", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "rain"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "noon"}],
            },
        ]
    )
    assert built[1:] == [
        {
            "role": "assistant",
            "content": "Looking.",
            "reasoning_content": "Two lookups.\n\nCall both tools.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": "{}"},
                },
                {"id": "c2", "type": "function", "function": {"name": "time", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "rain"},
        {"role": "tool", "tool_call_id": "c2", "content": "noon"},
    ]
    validate_chat({"model": "m", "messages": built})


def test_reasoning_nothing_followed_still_goes_out() -> None:
    built = messages(
        [
            {"role": "user", "content": "hi"},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Thinking."}]},
        ]
    )
    assert built[-1] == {"role": "assistant", "content": "", "reasoning_content": "Thinking."}


def test_a_call_output_may_answer_a_call_from_the_previous_response() -> None:
    context = normalise_input(
        [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}]
    )
    new = normalise_input([{"type": "function_call_output", "call_id": "c1", "output": "ok"}])
    assert to_messages(None, context, new)[-1]["tool_call_id"] == "c1"
    with pytest.raises(InvalidRequestError) as caught:
        to_messages(None, [], new)
    assert caught.value.param == "input[0].call_id"


def test_parts_keep_their_order_and_developer_is_a_system_message() -> None:
    built = messages(
        [
            {"role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_image",
                        "image_url": "data:image/png;base64,AAAA",
                        "detail": "low",
                    },
                    {"type": "input_text", "text": "what is this?"},
                ],
            },
        ]
    )
    assert built == [
        {"role": "system", "content": "rules"},
        {
            "role": "user",
            "content": [
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
                },
                {"type": "text", "text": "what is this?"},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("items", "param"),
    [
        ([{"role": "tool", "content": "x"}], "input[0].role"),
        (
            [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}],
            "input[0].content[0].type",
        ),
        (
            [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}],
            "input[0].content[0].image_url",
        ),
        ([{"type": "function_call", "call_id": "c", "name": "f"}], "input[0].arguments"),
        (
            [{"type": "reasoning", "summary": [{"type": "reasoning_text", "text": "x"}]}],
            "input[0].summary[0]",
        ),
        ([{"content": "no role or type"}], "input[0].type"),
        (["not an object"], "input[0]"),
    ],
)
def test_malformed_items_name_their_place(items: Any, param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        normalise_input(items)
    assert caught.value.param == param


def test_tools_and_choices_become_chat_shapes() -> None:
    request = parse_request(
        {
            "model": "m",
            "input": "hi",
            "tools": [{**TOOL, "description": "does f", "strict": True}],
            "tool_choice": {"type": "function", "name": "f"},
            "parallel_tool_calls": False,
        }
    )
    assert request.internal["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "f",
                "description": "does f",
                "parameters": {"type": "object"},
                "strict": True,
            },
        }
    ]
    assert request.internal["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert request.internal["parallel_tool_calls"] is False
    assert request.settings["tool_choice"] == {"type": "function", "name": "f"}
    plain = parse_request({"model": "m", "input": "hi", "parallel_tool_calls": False})
    assert "parallel_tool_calls" not in plain.internal and "tools" not in plain.internal


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [TOOL], "tool_choice": {"type": "function", "name": "g"}}, "tool_choice.name"),
        ({"tools": [{"type": "function"}]}, "tools[0].name"),
        ({"tools": [{"type": "computer_use_preview"}]}, "tools[0].type"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"truncation": "auto"}, "truncation"),
        ({"text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
        ({"store": "yes"}, "store"),
        ({"reasoning": {"summary": "verbose"}}, "reasoning.summary"),
    ],
)
def test_requests_the_gateway_cannot_honour_are_refused(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_request({"model": "m", "input": "hi", **fields})
    assert caught.value.param == param


def test_the_detector_sees_every_text_the_client_sent() -> None:
    detector = PiiDetector(DetectorConfig())
    email = "jane.doe@example.com"
    for items in (
        [{"type": "reasoning", "summary": [{"type": "summary_text", "text": email}]}],
        [
            {
                "type": "reasoning",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": email}],
            }
        ],
        [
            {
                "type": "function_call",
                "call_id": "c",
                "name": "f",
                "arguments": f'{{"to": "{email}"}}',
            }
        ],
        [
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": email},
        ],
        [{"role": "assistant", "content": [{"type": "refusal", "refusal": email}]}],
    ):
        assert detector.scan({"messages": messages(items)}) == {"email": 1}, items
    assert detector.scan({"messages": messages("hi", instructions=email)}) == {"email": 1}
