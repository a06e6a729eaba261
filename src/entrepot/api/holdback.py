"""A stream held back: its first pieces of output read ahead and kept before anything reaches the
client, so that a route's `on_refusal: fallback` (`api/refusals.py`) can judge whether it is a
refusal while another deployment may still answer instead. Once judged, the stream is released
as routing would have opened it — the held chunks first, chunk for chunk as they came, then the
rest of the upstream's — or closed, which stops its generation.

A piece of output is a chunk that carries text, tool calls or reasoning: one token each on
nearly every upstream, which is what `refusal_holdback_tokens` counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from entrepot.api.streaming import OpenedStream, close_stream
from entrepot.exceptions import GatewayError
from entrepot.ledger.estimate import StreamTally
from entrepot.routing.refusal import choice_refusal, host_filtered, split_reasoning
from entrepot.types import JSON


class Held:
    """A stream's first chunks, read ahead and kept, with what they say per choice."""

    __slots__ = (
        "calls",
        "chunks",
        "ended",
        "error",
        "finish",
        "opened",
        "refusal_fields",
        "tally",
        "texts",
    )

    def __init__(self, opened: OpenedStream) -> None:
        self.opened = opened
        self.tally = StreamTally()
        self.chunks: list[JSON] = []
        self.texts: dict[int, list[str]] = {}
        self.calls: set[int] = set()
        self.refusal_fields: set[int] = set()  # OpenAI's own `refusal` delta
        self.finish: dict[int, str] = {}
        self.ended = opened.first is None
        self.error: Exception | None = None
        if opened.first is not None:
            self._take(opened.first)

    async def fill(self, window: int) -> None:
        """Read until `window` pieces of output have come, or the stream ends. A failure is kept
        to be raised where the relay would have met it."""
        try:
            while not self.ended and self.tally.pieces < window:
                try:
                    chunk = await anext(self.opened.chunks)
                except StopAsyncIteration:
                    self.ended = True
                    return
                except Exception as exc:
                    self.error = exc
                    return
                self._take(chunk)
        except BaseException:  # cancelled: the upstream is ours to close
            await self.close()
            raise

    def _take(self, chunk: JSON) -> None:
        self.chunks.append(chunk)
        self.tally.add(chunk)
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if isinstance(text, str):
                self.texts.setdefault(index, []).append(text)
            if isinstance(delta, dict) and delta.get("tool_calls"):
                self.calls.add(index)
            if isinstance(delta, dict) and delta.get("refusal"):
                self.refusal_fields.add(index)
            if isinstance(choice.get("finish_reason"), str):
                self.finish[index] = choice["finish_reason"]

    def refusal(self) -> str | None:
        """Why the stream so far is a refusal — every choice refused — or None. An answer that
        has not ended is not judged empty, nor while it is still inside an open `<think>`."""
        if self.error is not None:
            failed = isinstance(self.error, GatewayError) and host_filtered(self.error.message)
            return f"host filter: {self.error}" if failed else None
        choices = set(self.texts) | self.calls | self.refusal_fields | set(self.finish)
        if not choices:
            return "empty answer" if self.ended else None
        reasons = [self._choice(index) for index in sorted(choices)]
        return None if None in reasons else reasons[0]

    def _choice(self, index: int) -> str | None:
        if index in self.refusal_fields:
            return "refusal field"
        text = "".join(self.texts.get(index, ()))
        finish = self.finish.get(index)
        if finish is None and not self.ended:
            opening = text.lstrip()
            thinking = opening.startswith("<think>") and "</think>" not in opening
            if thinking or not split_reasoning(opening, None)[0].strip():
                return None  # nothing visible yet: too early to call it empty
        return choice_refusal(text, index in self.calls, finish)

    def release(self) -> OpenedStream:
        """The stream as routing would have opened it: the held chunks first, then the rest."""
        rest = None if self.ended else self.opened.chunks
        chunks = Replay(self.chunks[1:], rest, self.error)
        return OpenedStream(self.chunks[0] if self.chunks else None, chunks, self.opened.body)

    async def close(self) -> None:
        await close_stream(self.opened.chunks)


class Replay:
    """Held chunks, then the failure that ended the read-ahead or the upstream's remaining
    chunks. Closing it closes the upstream, even before it was read."""

    __slots__ = ("error", "held", "rest")

    def __init__(
        self, held: list[JSON], rest: AsyncIterator[JSON] | None, error: Exception | None
    ) -> None:
        self.held = held
        self.rest = rest
        self.error = error
        self.held.reverse()

    def __aiter__(self) -> Replay:
        return self

    async def __anext__(self) -> JSON:
        if self.held:
            return self.held.pop()
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        if self.rest is None:
            raise StopAsyncIteration
        return await anext(self.rest)

    async def aclose(self) -> None:
        if self.rest is not None:
            await close_stream(self.rest)
