"""The text of an answer, kept for the gateway's observer (see `AnswerObserver`): from a complete
answer, or collected from a stream as it is written — only for requests the observer wants."""

from __future__ import annotations

from collections.abc import Callable

from entrepot.api.streaming import Encoder
from entrepot.exceptions import GatewayError
from entrepot.types import JSON


def answer_text(result: JSON) -> str:
    """The text of a complete answer's first choice ("" when it has none)."""
    choices = result.get("choices") or [{}]
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


class Collecting:
    """An encoder that writes a stream as `encoder` does and, when it ends complete, hands the
    text of its first choice to `keep`."""

    __slots__ = ("encoder", "keep", "parts")

    def __init__(self, encoder: Encoder, keep: Callable[[str], None]) -> None:
        self.encoder = encoder
        self.keep = keep
        self.parts: list[str] = []

    def chunk(self, chunk: JSON) -> bytes:
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                delta = choice.get("delta")
                text = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(text, str):
                    self.parts.append(text)
        return self.encoder.chunk(chunk)

    async def done(self) -> bytes:
        self.keep("".join(self.parts))
        return await self.encoder.done()

    def error(self, exc: GatewayError) -> bytes:
        return self.encoder.error(exc)
