"""`POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's Messages API, complete
or streamed, and its token count (see `api/messages/`)."""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.types import Receive, Scope, Send

from entrepot.api.endpoints.http import serve
from entrepot.api.gateway import Gateway
from entrepot.api.messages.count import serve_count
from entrepot.api.messages.request_id import with_request_id
from entrepot.api.messages.surface import MESSAGES_SURFACE
from entrepot.api.pipeline import Endpoint
from entrepot.api.validation import validate_chat

MESSAGES = Endpoint(
    "messages",
    validate_chat,
    "chat",
    "stream_chat",
    "chat.completion",
    native_call="messages",
    native_stream_call="stream_messages",
)


def handle(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
    return serve(gateway, MESSAGES, MESSAGES_SURFACE, scope, receive, with_request_id(send))


def count_tokens(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
    return serve_count(gateway, scope, receive, send)
