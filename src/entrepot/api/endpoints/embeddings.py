"""`POST /v1/embeddings`: OpenAI's embeddings; never streamed, so no completion object."""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.types import Receive, Scope, Send

from entrepot.api.endpoints.http import serve
from entrepot.api.endpoints.openai_format import OPENAI
from entrepot.api.gateway import Gateway
from entrepot.api.pipeline import Endpoint
from entrepot.api.validation import validate_embedding

EMBEDDINGS = Endpoint("embeddings", validate_embedding, "embed", None, None)


def handle(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
    return serve(gateway, EMBEDDINGS, OPENAI, scope, receive, send)
