"""GBNF grammars that constrain local decoding to valid JSON: answers in a JSON Schema
(`response_format`), and the tool call a request insists on (`tool_choice` "required" or a named
function), so even a model never trained for either answers in a shape the client can parse.

llama-cpp-python's converter builds the grammars, with two corrections. Its JSON string rule lets
raw control characters through, which no JSON parser accepts, so that rule is replaced by the one
llama.cpp itself uses. And a call grammar offers several functions: compiled as one schema, their
`$defs` would collide (the converter names a definition's rule after its last path segment), so
each function's call is compiled on its own and its rules are renamed apart.
"""

from __future__ import annotations

import json
import re
from typing import Any

from llama_cpp.llama_grammar import PRIMITIVE_RULES, json_schema_to_gbnf

from entrepot.exceptions import InvalidRequestError
from entrepot.types import JSON

_LOOSE_CHAR = PRIMITIVE_RULES["char"].content
_JSON_CHAR = _LOOSE_CHAR.replace(r'[^"\\]', r'[^"\\\x7F\x00-\x1F]', 1)
# A grammar's tokens: string literals and character classes (left alone) or rule names.
_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|([a-zA-Z0-9-]+)')
_ANY_OBJECT: JSON = {"type": "object"}
_NO_ARGUMENTS: JSON = {"type": "object", "properties": {}}


def schema_grammar(schema: JSON, order: list[str] | None = None) -> str:
    """The grammar of JSON documents valid for `schema`; raises what the converter raises."""
    rules = json_schema_to_gbnf(json.dumps(schema), order)
    return "\n".join(_strict_strings(line) for line in rules.splitlines())


def response_grammar(schema: object) -> str:
    """`response_format.json_schema.schema` as a grammar, or a client error saying why not."""
    if not isinstance(schema, dict):
        raise InvalidRequestError(
            "response_format.json_schema.schema must be an object", param="response_format"
        )
    try:
        return schema_grammar(schema)
    except Exception as exc:  # the converter fails with asserts, KeyErrors and ValueErrors
        raise InvalidRequestError(
            f"response_format: unsupported JSON Schema ({exc})", param="response_format"
        ) from None


def call_grammar(functions: list[JSON]) -> str:
    """`{"name": <name>, "arguments": <object>}` for exactly one of `functions`, name first (a
    stream can then announce the call before its arguments)."""
    rules: list[str] = []
    roots: list[str] = []
    for number, function in enumerate(functions):
        prefix = f"call{number}-"
        rules += (_rename(line, prefix) for line in _call_rules(function).splitlines())
        roots.append(f"{prefix}root")
    return "\n".join([f"root ::= {' | '.join(roots)}", *rules])


def _call_rules(function: JSON) -> str:
    """One function's call; a parameters schema the converter cannot compile (or one that is
    not an object) still gets a call, with any JSON object as its arguments."""
    name = function["name"]
    parameters = function.get("parameters")
    if parameters is None:
        return _compile_call(name, _NO_ARGUMENTS)
    if isinstance(parameters, dict) and parameters.get("type", "object") == "object":
        try:
            return _compile_call(name, parameters)
        except Exception:  # the converter fails with asserts, KeyErrors and ValueErrors
            pass
    return _compile_call(name, _ANY_OBJECT)


def _compile_call(name: str, parameters: JSON) -> str:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"name": {"const": name}, "arguments": parameters},
        "required": ["name", "arguments"],
    }
    # The parameters' own `#/$defs/...` references resolve against the document's root.
    for key in ("$defs", "definitions"):
        if key in parameters:
            schema[key] = parameters[key]
    return schema_grammar(schema, ["name", "arguments"])


def _strict_strings(line: str) -> str:
    name, _, body = line.partition(" ::= ")
    return f"{name} ::= {_JSON_CHAR}" if body == _LOOSE_CHAR else line


def _rename(line: str, prefix: str) -> str:
    def rename(match: re.Match[str]) -> str:
        return prefix + match.group() if match.group(1) else match.group()

    return _TOKEN.sub(rename, line)
