"""What a chat request's `tools` and `tool_choice` ask of a local model, decided once per request:

- no tools, or `tool_choice` "none": a plain answer; the tools are not shown to the model.
- "auto" (the default with tools): the model sees the tools and may answer with text or with
  `<tool_call>` blocks, which are read out of its answer.
- "required", or a named function: a grammar makes the model write one call (of the named
  function, or of any offered one). One call per choice, whatever `parallel_tool_calls` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from entrepot.exceptions import InvalidRequestError
from entrepot.providers.local_grammar import call_grammar
from entrepot.providers.local_tool_calls import (
    CallReader,
    ForcedCallReader,
    TaggedCallReader,
    TextReader,
)
from entrepot.types import JSON

Mode = Literal["none", "auto", "forced"]


@dataclass(frozen=True, slots=True)
class ToolPlan:
    mode: Mode
    tools: list[JSON]  # the `tools` entries the model is shown (empty for "none")
    callable: list[JSON]  # the function objects a forced call may be of
    parallel: bool = True

    @classmethod
    def from_body(cls, body: JSON) -> ToolPlan:
        tools = body.get("tools") or []
        functions = [_function(tool) for tool in tools]
        choice = body.get("tool_choice")
        if choice == "none" or (not tools and choice in (None, "auto")):
            return cls("none", [], [])
        if not tools:
            raise InvalidRequestError("tool_choice needs tools to choose from", param="tool_choice")
        parallel = body.get("parallel_tool_calls") is not False
        if choice in (None, "auto"):
            return cls("auto", tools, functions, parallel)
        if choice == "required":
            return cls("forced", tools, functions, parallel)
        name = _named(choice)
        named = [function for function in functions if function["name"] == name]
        if not named:
            raise InvalidRequestError(
                f"tool_choice names {name!r}, which is not among the tools", param="tool_choice"
            )
        return cls("forced", tools, named, parallel)

    def grammar(self) -> str | None:
        return call_grammar(self.callable) if self.mode == "forced" else None

    def reader(self) -> CallReader:
        if self.mode == "forced":
            return ForcedCallReader()
        if self.mode == "auto":
            names = frozenset(function["name"] for function in self.callable)
            return TaggedCallReader(names, self.parallel)
        return TextReader()


def finish_reason(finish: str, reader: CallReader) -> str:
    """An answer that ended by itself after making calls ended to have them run."""
    return "tool_calls" if reader.calls and finish == "stop" else finish


def _function(tool: object) -> JSON:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise InvalidRequestError("local models support only function tools", param="tools")
    function = tool.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise InvalidRequestError("each tool needs a function with a name", param="tools")
    return function


def _named(choice: object) -> str:
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if isinstance(name, str):
            return name
    raise InvalidRequestError(
        'tool_choice must be "none", "auto", "required" or'
        ' {"type": "function", "function": {"name": ...}}',
        param="tool_choice",
    )
