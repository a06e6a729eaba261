"""OpenAI's HTTP format in and out of the pipeline: the body is OpenAI's, a complete answer is
sent as JSON, a streamed one as server-sent events, and every failure as OpenAI's error object.
Served as plain ASGI (see `api/asgi.py` for why)."""

from __future__ import annotations

import orjson
from starlette.types import Receive, Scope, Send

from entrepot.api.asgi import parse_json, read_body, request_headers, send_error, send_json
from entrepot.api.errors import log_unexpected
from entrepot.api.gateway import Gateway
from entrepot.api.pipeline import CLIENT_HEADER, Endpoint, Exchange, recorded_endpoint
from entrepot.api.sse import SSEResponse
from entrepot.exceptions import GatewayError
from entrepot.policy.egress import CLASS_HEADER
from entrepot.routing import cache


async def serve(
    gateway: Gateway, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send
) -> None:
    request = request_headers(scope)
    exchange = Exchange(gateway, endpoint, recorded_endpoint(request.get(CLIENT_HEADER), endpoint))
    handed_to_stream = False
    try:
        exchange.identify(await gateway.keys.authenticate(request))
        raw = await read_body(receive, request, gateway.config.server.max_body_bytes)
        hit = await exchange.prepare(
            parse_json(raw), len(raw), request.get(CLASS_HEADER), request.get(cache.HEADER)
        )
        if hit is not None:
            await send_json(send, 200, hit, exchange.headers)
            return
        if exchange.record.stream:
            events = await exchange.stream()
            handed_to_stream = True
            await SSEResponse(await anext(events), events, exchange.headers)(scope, receive, send)
            return
        payload = orjson.dumps(await exchange.answer())
        exchange.remember(payload)
        await send_json(send, 200, payload, exchange.headers)
    except GatewayError as exc:
        exchange.failed(exc)
        await send_error(send, exc, {**exchange.headers, **getattr(exc, "headers", {})})
    except Exception as exc:
        if handed_to_stream:
            raise
        log_unexpected(exc)
        internal = GatewayError("the gateway hit an internal error")
        exchange.failed(internal)
        await send_error(send, internal, exchange.headers)
    finally:
        if not handed_to_stream:
            await exchange.finish()
