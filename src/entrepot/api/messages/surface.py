"""The Messages API surface: a request read into the internal format (keeping the body as it
came, for a deployment that speaks Anthropic's protocol), and everything written back in
Anthropic's format."""

from __future__ import annotations

import orjson

from entrepot.api.gateway import Gateway
from entrepot.api.messages.answer import Asked, message
from entrepot.api.messages.errors import error_response
from entrepot.api.messages.events import MessagesEvents
from entrepot.api.messages.request import body_object, internal_body, stop_sequences
from entrepot.api.streaming import Encoder
from entrepot.exceptions import GatewayError
from entrepot.types import JSON, ApiKey


class MessagesRequest:
    """One Messages API request: its internal body, the body as sent, and what its answer is
    written for."""

    __slots__ = ("asked", "body", "native")

    def __init__(self, body: JSON, native: JSON, asked: Asked) -> None:
        self.body = body
        self.native: JSON | None = native
        self.asked = asked

    async def answer(self, result: JSON) -> bytes:
        return orjson.dumps(message(result, self.asked))

    async def replay(self, cached: bytes) -> bytes:
        return orjson.dumps(message(orjson.loads(cached), self.asked))

    def events(self) -> Encoder:
        return MessagesEvents(self.asked)


class MessagesSurface:
    async def translate(
        self, gateway: Gateway, key: ApiKey | None, parsed: object
    ) -> MessagesRequest:
        native = body_object(parsed)
        body = internal_body(native)
        return MessagesRequest(body, native, Asked(body["model"], stop_sequences(native)))

    def error(self, exc: GatewayError) -> tuple[int, bytes]:
        return error_response(exc)


MESSAGES_SURFACE = MessagesSurface()
