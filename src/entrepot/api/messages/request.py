"""A Messages API request body as the internal chat body (OpenAI's chat completions format).

Checked as Anthropic checks it — `max_tokens` is required, `temperature` is at most 1, an unknown
field is refused — with errors that name the field by Anthropic's dotted path. Fields that only
tune how Anthropic serves a request (prompt caching, service tier, region, speed) change nothing
another model would answer, and are left out of the internal body; a deployment speaking the
Messages API still receives them, in the body as it came. Everything else that cannot be said
in the internal format (Anthropic's server-side tools, MCP servers, containers) is a 400.

Sampling beyond OpenAI's format travels as the extensions upstreams know it by: `top_k` as
`top_k` (vLLM, llama.cpp servers), extended thinking as `reasoning_effort`.
"""

from __future__ import annotations

from typing import Any

from entrepot.api.messages.turns import conversation, invalid
from entrepot.types import JSON

# Anthropic's minimum thinking budget is 1,024 tokens; at or above these, more effort.
MEDIUM_EFFORT_BUDGET = 4096
HIGH_EFFORT_BUDGET = 16384
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
_HINTS = frozenset(
    {"cache_control", "service_tier", "inference_geo", "speed", "diagnostics", "context_management"}
)
_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
    }
)
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
_OUTPUT_CONFIG = frozenset({"effort", "format"})


def body_object(parsed: object) -> JSON:
    """The parsed request body, which must be an object."""
    if not isinstance(parsed, dict):
        raise invalid("body", "the request body must be a JSON object")
    return parsed


def internal_body(parsed: JSON, *, counting: bool = False) -> JSON:
    """The internal chat body for a Messages body. `counting`: for `count_tokens`, which takes
    no `max_tokens`."""
    for name in parsed:
        if name not in _FIELDS and name not in _HINTS:
            raise invalid(str(name)[:100], "this field is not supported by this gateway")
    model = parsed.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model", "Field required: a non-empty string")
    body: JSON = {
        "model": model,
        "messages": conversation(parsed.get("system"), parsed.get("messages")),
    }
    if not counting:
        body["max_tokens"] = _max_tokens(parsed.get("max_tokens"))
        _sampling(parsed, body)
    body.update(_tools(parsed.get("tools"), parsed.get("tool_choice")))
    effort = _effort(parsed.get("thinking"), parsed.get("output_config"))
    if effort is not None:
        body["reasoning_effort"] = effort
    response_format = _response_format(parsed.get("output_config"))
    if response_format is not None:
        body["response_format"] = response_format
    return body


def stop_sequences(parsed: JSON) -> tuple[str, ...]:
    """The request's stop sequences (checked by `internal_body` already)."""
    return tuple(parsed.get("stop_sequences") or ())


def _max_tokens(value: Any) -> int:
    if value is None:
        raise invalid("max_tokens", "Field required")
    if not _is_int(value) or value < 1:
        raise invalid("max_tokens", "Input should be an integer greater than or equal to 1")
    return int(value)


def _sampling(parsed: JSON, body: JSON) -> None:
    """Stream flag, stop sequences, sampling and the end user, in their internal names."""
    stream = parsed.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream", "Input should be a valid boolean")
    if stream:
        body["stream"] = True
    stops = parsed.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise invalid("stop_sequences", "Input should be a list of strings")
        if stops:
            body["stop"] = list(stops)
    for name in ("temperature", "top_p"):
        value = parsed.get(name)
        if value is not None:
            if not _is_number(value) or not 0 <= value <= 1:
                raise invalid(name, "Input should be a number between 0 and 1")
            body[name] = value
    top_k = parsed.get("top_k")
    if top_k is not None:
        if not _is_int(top_k) or top_k < 0:
            raise invalid("top_k", "Input should be an integer greater than or equal to 0")
        body["top_k"] = top_k
    metadata = parsed.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise invalid("metadata", "Input should be an object")
        user = metadata.get("user_id")
        if user is not None and not isinstance(user, str):
            raise invalid("metadata.user_id", "Input should be a valid string")
        if user:
            body["user"] = user


def _tools(tools: Any, choice: Any) -> JSON:
    """`tools`, `tool_choice` and `parallel_tool_calls`, as the internal format has them. A
    `tool_choice` is checked even without tools, which leave it nothing to choose."""
    chosen = None if choice is None else _tool_choice(choice)
    if tools is None or tools == []:
        return {}
    if not isinstance(tools, list):
        raise invalid("tools", "Input should be a valid list")
    internal: JSON = {"tools": [_tool(tool, f"tools.{i}") for i, tool in enumerate(tools)]}
    if chosen is not None:
        internal.update(chosen)
    return internal


def _tool_choice(choice: Any) -> JSON:
    if not isinstance(choice, dict):
        raise invalid("tool_choice", "Input should be an object")
    kind = choice.get("type")
    internal: JSON = {}
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise invalid("tool_choice.name", "Field required")
        internal["tool_choice"] = {"type": "function", "function": {"name": name}}
    elif isinstance(kind, str) and kind in _TOOL_CHOICES:
        internal["tool_choice"] = _TOOL_CHOICES[kind]
    else:
        raise invalid("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        internal["parallel_tool_calls"] = False
    return internal


def _tool(tool: Any, where: str) -> JSON:
    """A client tool as a function. Anthropic's own tools (web search, code execution, bash,
    the text editor, ...) carry a versioned `type` and run on Anthropic's side: not here."""
    if not isinstance(tool, dict):
        raise invalid(where, "Input should be an object")
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise invalid(
            f"{where}.type",
            f"{str(kind)[:100]!r} is one of Anthropic's server tools, which this gateway does"
            " not run; only client tools with an input_schema are supported",
        )
    name, schema = tool.get("name"), tool.get("input_schema")
    if not isinstance(name, str) or not name:
        raise invalid(f"{where}.name", "Field required")
    if not isinstance(schema, dict):
        raise invalid(f"{where}.input_schema", "Field required: a JSON Schema object")
    function: JSON = {"name": name, "parameters": schema}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _effort(thinking: Any, output_config: Any) -> str | None:
    """How hard to reason: `output_config.effort` if given, else from an enabled thinking
    budget; adaptive or disabled thinking leaves it to the model."""
    if isinstance(output_config, dict):
        for name in output_config:
            if name not in _OUTPUT_CONFIG:
                raise invalid(f"output_config.{str(name)[:100]}", "Extra inputs are not permitted")
    if isinstance(output_config, dict) and output_config.get("effort") is not None:
        effort = output_config["effort"]
        if not isinstance(effort, str) or effort not in _EFFORTS:
            raise invalid("output_config.effort", f"Input should be one of {', '.join(_EFFORTS)}")
        return _EFFORTS[effort]
    if thinking is None:
        return None
    if not isinstance(thinking, dict):
        raise invalid("thinking", "Input should be an object")
    kind = thinking.get("type")
    if kind in ("disabled", "adaptive"):
        return None
    if kind != "enabled":
        raise invalid("thinking.type", "Input should be 'enabled', 'adaptive' or 'disabled'")
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise invalid("thinking.budget_tokens", "Input should be a positive integer")
    if budget >= HIGH_EFFORT_BUDGET:
        return "high"
    return "medium" if budget >= MEDIUM_EFFORT_BUDGET else "low"


def _response_format(output_config: Any) -> JSON | None:
    """Structured output (`output_config.format`) as OpenAI's `json_schema` response format."""
    if output_config is None:
        return None
    if not isinstance(output_config, dict):
        raise invalid("output_config", "Input should be an object")
    output_format = output_config.get("format")
    if output_format is None:
        return None
    schema = output_format.get("schema") if isinstance(output_format, dict) else None
    if not isinstance(output_format, dict) or output_format.get("type") != "json_schema":
        raise invalid("output_config.format.type", "Input should be 'json_schema'")
    if not isinstance(schema, dict):
        raise invalid("output_config.format.schema", "Field required: a JSON Schema object")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
