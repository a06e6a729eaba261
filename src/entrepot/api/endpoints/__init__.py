"""The inference surfaces the gateway serves, by path: each a thin handler that brings requests
of its format into the one shared pipeline (`api/pipeline.py`). Another API surface is another
module here and one more entry below. A handler returns its surface's coroutine rather than
awaiting it: every await layer is passed through again each time the request resumes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import Receive, Scope, Send

from entrepot.api.endpoints import chat, completions, embeddings, messages, responses
from entrepot.api.gateway import Gateway

Handler = Callable[[Gateway, Scope, Receive, Send], Awaitable[None]]

ROUTES: dict[str, Handler] = {
    "/v1/chat/completions": chat.handle,
    "/v1/completions": completions.handle,
    "/v1/embeddings": embeddings.handle,
    "/v1/responses": responses.handle,
    "/v1/messages": messages.handle,
    "/v1/messages/count_tokens": messages.count_tokens,
}
