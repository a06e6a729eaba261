"""OpenAI's own formats (chat completions, completions, embeddings): the internal ones, so this
surface translates nothing — a body goes to the pipeline as it came, and answers and chunks come
back as the pipeline made them."""

from __future__ import annotations

import orjson

from entrepot.api.asgi import error_body
from entrepot.api.gateway import Gateway
from entrepot.api.streaming import Encoder
from entrepot.exceptions import GatewayError
from entrepot.types import JSON, ApiKey


class _AsSent:
    """The request as the client sent it. The body is checked by the endpoint's validator in
    the pipeline; until then it is whatever JSON arrived."""

    __slots__ = ("body",)
    native = None

    def __init__(self, body: object) -> None:
        self.body = body

    async def answer(self, result: JSON) -> bytes:
        return orjson.dumps(result)

    async def replay(self, cached: bytes) -> bytes:
        return cached

    def events(self) -> Encoder | None:
        return None  # the pipeline's default: OpenAI's stream format


class OpenAISurface:
    async def translate(self, gateway: Gateway, key: ApiKey | None, parsed: object) -> _AsSent:
        return _AsSent(parsed)

    def error(self, exc: GatewayError) -> tuple[int, bytes]:
        return exc.status_code, orjson.dumps(error_body(exc))


OPENAI = OpenAISurface()
