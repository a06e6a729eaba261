"""Which calls a chat request allows a local model: decided, and refused when it makes no sense,
before the request waits for a model."""

from __future__ import annotations

from typing import Any

import pytest

from entrepot.exceptions import InvalidRequestError
from entrepot.providers.local_tool_calls import ForcedCallReader, TaggedCallReader, TextReader
from entrepot.providers.local_tools import ToolPlan, finish_reason

TOOLS = [
    {"type": "function", "function": {"name": "get_weather"}},
    {"type": "function", "function": {"name": "get_time"}},
]
MESSAGES = [{"role": "user", "content": "hi"}]


def _plan(**body: Any) -> ToolPlan:
    return ToolPlan.from_body({"messages": MESSAGES, **body})


def test_no_tools_or_none_is_a_plain_answer_without_tools_shown() -> None:
    for plan in [_plan(), _plan(tool_choice="auto"), _plan(tools=TOOLS, tool_choice="none")]:
        assert (plan.mode, plan.tools, plan.grammar()) == ("none", [], None)
        assert isinstance(plan.reader(), TextReader)


def test_auto_shows_the_tools_and_reads_tagged_calls() -> None:
    plan = _plan(tools=TOOLS)
    assert (plan.mode, plan.tools, plan.grammar()) == ("auto", TOOLS, None)
    assert isinstance(plan.reader(), TaggedCallReader)


def test_a_forced_choice_is_decoded_under_a_grammar_of_the_allowed_calls() -> None:
    required = _plan(tools=TOOLS, tool_choice="required")
    named = _plan(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert [f["name"] for f in required.callable] == ["get_weather", "get_time"]
    assert [f["name"] for f in named.callable] == ["get_time"]
    assert named.tools == TOOLS  # the model still sees every tool
    grammar = named.grammar()
    assert grammar is not None and grammar.startswith("root ::= call0-root\n")
    assert '"\\"get_time\\""' in grammar and "get_weather" not in grammar
    assert isinstance(named.reader(), ForcedCallReader)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "x"}}}, None),
        ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools"),
        ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools"),
    ],
)
def test_a_choice_that_makes_no_sense_is_refused(body: dict[str, Any], param: str | None) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        _plan(**body)
    assert refused.value.param == (param or "tool_choice")


def test_an_answer_that_made_calls_and_ended_by_itself_ends_for_them() -> None:
    reader = ForcedCallReader()
    reader.feed('{"name": "f", "arguments": {}}')
    assert finish_reason("stop", reader) == "tool_calls"
    assert finish_reason("length", reader) == "length"
    assert finish_reason("stop", TextReader()) == "stop"
