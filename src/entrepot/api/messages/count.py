"""`POST /v1/messages/count_tokens`: a Messages prompt's size, counted by the gateway itself.

The prompt is never sent anywhere — counting is not worth a data leak, nor an upstream call —
so nothing is billed or recorded. The caller is authenticated and the model checked against its
key's allow-list, as for any request. A model served by a local llama.cpp deployment counts with
that model's tokenizer: every text of the prompt, plus the template's few tokens per message
(`ledger/estimate.py`'s allowance); any other model gets the gateway's documented estimate
(`ledger/estimate.py`), since it ships no remote model's tokenizer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import orjson
from starlette.types import Receive, Scope, Send

from entrepot.api.asgi import (
    method_not_allowed,
    parse_json,
    read_body,
    request_headers,
    send_json,
)
from entrepot.api.errors import log_unexpected
from entrepot.api.gateway import Gateway
from entrepot.api.messages.errors import error_response
from entrepot.api.messages.request import body_object, internal_body
from entrepot.exceptions import GatewayError
from entrepot.ledger.estimate import TOKENS_PER_MESSAGE, prompt_tokens
from entrepot.policy.access import authorize_model, unknown_model
from entrepot.types import JSON


async def serve_count(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["method"] != "POST":
        refusal = method_not_allowed(scope)
        await send_json(send, *error_response(refusal), {"allow": "POST"})
        return
    try:
        headers = request_headers(scope)
        key = await gateway.keys.authenticate(headers)
        raw = await read_body(receive, headers, gateway.config.server.max_body_bytes)
        body = internal_body(body_object(parse_json(raw)), counting=True)
        alias = gateway.routing.alias_for(body["model"])
        authorize_model(key, alias)
        if alias not in gateway.routing.aliases:
            raise unknown_model(key, alias, gateway.routing.aliases)
        deployments = gateway.routing.resolve(alias)
        # A provider with a tokenizer of its own (a local model) counts; checked by the method
        # rather than the class, so that llama-cpp-python is imported only where configured.
        count = next(
            (c for d in deployments if (c := getattr(d.provider, "count_tokens", None))), None
        )
        if count is None:
            tokens = prompt_tokens(body)
        else:
            tokens = await asyncio.to_thread(_count_locally, count, body)
        await send_json(send, 200, orjson.dumps({"input_tokens": tokens}), {})
    except GatewayError as exc:
        await send_json(send, *error_response(exc), getattr(exc, "headers", {}))
    except Exception as exc:
        log_unexpected(exc)
        await send_json(
            send, *error_response(GatewayError("the gateway hit an internal error")), {}
        )


def _count_locally(count: Callable[[str], int], body: JSON) -> int:
    """In a worker thread: a long prompt takes the tokenizer a while."""
    texts = sum(count(text) for text in _texts(body))
    return texts + TOKENS_PER_MESSAGE * len(body["messages"])


def _texts(body: JSON) -> Iterator[str]:
    """Every text of an internal body's prompt, and its tool definitions as JSON."""
    for message in body["messages"]:
        content = message.get("content")
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            yield from (p["text"] for p in content if p.get("type") == "text")
        if message.get("reasoning_content"):
            yield message["reasoning_content"]
        for call in message.get("tool_calls") or ():
            yield call["function"]["name"]
            yield call["function"]["arguments"]
    if body.get("tools"):
        yield orjson.dumps(body["tools"]).decode()
