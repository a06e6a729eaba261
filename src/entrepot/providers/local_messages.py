"""A chat request as a local model's chat template reads it: string contents, and tools and tool
turns in the form the template knows.

A template that renders `tools` itself (Qwen, Hermes, Llama 3.1, ...) is given them, with the
assistant's calls (arguments as objects, as those templates expect) and the `tool` messages as
they are. A template without tool support, like the bundled SmolLM2's ChatML, would drop them all,
so the widely used Hermes/Qwen convention is written out as text instead: the functions listed in
the system prompt within <tools>, the assistant's calls as <tool_call> blocks, and tool results as
a user turn of <tool_response> blocks (the roles such a model was trained on). Either way the
caller's strings stay literal: local_prompt.py shields them after this step.
"""

from __future__ import annotations

import json
from typing import Any

from entrepot.exceptions import InvalidRequestError
from entrepot.types import JSON

TOOLS_PROMPT = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n"
    "<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within"
    " <tool_call></tool_call> XML tags:\n"
    '<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)
_RESULT_ROLES = frozenset({"tool", "function"})


def template_input(
    messages: list[JSON], tools: list[JSON] | None, native: bool
) -> tuple[list[JSON], list[JSON] | None]:
    """(messages, tools) for a template that renders tools itself (`native`) or not; `tools` is
    None when the model is not to see any."""
    if native:
        return [_native(message) for message in messages], tools
    turns = _written_out(messages)
    return (_with_tools(turns, tools) if tools else turns), None


def _native(message: JSON) -> JSON:
    turn = {**message, "role": _role(message), "content": _text(message)}
    if "tool_calls" in message:
        turn["tool_calls"] = [
            {**call, "function": {**function, "arguments": _arguments(function)}}
            for call, function in _calls(message)
        ]
    return turn


def _written_out(messages: list[JSON]) -> list[JSON]:
    turns: list[JSON] = []
    results = False  # whether the last turn holds tool results, which consecutive ones join
    for message in messages:
        role = _role(message)
        if role in _RESULT_ROLES:
            block = f"<tool_response>\n{_text(message)}\n</tool_response>"
            if results:
                turns[-1]["content"] += "\n" + block
            else:
                turns.append({"role": "user", "content": block})
            results = True
            continue
        results = False
        content = _text(message)
        if role == "assistant" and message.get("tool_calls"):
            blocks = "\n".join(_call_block(function) for _, function in _calls(message))
            content = f"{content}\n{blocks}" if content else blocks
        turns.append({"role": role, "content": content})
    return turns


def _with_tools(turns: list[JSON], tools: list[JSON]) -> list[JSON]:
    listed = TOOLS_PROMPT.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
    if turns and turns[0]["role"] == "system":
        return [{"role": "system", "content": f"{turns[0]['content']}\n\n{listed}"}, *turns[1:]]
    return [{"role": "system", "content": listed}, *turns]


def _call_block(function: JSON) -> str:
    call = {"name": function.get("name"), "arguments": _arguments(function)}
    return f"<tool_call>\n{json.dumps(call, ensure_ascii=False)}\n</tool_call>"


def _calls(message: JSON) -> list[tuple[JSON, JSON]]:
    """(call, function) pairs of an assistant message's `tool_calls`."""
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list) or not all(
        isinstance(call, dict) and isinstance(call.get("function"), dict) for call in calls
    ):
        raise InvalidRequestError(
            "tool_calls must be a list of function calls", param="messages.tool_calls"
        )
    return [(call, call["function"]) for call in calls]


def _arguments(function: JSON) -> Any:
    """A call's arguments as the object they encode; text that is not JSON stays text."""
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        return arguments
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def _role(message: JSON) -> Any:
    return "system" if message.get("role") == "developer" else message.get("role")


def _text(message: JSON) -> str:
    """Chat templates expect string content; text parts are joined, and what a local model
    cannot read is refused."""
    content = message.get("content")
    if not isinstance(content, list):
        return str(content or "")
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise InvalidRequestError(
                f"local models accept only text content, not {kind!r}", param="messages"
            )
        texts.append(str(part.get("text", "")))
    return "".join(texts)
