"""Any surface's HTTP exchange, in and out of the pipeline: authenticate, read and translate the
body, then answer from the cache, as one JSON body, or as server-sent events — every failure in
the surface's own error format. Served as plain ASGI (see `api/asgi.py` for why)."""

from __future__ import annotations

from collections.abc import Mapping

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
from entrepot.api.pipeline import CLIENT_HEADER, Endpoint, Exchange, recorded_endpoint
from entrepot.api.sse import SSEResponse
from entrepot.api.surface import Surface
from entrepot.exceptions import GatewayError
from entrepot.policy.egress import CLASS_HEADER
from entrepot.routing import cache
from entrepot.routing.good_enough import TASK_HEADER


async def serve(
    gateway: Gateway,
    endpoint: Endpoint,
    surface: Surface,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    if scope["method"] != "POST":
        refusal = method_not_allowed(scope)
        await _send_error(send, surface, refusal, {"allow": "POST"})
        return
    request = request_headers(scope)
    exchange = Exchange(gateway, endpoint, recorded_endpoint(request.get(CLIENT_HEADER), endpoint))
    handed_to_stream = False
    try:
        key = await gateway.keys.authenticate(request)
        exchange.identify(key)
        raw = await read_body(receive, request, gateway.config.server.max_body_bytes)
        translated = await surface.translate(gateway, key, parse_json(raw))
        hit = await exchange.prepare(
            translated.body,
            len(raw),
            request.get(CLASS_HEADER),
            request.get(cache.HEADER),
            translated.native,
            task_header=request.get(TASK_HEADER),
        )
        if hit is not None:
            await send_json(send, 200, await translated.replay(hit), exchange.headers)
            return
        if exchange.record.stream:
            events = await exchange.stream(translated.events())
            handed_to_stream = True
            await SSEResponse(await anext(events), events, exchange.headers)(scope, receive, send)
            return
        result = await exchange.answer()
        exchange.remember(orjson.dumps(result))
        await send_json(send, 200, await translated.answer(result), exchange.headers)
    except GatewayError as exc:
        exchange.failed(exc)
        await _send_error(send, surface, exc, {**exchange.headers, **getattr(exc, "headers", {})})
    except Exception as exc:
        if handed_to_stream:
            raise
        log_unexpected(exc)
        internal = GatewayError("the gateway hit an internal error")
        exchange.failed(internal)
        await _send_error(send, surface, internal, exchange.headers)
    finally:
        if not handed_to_stream:
            await exchange.finish()


async def _send_error(
    send: Send, surface: Surface, exc: GatewayError, headers: Mapping[str, str]
) -> None:
    status, body = surface.error(exc)
    await send_json(send, status, body, headers)
