"""Tool calls read out of the text a local model generates, as `chat.completion.chunk` deltas.

A reader per choice turns the generated pieces into deltas as they arrive; a plain answer folds
the very same deltas into its message (`message_of`), so a streamed answer and a plain one always
agree. A call's first delta carries its index, id, type, name and empty arguments; later ones
carry only argument text, which is what clients concatenate.

- `TextReader`: no tools, every piece is content.
- `ForcedCallReader`: a grammar made the model write `{"name": …, "arguments": {…}}` (see
  local_grammar.py); the call is announced once its arguments begin, and they stream as written.
- `TaggedCallReader`: the model may answer in text or with Hermes-style
  `<tool_call>{"name": …, "arguments": {…}}</tool_call>` blocks. A block is sent only once it is
  closed and parses as a call of an offered function; until then it is held back, and one that
  does not parse is sent as the text it is. Text that may be the start of a block is held back
  too, as is whitespace that would only separate text from a call.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from typing import Protocol

from entrepot.types import JSON

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_NAME = re.compile(r'"name"\s*:\s*("(?:[^"\\]|\\.)*")')


class CallReader(Protocol):
    calls: int  # how many tool calls the deltas so far have opened

    def feed(self, text: str) -> list[JSON]:
        """Deltas for one more piece of generated text."""

    def close(self) -> list[JSON]:
        """Deltas for whatever was held back, once the generation has ended."""


def message_of(deltas: Iterable[JSON]) -> JSON:
    """The assistant message a stream of these deltas adds up to."""
    texts: list[str] = []
    calls: list[JSON] = []
    for delta in deltas:
        if "content" in delta:
            texts.append(delta["content"])
        for call in delta.get("tool_calls", ()):
            if "id" in call:
                function = {**call["function"]}
                calls.append({"id": call["id"], "type": "function", "function": function})
            else:
                calls[call["index"]]["function"]["arguments"] += call["function"]["arguments"]
    text = "".join(texts) or (None if calls else "")
    message: JSON = {"role": "assistant", "content": text, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return message


class TextReader:
    calls = 0

    def feed(self, text: str) -> list[JSON]:
        return [{"content": text}] if text else []

    def close(self) -> list[JSON]:
        return []


class ForcedCallReader:
    """Scans the grammar's output for the `{` that opens the arguments object (the only object
    inside the call) and the `}` that closes it, tracking strings so braces inside them count
    for nothing."""

    def __init__(self) -> None:
        self.calls = 0
        self._text = ""
        self._depth = 0
        self._in_string = self._escaped = False
        self._start: int | None = None  # where the arguments begin
        self._end: int | None = None  # where they end
        self._sent = 0

    def feed(self, text: str) -> list[JSON]:
        scanned = len(self._text)
        self._text += text
        self._scan(scanned)
        deltas: list[JSON] = []
        if self._start is not None and not self.calls:
            found = _NAME.search(self._text, 0, self._start)
            if found is None:  # not a call after all: close() sends the text as it is
                return deltas
            self.calls, self._sent = 1, self._start
            deltas.append(_opening(0, json.loads(found.group(1))))
        end = len(self._text) if self._end is None else self._end
        if self.calls and end > self._sent:
            deltas.append(_arguments(0, self._text[self._sent : end]))
            self._sent = end
        return deltas

    def close(self) -> list[JSON]:
        return [] if self.calls or not self._text else [{"content": self._text}]

    def _scan(self, start: int) -> None:
        for at in range(start, len(self._text)):
            char = self._text[at]
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
                if self._depth == 2 and self._start is None:
                    self._start = at
            elif char in "}]":
                if self._depth == 2 and self._end is None and self._start is not None:
                    self._end = at + 1
                self._depth -= 1


class TaggedCallReader:
    def __init__(self, names: frozenset[str], parallel: bool) -> None:
        self.calls = 0
        self._names = names
        self._parallel = parallel
        self._pending = ""  # text not sent yet: held back outside a block, or a block's body
        self._inside = False  # whether `_pending` is the body of an open block
        self._gap = ""  # whitespace before the open block: sent only if the block is no call
        self._trim = False  # whitespace right after a call is not sent

    def feed(self, text: str) -> list[JSON]:
        deltas: list[JSON] = []
        self._pending += text
        while True:
            if self._inside:
                end = self._pending.find(CLOSE)
                if end < 0:
                    return deltas
                self._end_block(deltas, self._pending[:end], CLOSE)
                self._pending = self._pending[end + len(CLOSE) :]
                continue
            start = self._pending.find(OPEN)
            if start < 0:
                kept = len(self._pending) - _open_prefix(self._pending)
                sent = self._pending[:kept].rstrip()
                self._text(deltas, sent)
                self._pending = self._pending[len(sent) :]
                return deltas
            before = self._pending[:start]
            sent = before.rstrip()
            self._text(deltas, sent)
            self._gap, self._inside = before[len(sent) :], True
            self._pending = self._pending[start + len(OPEN) :]

    def close(self) -> list[JSON]:
        """An unclosed last block still counts if its call is complete: models often end their
        answer where the closing tag would be."""
        deltas: list[JSON] = []
        if self._inside:
            self._end_block(deltas, self._pending, "")
        else:
            self._text(deltas, self._pending)
        self._pending, self._inside = "", False
        return deltas

    def _end_block(self, deltas: list[JSON], body: str, closing: str) -> None:
        self._inside = False
        call = _parse_call(body, self._names)
        if call is None:
            self._text(deltas, self._gap + OPEN + body + closing)
        elif self._parallel or not self.calls:
            deltas += [_opening(self.calls, call[0]), _arguments(self.calls, call[1])]
            self.calls += 1
            self._trim = True
        self._gap = ""

    def _text(self, deltas: list[JSON], text: str) -> None:
        if self._trim:
            text = text.lstrip()
            self._trim = not text
        if text:
            deltas.append({"content": text})


def _parse_call(body: str, names: frozenset[str]) -> tuple[str, str] | None:
    """(name, arguments as JSON text) of a block that holds a call of an offered function."""
    try:
        call = json.loads(body)
    except ValueError:
        return None
    if not isinstance(call, dict) or call.get("name") not in names:
        return None
    arguments = call.get("arguments", {})
    if not isinstance(arguments, dict):
        return None
    return call["name"], json.dumps(arguments, ensure_ascii=False)


def _open_prefix(text: str) -> int:
    """How many of the last characters of `text` could be the start of an opening tag."""
    for size in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if text.endswith(OPEN[:size]):
            return size
    return 0


def _opening(index: int, name: str) -> JSON:
    call = {
        "index": index,
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }
    return {"tool_calls": [call]}


def _arguments(index: int, text: str) -> JSON:
    return {"tool_calls": [{"index": index, "function": {"arguments": text}}]}
