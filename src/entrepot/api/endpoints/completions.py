"""`POST /v1/completions`: OpenAI's legacy text completions, complete or streamed."""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.types import Receive, Scope, Send

from entrepot.api.endpoints.http import serve
from entrepot.api.endpoints.openai_format import OPENAI
from entrepot.api.gateway import Gateway
from entrepot.api.pipeline import Endpoint
from entrepot.api.validation import validate_completion

COMPLETIONS = Endpoint(
    "completions", validate_completion, "complete", "stream_complete", "text_completion"
)


def handle(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
    return serve(gateway, COMPLETIONS, OPENAI, scope, receive, send)
