"""Targeted checks of request bodies: exactly the fields the gateway relies on, each with an
error that names the parameter. Everything else passes through to the upstream untouched, which
is both faster than validating OpenAI's whole schema and kinder to vendor extensions.
"""

from __future__ import annotations

from typing import Any

from entrepot.exceptions import InvalidRequestError

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
RESPONSE_FORMATS = frozenset({"text", "json_object", "json_schema"})


def _fail(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _optional_int(body: dict[str, Any], name: str, low: int, high: int | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if not _is_int(value):
        raise _fail(name, f"{name} must be an integer, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _fail(name, f"{name} must be {bound}, got {value}")


def _optional_number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not _is_number(value):
        raise _fail(name, f"{name} must be a number, got {type(value).__name__}")
    if not low <= value <= high:
        raise _fail(name, f"{name} must be between {low:g} and {high:g}, got {value}")


def _optional_type(body: dict[str, Any], name: str, kind: type, label: str) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise _fail(name, f"{name} must be {label}, got {type(value).__name__}")


def _model_and_sampling(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _fail("", "the request body must be a JSON object")
    model = body.get("model")
    if model is None:
        raise _fail("model", "model is required")
    if not isinstance(model, str) or not model:
        raise _fail("model", "model must be a non-empty string")
    _optional_int(body, "max_tokens", 1)
    _optional_int(body, "max_completion_tokens", 1)
    _optional_int(body, "n", 1, 128)
    _optional_int(body, "seed", -(2**63), 2**64 - 1)
    _optional_number(body, "temperature", 0, 2)
    _optional_number(body, "top_p", 0, 1)
    _optional_number(body, "presence_penalty", -2, 2)
    _optional_number(body, "frequency_penalty", -2, 2)
    _optional_type(body, "stream", bool, "a boolean")
    _optional_type(body, "user", str, "a string")
    stop = body.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise _fail("stop", "stop must be a string or an array of strings")
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _fail("stream_options", "stream_options must be an object")
        if not body.get("stream"):
            raise _fail("stream_options", "stream_options is only allowed when stream is true")
        if not isinstance(options.get("include_usage", False), bool):
            raise _fail("stream_options.include_usage", "include_usage must be a boolean")
    return body


def validate_chat(raw: Any) -> dict[str, Any]:
    body = _model_and_sampling(raw)
    messages = body.get("messages")
    if messages is None:
        raise _fail("messages", "messages is required")
    if not isinstance(messages, list) or not messages:
        raise _fail("messages", "messages must be a non-empty array")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _fail(where, f"{where} must be an object")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise _fail(f"{where}.role", f"{where}.role must be one of {', '.join(sorted(ROLES))}")
        content = message.get("content")
        if content is None:
            if role not in ("assistant", "function"):
                raise _fail(f"{where}.content", f"{where}.content is required for role {role}")
        elif not isinstance(content, str | list):
            raise _fail(f"{where}.content", f"{where}.content must be a string or an array")
        elif isinstance(content, list):
            _content_parts(content, f"{where}.content")
    tools = body.get("tools")
    if tools is not None and not (
        isinstance(tools, list) and all(isinstance(t, dict) for t in tools)
    ):
        raise _fail("tools", "tools must be an array of objects")
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice, str | dict):
        raise _fail("tool_choice", "tool_choice must be a string or an object")
    response_format = body.get("response_format")
    if response_format is not None and (
        not isinstance(response_format, dict)
        or not isinstance(response_format.get("type"), str)
        or response_format["type"] not in RESPONSE_FORMATS
    ):
        kinds = ", ".join(sorted(RESPONSE_FORMATS))
        raise _fail("response_format", f"response_format.type must be one of {kinds}")
    return body


def _content_parts(parts: list[Any], where: str) -> None:
    """Each part is an object with a type; a text part's text is a string, since the personal
    data detector reads only strings and anything else would pass it unread."""
    for j, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _fail(where, f"{where} parts must be objects with a type")
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise _fail(f"{where}[{j}].text", f"{where}[{j}].text must be a string")


def validate_completion(raw: Any) -> dict[str, Any]:
    body = _model_and_sampling(raw)
    prompt = body.get("prompt")
    if prompt is None:
        raise _fail("prompt", "prompt is required")
    if prompt == [] or not _is_text_or_tokens(prompt):
        raise _fail(
            "prompt", "prompt must be a string, or a non-empty array of strings or token arrays"
        )
    _optional_type(body, "echo", bool, "a boolean")
    _optional_type(body, "suffix", str, "a string")
    return body


def validate_embedding(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _fail("", "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _fail("model", "model is required and must be a non-empty string")
    raw = body.get("input")
    if raw is None:
        raise _fail("input", "input is required")
    if raw == "" or raw == [] or not _is_text_or_tokens(raw):
        raise _fail("input", "input must be a non-empty string, array of strings, or token arrays")
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise _fail("encoding_format", "encoding_format must be float or base64")
    _optional_int(body, "dimensions", 1)
    return body


def _is_text_or_tokens(value: Any) -> bool:
    if isinstance(value, str):
        return True
    if not isinstance(value, list):
        return False
    return (
        all(isinstance(v, str) for v in value)
        or all(_is_int(v) for v in value)
        or all(isinstance(v, list) and all(_is_int(t) for t in v) for v in value)
    )
