"""The Responses API's stream: internal chunks in, OpenAI's typed server-sent events out.

Every event carries a `sequence_number`, from 0 and one more each time, across the whole
stream. Reasoning and text each open an output item (with one content part at a time); each
tool call index opens a `function_call` item of its own, with its own output index, item id and
call id, so parallel calls whose argument deltas interleave stay apart. Calls stay open until
the stream ends; a message or reasoning item is closed as soon as another item begins.

The stored copy is written before `response.completed` is sent, so a client that reads the
response back the moment its stream ends finds it. A failure after the stream began ends it
with `response.failed`, never silently.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from entrepot.api.responses.answer import (
    INCOMPLETE,
    arguments_text,
    fail,
    finish,
    function_call_item,
    message_item,
    reasoning_item,
    reasoning_part,
    refusal_part,
    text_part,
)
from entrepot.api.responses.items import new_id
from entrepot.exceptions import GatewayError
from entrepot.types import JSON

# A content part's kind: its delta and done events, and the field holding its text.
PART_EVENTS = {
    "output_text": ("response.output_text.delta", "response.output_text.done", "text"),
    "refusal": ("response.refusal.delta", "response.refusal.done", "refusal"),
    "reasoning_text": ("response.reasoning_text.delta", "response.reasoning_text.done", "text"),
}
PARTS = {"output_text": text_part, "refusal": refusal_part, "reasoning_text": reasoning_part}
Keep = Callable[[JSON], Awaitable[None]]


class _Open:
    """A message or reasoning item being written: its closed parts and the open one."""

    __slots__ = ("id", "kind", "output_index", "part_kind", "parts", "text")

    def __init__(self, kind: str, output_index: int) -> None:
        self.kind = kind
        self.id = new_id("msg" if kind == "message" else "rs")
        self.output_index = output_index
        self.parts: list[JSON] = []
        self.part_kind: str | None = None
        self.text: list[str] = []

    def item(self, status: str, parts: list[JSON]) -> JSON:
        if self.kind == "message":
            return message_item(self.id, parts, status)
        return reasoning_item(self.id, parts, status)

    def snapshot(self, status: str) -> JSON:
        """The item as far as it was written, its open part included."""
        parts = list(self.parts)
        if self.part_kind is not None:
            parts.append(PARTS[self.part_kind]("".join(self.text)))
        return self.item(status, parts)


class _Call:
    __slots__ = ("arguments", "call_id", "id", "name", "output_index")

    def __init__(self, call_id: str, name: str, output_index: int) -> None:
        self.id = new_id("fc")
        self.call_id = call_id
        self.name = name
        self.output_index = output_index
        self.arguments: list[str] = []

    def snapshot(self, status: str) -> JSON:
        return function_call_item(self.id, self.call_id, self.name, "".join(self.arguments), status)


class ResponseEvents:
    """The `Encoder` for one streamed response; `keep` stores the final Response (or not)."""

    def __init__(self, response: JSON, keep: Keep) -> None:
        self.response = response  # its skeleton, completed at the end
        self.keep = keep
        self.sequence = 0
        self.started = False
        self.next_index = 0
        self.open: _Open | None = None
        self.calls: dict[int, _Call] = {}  # by the chunks' tool call index
        self.output: dict[int, JSON] = {}  # finished items by output index
        self.finish_reason: Any = None
        self.usage: Any = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _start(self) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        return [
            self._event("response.created", response=self.response),
            self._event("response.in_progress", response=self.response),
        ]

    def chunk(self, chunk: JSON) -> bytes:
        out = self._start()
        if chunk.get("usage") is not None:
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if type(delta) is dict:
                out += self._delta(delta)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return b"".join(out)

    def _delta(self, delta: JSON) -> list[bytes]:
        out: list[bytes] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            out += self._text("reasoning", "reasoning_text", reasoning)
        for field, part_kind in (("content", "output_text"), ("refusal", "refusal")):
            if isinstance(delta.get(field), str) and delta[field]:
                out += self._text("message", part_kind, delta[field])
        calls = delta.get("tool_calls")
        if type(calls) is list:
            for call in calls:
                out += self._call(call)
        return out

    def _text(self, item_kind: str, part_kind: str, delta: str) -> list[bytes]:
        out: list[bytes] = []
        current = self.open
        if current is None or current.kind != item_kind:
            out += self._close_open("completed")
            current = self.open = _Open(item_kind, self._index())
            item = current.item("in_progress", [])
            out.append(
                self._event(
                    "response.output_item.added", output_index=current.output_index, item=item
                )
            )
        where = {"item_id": current.id, "output_index": current.output_index}
        if current.part_kind != part_kind:
            out += self._close_part(current)
            current.part_kind, current.text = part_kind, []
            part = PARTS[part_kind]("")
            out.append(
                self._event(
                    "response.content_part.added",
                    **where,
                    content_index=len(current.parts),
                    part=part,
                )
            )
        current.text.append(delta)
        extra: JSON = {"logprobs": []} if part_kind == "output_text" else {}
        delta_event = PART_EVENTS[part_kind][0]
        out.append(
            self._event(
                delta_event, **where, content_index=len(current.parts), delta=delta, **extra
            )
        )
        return out

    def _close_part(self, current: _Open) -> list[bytes]:
        if current.part_kind is None:
            return []
        _, done_event, field = PART_EVENTS[current.part_kind]
        text = "".join(current.text)
        part = PARTS[current.part_kind](text)
        where = {
            "item_id": current.id,
            "output_index": current.output_index,
            "content_index": len(current.parts),
        }
        extra: JSON = {"logprobs": []} if current.part_kind == "output_text" else {}
        out = [
            self._event(done_event, **where, **{field: text}, **extra),
            self._event("response.content_part.done", **where, part=part),
        ]
        current.parts.append(part)
        current.part_kind, current.text = None, []
        return out

    def _close_open(self, status: str) -> list[bytes]:
        current = self.open
        if current is None:
            return []
        out = self._close_part(current)
        item = self.output[current.output_index] = current.item(status, current.parts)
        out.append(
            self._event("response.output_item.done", output_index=current.output_index, item=item)
        )
        self.open = None
        return out

    def _call(self, delta: Any) -> list[bytes]:
        if not isinstance(delta, dict):
            return []
        out: list[bytes] = []
        function = delta.get("function")
        if type(function) is not dict:
            function = {}
        index, name = delta.get("index"), function.get("name")
        index = index if type(index) is int else 0
        name = name if isinstance(name, str) else ""
        call = self.calls.get(index)
        if call is None:
            out += self._close_open("completed")
            call_id = delta.get("id")
            call_id = call_id if isinstance(call_id, str) and call_id else new_id("call")
            call = _Call(call_id, name, self._index())
            self.calls[index] = call
            item = call.snapshot("in_progress")
            out.append(
                self._event("response.output_item.added", output_index=call.output_index, item=item)
            )
        elif name and not call.name:
            call.name = name
        arguments = arguments_text(function.get("arguments"))
        if arguments:
            call.arguments.append(arguments)
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=call.id,
                    output_index=call.output_index,
                    delta=arguments,
                )
            )
        return out

    def _index(self) -> int:
        index = self.next_index
        self.next_index += 1
        return index

    async def done(self) -> bytes:
        mark, started = self.sequence, self.started
        out = self._start()
        status = "incomplete" if str(self.finish_reason) in INCOMPLETE else "completed"
        out += self._close_open(status)
        for call in sorted(self.calls.values(), key=lambda c: c.output_index):
            item = self.output[call.output_index] = call.snapshot(status)
            where = {"item_id": call.id, "output_index": call.output_index}
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    **where,
                    name=call.name,
                    arguments=item["arguments"],
                )
            )
            out.append(
                self._event("response.output_item.done", output_index=call.output_index, item=item)
            )
        output = [self.output[i] for i in sorted(self.output)]
        response = finish(self.response, output, self.finish_reason, self.usage)
        try:
            await self.keep(response)
        except BaseException:
            # None of these events was sent: the failure event follows what the client has.
            self.sequence, self.started = mark, started
            raise
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        out.append(self._event(kind, response=response))
        return b"".join(out)

    def error(self, exc: GatewayError) -> bytes:
        out = self._start()
        partial = dict(self.output)
        if self.open is not None:
            partial[self.open.output_index] = self.open.snapshot("incomplete")
        for call in self.calls.values():
            partial.setdefault(call.output_index, call.snapshot("incomplete"))
        output = [partial[i] for i in sorted(partial)]
        out.append(self._event("response.failed", response=fail(self.response, output, exc)))
        return b"".join(out)
