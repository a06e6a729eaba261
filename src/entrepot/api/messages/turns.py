"""A Messages API conversation (`system` and `messages`) as internal chat messages.

Every text the client sent — system prompt, user text, tool results, tool call inputs, earlier
thinking — lands in a field the personal-data detector reads (`policy/detector.py`), so egress
policy judges what is really sent. Blocks a non-Anthropic model cannot be given are refused with
a 400 naming the block, never dropped; the one exception is `redacted_thinking`, an encrypted
blob only the Anthropic model that wrote it can read, which carries nothing for another model.

Anthropic pairs tool calls with results by id, strictly: each `tool_result` answers a `tool_use`
of the assistant message just before it, and each such `tool_use` is answered in the next
message. Upstreams speaking the internal format require the same of `tool_call_id`s, so the
pairing is checked here, once, with Anthropic's wording.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from entrepot.exceptions import InvalidRequestError
from entrepot.types import JSON

TOOL_ERROR_PREFIX = "Error: "
_USER_BLOCKS = frozenset({"text", "image", "document", "tool_result"})
_ASSISTANT_BLOCKS = frozenset({"text", "thinking", "redacted_thinking", "tool_use"})


def invalid(where: str, problem: str) -> InvalidRequestError:
    """Anthropic names the offending field first, by its dotted path."""
    return InvalidRequestError(f"{where}: {problem}", param=where)


def conversation(system: Any, messages: Any) -> list[JSON]:
    """The internal messages: the system prompt first, then each turn."""
    internal: list[JSON] = []
    if system is not None:
        internal.append({"role": "system", "content": system_text(system)})
    if not isinstance(messages, list):
        raise invalid("messages", "Input should be a valid list")
    unanswered: list[str] = []
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise invalid(where, "Input should be an object")
        role, content = message.get("role"), message.get("content")
        if not isinstance(content, str | list):
            raise invalid(f"{where}.content", "Input should be a string or a list of blocks")
        if role == "user":
            internal += _user(content, where, unanswered)
            unanswered = []
        elif role == "assistant":
            if unanswered:
                raise _unanswered(where, unanswered)
            turn, unanswered = _assistant(content, where)
            internal.append(turn)
        else:
            raise invalid(f"{where}.role", "Input should be 'user' or 'assistant'")
    return internal


def system_text(system: Any) -> str:
    """`system` as one string: a string, or text blocks joined by blank lines."""
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise invalid("system", "Input should be a string or a list of text blocks")
    texts = []
    for j, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise invalid(f"system.{j}", "only text blocks are accepted in system")
        texts.append(_text_of(block, f"system.{j}"))
    return "\n\n".join(texts)


def _unanswered(where: str, ids: list[str]) -> InvalidRequestError:
    return invalid(
        where,
        f"`tool_use` ids were found without `tool_result` blocks immediately after: "
        f"{', '.join(ids)}. Each `tool_use` block must have a corresponding `tool_result` "
        "block in the next message.",
    )


@dataclass(slots=True)
class _UserTurn:
    """A user message's blocks, sorted: tool results become `tool` messages, which must follow
    the assistant's tool calls directly; everything else — with the images tool results
    returned, which a tool message cannot hold — one user message after them, in order."""

    results: list[JSON] = field(default_factory=list)
    parts: list[JSON] = field(default_factory=list)

    def messages(self) -> list[JSON]:
        if not self.parts:
            return self.results
        parts = self.parts
        content: str | list[JSON] = parts
        if len(parts) == 1 and parts[0]["type"] == "text":
            content = parts[0]["text"]
        return [*self.results, {"role": "user", "content": content}]


def _user(content: str | list[Any], where: str, unanswered: list[str]) -> list[JSON]:
    if isinstance(content, str):
        if unanswered:
            raise _unanswered(where, unanswered)
        return [{"role": "user", "content": content}]
    turn = _UserTurn()
    pending = list(unanswered)
    for j, block in enumerate(content):
        at = f"{where}.content.{j}"
        kind = _block_type(block, at, _USER_BLOCKS)
        if kind == "tool_result":
            _tool_result(block, at, pending, turn)
        elif kind == "image":
            turn.parts.append(image_part(block, at))
        elif kind == "document":
            turn.parts.append(_document_part(block, at))
        else:
            turn.parts.append({"type": "text", "text": _text_of(block, at)})
    if pending:
        raise _unanswered(where, pending)
    return turn.messages()


def _tool_result(block: JSON, at: str, pending: list[str], turn: _UserTurn) -> None:
    """One result, for a call still waiting for its one (which it takes off `pending`)."""
    tool_id = block.get("tool_use_id")
    if not isinstance(tool_id, str) or tool_id not in pending:
        raise invalid(
            at,
            f"unexpected `tool_use_id` found in `tool_result` blocks: {str(tool_id)[:100]}. "
            "Each `tool_result` block must have a corresponding `tool_use` block in the "
            "previous message.",
        )
    pending.remove(tool_id)
    texts, images = _result_content(block.get("content"), f"{at}.content")
    text = "\n".join(texts)
    if block.get("is_error") is True:
        text = TOOL_ERROR_PREFIX + text
    turn.results.append({"role": "tool", "tool_call_id": tool_id, "content": text})
    turn.parts += images


def _result_content(content: Any, at: str) -> tuple[list[str], list[JSON]]:
    if content is None:
        return [], []
    if isinstance(content, str):
        return [content], []
    if not isinstance(content, list):
        raise invalid(at, "Input should be a string or a list of blocks")
    texts: list[str] = []
    images: list[JSON] = []
    for k, block in enumerate(content):
        kind = _block_type(block, f"{at}.{k}", frozenset({"text", "image"}))
        if kind == "image":
            images.append(image_part(block, f"{at}.{k}"))
        else:
            texts.append(_text_of(block, f"{at}.{k}"))
    return texts, images


def _assistant(content: str | list[Any], where: str) -> tuple[JSON, list[str]]:
    """The assistant turn, and the ids of the tools it called (to be answered next)."""
    if isinstance(content, str):
        return {"role": "assistant", "content": content}, []
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[JSON] = []
    for j, block in enumerate(content):
        at = f"{where}.content.{j}"
        kind = _block_type(block, at, _ASSISTANT_BLOCKS)
        if kind == "text":
            texts.append(_text_of(block, at))
        elif kind == "thinking":
            thought = block.get("thinking")
            if not isinstance(thought, str):
                raise invalid(f"{at}.thinking", "Input should be a valid string")
            thoughts.append(thought)
        elif kind == "tool_use":
            calls.append(_tool_call(block, at))
    turn: JSON = {"role": "assistant", "content": "".join(texts) or None}
    if thoughts:
        turn["reasoning_content"] = "\n\n".join(thoughts)
    if calls:
        turn["tool_calls"] = calls
    elif turn["content"] is None:
        turn["content"] = ""
    return turn, [call["id"] for call in calls]


def _tool_call(block: JSON, at: str) -> JSON:
    tool_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(tool_id, str) or not tool_id:
        raise invalid(f"{at}.id", "Input should be a non-empty string")
    if not isinstance(name, str) or not name:
        raise invalid(f"{at}.name", "Input should be a non-empty string")
    if not isinstance(arguments, dict):
        raise invalid(f"{at}.input", "Input should be a valid dictionary")
    function = {"name": name, "arguments": orjson.dumps(arguments).decode()}
    return {"id": tool_id, "type": "function", "function": function}


def image_part(block: JSON, at: str) -> JSON:
    """An image block as an `image_url` part: base64 data becomes a data URL."""
    source = _source(block, at)
    kind = source.get("type")
    if kind == "base64":
        media, data = source.get("media_type"), source.get("data")
        if not isinstance(media, str) or not isinstance(data, str) or not data:
            raise invalid(f"{at}.source", "base64 images need a media_type and data")
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise invalid(f"{at}.source.url", "Input should be an http(s) URL")
        return {"type": "image_url", "image_url": {"url": url}}
    raise invalid(f"{at}.source", "only base64 and url image sources are supported here")


def _document_part(block: JSON, at: str) -> JSON:
    """A plain-text document is text; a base64 PDF a `file` part, as OpenAI's format has it.
    Other sources (URLs, files uploaded to Anthropic, content blocks) are refused."""
    source = _source(block, at)
    kind, data = source.get("type"), source.get("data")
    if kind == "text" and isinstance(data, str):
        return {"type": "text", "text": data}
    if kind == "base64" and isinstance(data, str) and data:
        title = block.get("title")
        file = {
            "file_data": f"data:{source.get('media_type')};base64,{data}",
            "filename": title if isinstance(title, str) and title else "document.pdf",
        }
        return {"type": "file", "file": file}
    raise invalid(f"{at}.source", "only text and base64 document sources are supported here")


def _source(block: JSON, at: str) -> JSON:
    source = block.get("source")
    if not isinstance(source, dict):
        raise invalid(f"{at}.source", "Input should be an object")
    return source


def _block_type(block: Any, at: str, allowed: frozenset[str]) -> str:
    kind = block.get("type") if isinstance(block, dict) else None
    if not isinstance(kind, str) or kind not in allowed:
        raise invalid(
            f"{at}.type",
            f"{str(kind)[:100]!r} blocks are not supported here; expected one of "
            f"{', '.join(sorted(allowed))}",
        )
    return kind


def _text_of(block: JSON, at: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise invalid(f"{at}.text", "Input should be a valid string")
    return text
