"""`POST /v1/chat/completions`: OpenAI's chat completions, complete or streamed."""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.types import Receive, Scope, Send

from entrepot.api.endpoints.http import serve
from entrepot.api.endpoints.openai_format import OPENAI
from entrepot.api.gateway import Gateway
from entrepot.api.pipeline import Endpoint
from entrepot.api.validation import validate_chat

CHAT = Endpoint("chat", validate_chat, "chat", "stream_chat", "chat.completion")


def handle(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
    return serve(gateway, CHAT, OPENAI, scope, receive, send)
