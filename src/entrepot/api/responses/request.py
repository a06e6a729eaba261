"""A Responses API request body, checked and split in two: the internal chat body's fields
(everything but the messages, which `items` builds) and the request's own settings, which the
Response object repeats back to the client.

What the gateway cannot honour is refused with a 400 naming the parameter, rather than silently
answered differently from what the client asked: built-in tools (web or file search, computer
use, ...), background mode, server-side conversations, stored prompts and automatic truncation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from entrepot.api.responses.items import normalise_input
from entrepot.exceptions import InvalidRequestError
from entrepot.types import JSON

TOOL_CHOICES = frozenset({"auto", "none", "required"})
EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
SUMMARIES = frozenset({"auto", "concise", "detailed"})  # accepted and repeated; none is made
METADATA_PAIRS, METADATA_KEY_CHARS, METADATA_VALUE_CHARS = 16, 64, 512
# Fields whose meaning the gateway cannot provide; ignoring them would change the answer.
UNSUPPORTED = {
    "conversation": "server-side conversations are not supported; use previous_response_id",
    "prompt": "stored prompts are not supported",
}


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    store: bool
    instructions: str | None
    input: list[JSON]  # the new input items, normalised (each with an id)
    previous_response_id: str | None
    internal: JSON  # the internal chat body, without its messages
    settings: JSON  # the request's settings, as the Response object repeats them


def parse_request(raw: object) -> ResponsesRequest:
    if not isinstance(raw, dict):
        raise _fail("", "the request body must be a JSON object")
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise _fail("model", "model is required and must be a non-empty string")
    _refuse_unsupported(raw)
    _check_sampling(raw)
    settings = _settings(raw, model)
    stream = _optional(raw, "stream", bool, "a boolean", False)
    return ResponsesRequest(
        store=settings["store"],
        instructions=settings["instructions"],
        input=normalise_input(raw.get("input")),
        previous_response_id=settings["previous_response_id"],
        internal=_internal(settings, stream),
        settings=settings,
    )


def _settings(raw: JSON, model: str) -> JSON:
    """The request's settings, checked, in the form the Response object repeats them."""
    tools = _tools(raw.get("tools"))
    settings: JSON = {
        "instructions": _optional(raw, "instructions", str, "a string", None),
        "model": model,
        "tools": tools,
        "tool_choice": _tool_choice(raw.get("tool_choice"), tools),
        "parallel_tool_calls": _optional(raw, "parallel_tool_calls", bool, "a boolean", True),
        "text": _text(raw.get("text")),
        "reasoning": _reasoning(raw.get("reasoning")),
        "max_output_tokens": raw.get("max_output_tokens"),
        "temperature": raw.get("temperature"),
        "top_p": raw.get("top_p"),
        "metadata": _metadata(raw.get("metadata")),
        "store": _optional(raw, "store", bool, "a boolean", True),
        "previous_response_id": _optional(raw, "previous_response_id", str, "a string", None),
        "truncation": "disabled",
        "background": False,
    }
    if raw.get("user") is not None:
        settings["user"] = raw["user"]
    return settings


def _internal(settings: JSON, stream: bool) -> JSON:
    """The internal chat body for these settings, but for its messages."""
    internal: JSON = {"model": settings["model"], "stream": stream}
    tools, tool_choice = settings["tools"], settings["tool_choice"]
    if tools:
        internal["tools"] = [_chat_tool(tool) for tool in tools]
        internal["tool_choice"] = _chat_tool_choice(tool_choice)
        internal["parallel_tool_calls"] = settings["parallel_tool_calls"]
    elif tool_choice == "required" or isinstance(tool_choice, dict):
        raise _fail("tool_choice", "tool_choice requires tools")
    response_format = _response_format(settings["text"]["format"])
    if response_format is not None:
        internal["response_format"] = response_format
    for name, internal_name in (
        ("max_output_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("user", "user"),
    ):
        if settings.get(name) is not None:
            internal[internal_name] = settings[name]
    if settings["reasoning"]["effort"] is not None:
        internal["reasoning_effort"] = settings["reasoning"]["effort"]
    return internal


def _fail(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def _optional(raw: JSON, name: str, kind: type, label: str, default: Any) -> Any:
    value = raw.get(name)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise _fail(name, f"{name} must be {label}, got {type(value).__name__}")
    return value


def _check_sampling(raw: JSON) -> None:
    """Checked here, under the Responses API's names, before the internal body is."""
    tokens = raw.get("max_output_tokens")
    if tokens is not None and (not _is_int(tokens) or tokens < 1):
        raise _fail("max_output_tokens", "max_output_tokens must be an integer of at least 1")
    for name, high in (("temperature", 2), ("top_p", 1)):
        value = raw.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high
        ):
            raise _fail(name, f"{name} must be a number between 0 and {high}")
    _optional(raw, "user", str, "a string", None)


def _among(value: object, names: frozenset[str]) -> bool:
    """A membership test that a list or object sent in a name's place cannot break."""
    return isinstance(value, str) and value in names


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _refuse_unsupported(raw: JSON) -> None:
    if raw.get("background"):
        raise _fail("background", "background responses are not supported; omit background")
    for name, message in UNSUPPORTED.items():
        if raw.get(name) is not None:
            raise _fail(name, message)
    if raw.get("truncation") not in (None, "disabled"):
        raise _fail("truncation", "only truncation 'disabled' is supported")


def _tools(value: object) -> list[JSON]:
    """Function tools in the Responses API's flat shape, as the Response repeats them."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail("tools", "tools must be an array")
    tools: list[JSON] = []
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _fail(where, f"{where} must be an object")
        kind = tool.get("type")
        if kind != "function":
            raise _fail(
                f"{where}.type",
                f"tool type {kind!r} is not supported: only function tools are",
            )
        name, parameters = tool.get("name"), tool.get("parameters")
        if not isinstance(name, str) or not name:
            raise _fail(f"{where}.name", f"{where}.name must be a non-empty string")
        if parameters is not None and not isinstance(parameters, dict):
            raise _fail(f"{where}.parameters", f"{where}.parameters must be an object")
        description, strict = tool.get("description"), tool.get("strict")
        if description is not None and not isinstance(description, str):
            raise _fail(f"{where}.description", f"{where}.description must be a string")
        if strict is not None and not isinstance(strict, bool):
            raise _fail(f"{where}.strict", f"{where}.strict must be a boolean")
        echoed: JSON = {"type": "function", "name": name, "parameters": parameters}
        if description is not None:
            echoed["description"] = description
        echoed["strict"] = strict
        tools.append(echoed)
    return tools


def _chat_tool(tool: JSON) -> JSON:
    function: JSON = {"name": tool["name"]}
    if "description" in tool:
        function["description"] = tool["description"]
    if tool["parameters"] is not None:
        function["parameters"] = tool["parameters"]
    if tool["strict"] is not None:
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _tool_choice(value: object, tools: list[JSON]) -> str | JSON:
    if value is None:
        return "auto"
    if isinstance(value, str) and value in TOOL_CHOICES:
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        name = value.get("name")
        if not isinstance(name, str) or name not in {t["name"] for t in tools}:
            raise _fail("tool_choice.name", "tool_choice.name must name one of the tools")
        return {"type": "function", "name": name}
    if isinstance(value, dict):
        raise _fail(
            "tool_choice",
            f"tool_choice type {value.get('type')!r} is not supported: only function tools are",
        )
    raise _fail("tool_choice", "tool_choice must be auto, none, required or a function")


def _chat_tool_choice(choice: str | JSON) -> str | JSON:
    if isinstance(choice, str):
        return choice
    return {"type": "function", "function": {"name": choice["name"]}}


def _text(value: object) -> JSON:
    if value is None:
        return {"format": {"type": "text"}}
    if not isinstance(value, dict):
        raise _fail("text", "text must be an object")
    fmt = value.get("format")
    if fmt is None:
        fmt = {"type": "text"}
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise _fail("text.format.type", "text.format.type must be text, json_object or json_schema")
    if fmt["type"] == "json_schema":
        if not isinstance(fmt.get("name"), str) or not fmt["name"]:
            raise _fail("text.format.name", "text.format.name must be a non-empty string")
        if not isinstance(fmt.get("schema"), dict):
            raise _fail("text.format.schema", "text.format.schema must be an object")
        if fmt.get("strict") is not None and not isinstance(fmt["strict"], bool):
            raise _fail("text.format.strict", "text.format.strict must be a boolean")
    return {**value, "format": fmt}


def _response_format(fmt: JSON) -> JSON | None:
    """The chat API's `response_format`, which nests the schema where Responses has it flat."""
    if fmt["type"] == "text":
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    schema: JSON = {"name": fmt["name"], "schema": fmt["schema"]}
    for optional in ("description", "strict"):
        if fmt.get(optional) is not None:
            schema[optional] = fmt[optional]
    return {"type": "json_schema", "json_schema": schema}


def _reasoning(value: object) -> JSON:
    if value is None:
        return {"effort": None, "summary": None}
    if not isinstance(value, dict):
        raise _fail("reasoning", "reasoning must be an object")
    effort = value.get("effort")
    if effort is not None and not _among(effort, EFFORTS):
        raise _fail("reasoning.effort", f"reasoning.effort must be one of {sorted(EFFORTS)}")
    summary = value.get("summary")
    if summary is not None and not _among(summary, SUMMARIES):
        raise _fail("reasoning.summary", f"reasoning.summary must be one of {sorted(SUMMARIES)}")
    return {"effort": effort, "summary": summary}


def _metadata(value: object) -> JSON:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > METADATA_PAIRS:
        raise _fail("metadata", f"metadata must be an object of at most {METADATA_PAIRS} pairs")
    for key, item in value.items():
        if len(key) > METADATA_KEY_CHARS:
            raise _fail("metadata", f"metadata keys are at most {METADATA_KEY_CHARS} characters")
        if not isinstance(item, str) or len(item) > METADATA_VALUE_CHARS:
            raise _fail(
                "metadata", f"metadata values are strings of at most {METADATA_VALUE_CHARS} chars"
            )
    return value
