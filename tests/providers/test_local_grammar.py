"""The grammars built for local decoding: one rule set per function, renamed apart; a fallback
for parameters the converter cannot compile; JSON strings without raw control characters."""

from __future__ import annotations

import re
from typing import Any

import pytest

from entrepot.exceptions import InvalidRequestError
from entrepot.providers.local_grammar import call_grammar, response_grammar


def _rules(grammar: str) -> dict[str, str]:
    return dict(line.split(" ::= ", 1) for line in grammar.splitlines())


def _place(field: str, kind: str) -> dict[str, Any]:
    """Parameters whose one property refers to a definition named `Place`."""
    return {
        "type": "object",
        "properties": {"place": {"$ref": "#/$defs/Place"}},
        "required": ["place"],
        "$defs": {
            "Place": {"type": "object", "properties": {field: {"type": kind}}, "required": [field]}
        },
    }


def test_each_function_keeps_its_own_definitions() -> None:
    rules = _rules(
        call_grammar(
            [
                {"name": "by_city", "parameters": _place("city", "string")},
                {"name": "by_zip", "parameters": _place("zip", "integer")},
            ]
        )
    )
    assert rules["root"] == "call0-root | call1-root"
    assert '"\\"by_city\\""' in rules["call0-name"] and '"\\"by_zip\\""' in rules["call1-name"]
    assert "city" in rules["call0-Place"] and "zip" not in rules["call0-Place"]
    assert "zip" in rules["call1-Place"] and "city" not in rules["call1-Place"]
    # The name comes before the arguments, so a stream can announce the call first.
    assert re.search(r"call0-name-kv .* call0-arguments-kv", rules["call0-root"])
    # Every rule a rule uses is defined.
    for body in rules.values():
        for used in re.findall(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|([a-zA-Z0-9-]+)', body):
            assert not used or used in rules


@pytest.mark.parametrize(
    "parameters",
    [
        {"type": "object", "properties": {"x": {"type": "frobnicate"}}},
        {"type": "string"},
        {"type": "object", "properties": {"x": {"$ref": "#/$defs/Missing"}}},
    ],
)
def test_parameters_it_cannot_compile_still_get_a_call_of_any_object(
    parameters: dict[str, Any],
) -> None:
    rules = _rules(call_grammar([{"name": "f", "parameters": parameters}]))
    assert rules["call0-arguments"] == "call0-object"
    assert rules["call0-object"].startswith('"{"')


def test_a_function_without_parameters_takes_an_empty_object() -> None:
    rules = _rules(call_grammar([{"name": "ping"}]))
    assert rules["call0-arguments"] == '"{" call0-space  "}" call0-space'


def test_json_strings_exclude_raw_control_characters() -> None:
    schema = {"type": "object", "properties": {"s": {"type": "string"}}}
    for grammar, prefix in [
        (call_grammar([{"name": "f", "parameters": schema}]), "call0-"),
        (response_grammar(schema), ""),
    ]:
        assert _rules(grammar)[f"{prefix}char"].startswith(r'[^"\\\x7F\x00-\x1F] |')


def test_a_response_schema_it_cannot_compile_is_a_client_error() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        response_grammar({"type": "frobnicate"})
    assert caught.value.param == "response_format"
