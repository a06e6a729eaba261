"""Input items: checked and given ids, in the form they are stored and listed back
(`normalise_input`), then turned into the internal chat messages (`to_messages`).

Every text the client sent reaches the messages — instructions, message parts, function call
arguments and outputs, reasoning summaries and text — because the messages are all that policy
scans: a text left out here would also leave the personal data detector's sight. Reasoning has
no place of its own in a chat conversation, so it travels as the `reasoning_content` of the
assistant message it preceded, as DeepSeek-style APIs take it back.
"""

from __future__ import annotations

import secrets
from typing import Any

from entrepot.exceptions import InvalidRequestError
from entrepot.types import JSON

ROLES = frozenset({"user", "system", "developer", "assistant"})
IMAGE_DETAILS = frozenset({"low", "high", "auto", "original"})


def new_id(prefix: str) -> str:
    """An OpenAI-style id (`resp_…`, `msg_…`); random, so ids say nothing about each other."""
    return f"{prefix}_{secrets.token_hex(24)}"


def _fail(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def normalise_input(value: object) -> list[JSON]:
    if isinstance(value, str):
        part = {"type": "input_text", "text": value}
        return [{"id": new_id("msg"), "type": "message", "role": "user", "content": [part]}]
    if not isinstance(value, list) or not value:
        raise _fail("input", "input must be a string or a non-empty array of items")
    return [_item(item, f"input[{i}]") for i, item in enumerate(value)]


def _item(item: object, where: str) -> JSON:
    if not isinstance(item, dict):
        raise _fail(where, f"{where} must be an object")
    kind = item.get("type", "message" if "role" in item else None)
    if kind == "message":
        return _message(item, where)
    if kind == "function_call":
        return _function_call(item, where)
    if kind == "function_call_output":
        return _function_call_output(item, where)
    if kind == "reasoning":
        return _reasoning(item, where)
    raise _fail(f"{where}.type", f"input item type {kind!r} is not supported")


def _text(item: JSON, field: str, where: str) -> str:
    value = item.get(field)
    if not isinstance(value, str):
        raise _fail(f"{where}.{field}", f"{where}.{field} must be a string")
    return value


def _own_id(item: JSON, prefix: str) -> str:
    given = item.get("id")
    return given if isinstance(given, str) and given else new_id(prefix)


def _message(item: JSON, where: str) -> JSON:
    role = item.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise _fail(f"{where}.role", f"{where}.role must be one of {', '.join(sorted(ROLES))}")
    content = item.get("content")
    assistant = role == "assistant"
    if isinstance(content, str):
        content = [{"type": "output_text" if assistant else "input_text", "text": content}]
    if not isinstance(content, list):
        raise _fail(f"{where}.content", f"{where}.content must be a string or an array")
    check = _output_part if assistant else _input_part
    parts = [check(part, f"{where}.content[{j}]") for j, part in enumerate(content)]
    message_id = _own_id(item, "msg")
    return {
        "id": message_id,
        "type": "message",
        "role": role,
        "content": parts,
        "status": "completed",
    }


def _input_part(part: object, where: str) -> JSON:
    if not isinstance(part, dict):
        raise _fail(where, f"{where} must be an object")
    kind = part.get("type")
    if kind == "input_text":
        return {"type": "input_text", "text": _text(part, "text", where)}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise _fail(f"{where}.image_url", "images are accepted by image_url only, not file_id")
        detail = part.get("detail") or "auto"
        if not isinstance(detail, str) or detail not in IMAGE_DETAILS:
            raise _fail(f"{where}.detail", f"{where}.detail must be one of {sorted(IMAGE_DETAILS)}")
        return {"type": "input_image", "image_url": url, "detail": detail}
    if kind in ("input_file", "input_audio"):
        raise _fail(f"{where}.type", f"content part type {kind!r} is not supported")
    raise _fail(f"{where}.type", f"unknown content part type {kind!r}")


def _output_part(part: object, where: str) -> JSON:
    """An assistant message's part: the text it wrote (`input_text` is read as such too)."""
    if not isinstance(part, dict):
        raise _fail(where, f"{where} must be an object")
    kind = part.get("type")
    if kind in ("output_text", "input_text"):
        text = _text(part, "text", where)
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    if kind == "refusal":
        return {"type": "refusal", "refusal": _text(part, "refusal", where)}
    raise _fail(f"{where}.type", f"unknown content part type {kind!r} in an assistant message")


def _function_call(item: JSON, where: str) -> JSON:
    return {
        "id": _own_id(item, "fc"),
        "type": "function_call",
        "call_id": _text(item, "call_id", where),
        "name": _text(item, "name", where),
        "arguments": _text(item, "arguments", where),
        "status": "completed",
    }


def _function_call_output(item: JSON, where: str) -> JSON:
    output = item.get("output")
    if isinstance(output, list):
        for j, part in enumerate(output):
            if not isinstance(part, dict) or part.get("type") != "input_text":
                raise _fail(
                    f"{where}.output[{j}]", "function call outputs may hold input_text parts only"
                )
            _text(part, "text", f"{where}.output[{j}]")
    elif not isinstance(output, str):
        raise _fail(f"{where}.output", f"{where}.output must be a string or an array")
    return {
        "id": _own_id(item, "fco"),
        "type": "function_call_output",
        "call_id": _text(item, "call_id", where),
        "output": output,
        "status": "completed",
    }


def _reasoning(item: JSON, where: str) -> JSON:
    reasoning: JSON = {"id": _own_id(item, "rs"), "type": "reasoning"}
    for field, kind in (("summary", "summary_text"), ("content", "reasoning_text")):
        parts = item.get(field)
        if parts is None:
            parts = []
        if not isinstance(parts, list):
            raise _fail(f"{where}.{field}", f"{where}.{field} must be an array")
        for j, part in enumerate(parts):
            if not isinstance(part, dict) or part.get("type") != kind:
                raise _fail(f"{where}.{field}[{j}]", f"{where}.{field} holds {kind} parts only")
            _text(part, "text", f"{where}.{field}[{j}]")
        if parts or field == "summary":
            reasoning[field] = [{"type": kind, "text": p["text"]} for p in parts]
    if isinstance(item.get("encrypted_content"), str):
        reasoning["encrypted_content"] = item["encrypted_content"]
    return reasoning


def to_messages(instructions: str | None, context: list[JSON], new: list[JSON]) -> list[JSON]:
    """The chat messages for a conversation: `context` (a previous response's input and output
    items, already checked) followed by the request's `new` items, after the instructions."""
    builder = _Messages()
    if instructions:
        builder.messages.append({"role": "system", "content": instructions})
    for item in context:
        builder.add(item, None)
    for i, item in enumerate(new):
        builder.add(item, f"input[{i}]")
    builder.flush_reasoning()
    return builder.messages


class _Messages:
    """Builds the chat messages item by item. Consecutive function calls (and the assistant text
    before them) are one assistant message with several tool calls, as the chat API has them."""

    def __init__(self) -> None:
        self.messages: list[JSON] = []
        self.calls: set[str] = set()
        self.reasoning: list[str] = []
        self.assistant: JSON | None = None  # the message that function calls join

    def add(self, item: JSON, where: str | None) -> None:
        kind = item["type"]
        if kind == "reasoning":
            parts = [*item.get("summary", ()), *item.get("content", ())]
            self.reasoning += [p["text"] for p in parts if p["text"]]
            return
        if kind == "message" and item["role"] == "assistant":
            self._assistant(new=True)["content"] = "".join(_part_text(p) for p in item["content"])
            return
        if kind == "function_call":
            self.calls.add(item["call_id"])
            function = {"name": item["name"], "arguments": item["arguments"]}
            call = {"id": item["call_id"], "type": "function", "function": function}
            self._assistant().setdefault("tool_calls", []).append(call)
            return
        self.flush_reasoning()
        self.assistant = None
        if kind == "function_call_output":
            self._tool_output(item, where)
        else:
            role = "system" if item["role"] == "developer" else item["role"]
            self.messages.append({"role": role, "content": _chat_content(item["content"])})

    def _assistant(self, new: bool = False) -> JSON:
        """The assistant message this item belongs to: the open one, unless the item is a message
        of its own or reasoning came in between, else a new one carrying that reasoning."""
        if new or self.assistant is None or self.reasoning:
            self.assistant = {"role": "assistant", "content": None}
            if self.reasoning:
                self.assistant["reasoning_content"] = "\n\n".join(self.reasoning)
                self.reasoning = []
            self.messages.append(self.assistant)
        return self.assistant

    def _tool_output(self, item: JSON, where: str | None) -> None:
        if item["call_id"] not in self.calls:
            raise _fail(
                f"{where}.call_id",
                f"no function_call with call_id {item['call_id']!r} precedes this output",
            )
        output = item["output"]
        text = output if isinstance(output, str) else "".join(p["text"] for p in output)
        self.messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": text})

    def flush_reasoning(self) -> None:
        """Reasoning no assistant text or call followed still goes out, on an empty turn."""
        if self.reasoning:
            self._assistant()["content"] = ""
            self.assistant = None


def _part_text(part: JSON) -> str:
    return str(part["text"] if part["type"] == "output_text" else part["refusal"])


def _chat_content(parts: list[JSON]) -> Any:
    if len(parts) == 1 and parts[0]["type"] == "input_text":
        return parts[0]["text"]
    chat: list[JSON] = []
    for part in parts:
        if part["type"] == "input_text":
            chat.append({"type": "text", "text": part["text"]})
        else:
            image = {"url": part["image_url"], "detail": part["detail"]}
            chat.append({"type": "image_url", "image_url": image})
    return chat
