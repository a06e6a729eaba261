"""A streamed answer as Anthropic's named server-sent events.

From internal chunks the encoder builds what Anthropic sends: `message_start` and a `ping`, then
each content block — thinking, text, and one per tool call — opened with `content_block_start`,
filled with deltas and closed with `content_block_stop`, numbered across all of them, and at the
end `message_delta` (why it stopped, and the usage, which internal streams report last) and
`message_stop`. A chunk from a deployment that speaks Anthropic's protocol carries the event it
came from (`NATIVE_EVENT`): that event is relayed as it was sent, under the client's model name.

A failure after the stream began ends it with an `error` event, as Anthropic's own streams do.
"""

from __future__ import annotations

import uuid

import orjson

from entrepot.api.messages.answer import Asked, message_id, reasoning_of, stop_reason, usage
from entrepot.api.messages.errors import error_object
from entrepot.exceptions import GatewayError
from entrepot.providers.anthropic import NATIVE_EVENT
from entrepot.types import JSON

_START = {
    "thinking": {"type": "thinking", "thinking": "", "signature": ""},
    "text": {"type": "text", "text": ""},
}
_DELTA = {"thinking": "thinking_delta", "text": "text_delta"}


def event(data: JSON) -> bytes:
    name = str(data["type"]).encode()
    return b"event: " + name + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class MessagesEvents:
    """One stream's encoder (see `api/streaming.py`'s `Encoder`)."""

    __slots__ = (
        "asked",
        "blocks",
        "called",
        "finish",
        "kind",
        "matched",
        "native",
        "open",
        "started",
        "tail",
        "tools",
        "usage",
    )

    def __init__(self, asked: Asked) -> None:
        self.asked = asked
        self.native = self.started = self.called = False
        self.blocks = 0  # blocks opened so far: the next one's index
        self.open: int | None = None  # the open block's index
        self.kind: str | None = None  # and its kind: thinking, text, or tool
        self.tools: dict[int, int] = {}  # an internal tool call's index → its block's index
        self.finish: object = None
        self.matched: object = None  # the stop sequence the upstream says it stopped on
        self.usage: object = None
        self.tail = ""  # the text's end, where a stop sequence would show

    def chunk(self, chunk: JSON) -> bytes:
        native = chunk.get(NATIVE_EVENT)
        if native is not None:
            self.native = True
            return self._relay(native)
        if self.native:
            return b""  # what an Anthropic deployment sent is relayed already
        out = self._start(chunk)
        if chunk.get("usage") is not None:
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if type(delta) is not dict:
                delta = {}
            thought = reasoning_of(delta)
            if thought:
                out += self._text("thinking", thought)
            if isinstance(delta.get("content"), str) and delta["content"]:
                out += self._text("text", delta["content"])
            calls = delta.get("tool_calls")
            for position, call in enumerate(calls if type(calls) is list else ()):
                if type(call) is dict:
                    out += self._tool(position, call)
            if choice.get("finish_reason") is not None:
                self.finish = choice["finish_reason"]
                self.matched = choice.get("stop_reason")
        return b"".join(out)

    async def done(self) -> bytes:
        if self.native:
            return b""
        out = [*self._start({}), *self._close()]
        reason, sequence = stop_reason(
            self.finish, self.matched, self.tail, self.called, self.asked
        )
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        out.append(event({"type": "message_delta", "delta": delta, "usage": usage(self.usage)}))
        out.append(event({"type": "message_stop"}))
        return b"".join(out)

    def error(self, exc: GatewayError) -> bytes:
        return event({"type": "error", "error": error_object(exc)})

    def _relay(self, native: JSON) -> bytes:
        if native.get("type") == "message_start" and isinstance(native.get("message"), dict):
            native = {**native, "message": {**native["message"], "model": self.asked.model}}
        return event(native)

    def _start(self, chunk: JSON) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        message: JSON = {
            "id": message_id(chunk.get("id")),
            "type": "message",
            "role": "assistant",
            "model": self.asked.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [event({"type": "message_start", "message": message}), event({"type": "ping"})]

    def _text(self, kind: str, text: str) -> list[bytes]:
        out = [] if self.kind == kind else self._begin(kind, _START[kind])
        if kind == "text":
            longest = max((len(s) for s in self.asked.stop_sequences), default=0)
            self.tail = (self.tail + text)[-longest:] if longest else ""
        delta = {"type": _DELTA[kind], kind: text}
        out.append(self._delta(self.open, delta))
        return out

    def _tool(self, position: int, call: JSON) -> list[bytes]:
        """A tool call's first delta opens its block; later ones add to its input. An upstream
        interleaving parallel calls' arguments has them added to the right block by index,
        which is how Anthropic's clients assemble a message."""
        index, function = call.get("index"), call.get("function")
        if type(index) is not int:
            index = position
        if type(function) is not dict:
            function = {}
        out: list[bytes] = []
        if index not in self.tools:
            self.called = True
            tool_id, name = call.get("id"), function.get("name")
            block: JSON = {
                "type": "tool_use",
                "id": tool_id
                if isinstance(tool_id, str) and tool_id
                else f"toolu_{uuid.uuid4().hex}",
                "name": name if isinstance(name, str) else "",
                "input": {},
            }
            out = self._begin("tool", block)
            self.tools[index] = self.blocks - 1
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # some upstreams send the object, not its JSON text
            arguments = orjson.dumps(arguments).decode()
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            out.append(self._delta(self.tools[index], delta))
        return out

    def _begin(self, kind: str, block: JSON) -> list[bytes]:
        out = self._close()
        self.open, self.kind = self.blocks, kind
        self.blocks += 1
        out.append(
            event({"type": "content_block_start", "index": self.open, "content_block": block})
        )
        return out

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        index, self.open, self.kind = self.open, None, None
        return [event({"type": "content_block_stop", "index": index})]

    @staticmethod
    def _delta(index: int | None, delta: JSON) -> bytes:
        return event({"type": "content_block_delta", "index": index, "delta": delta})
