"""Anthropic's clients read a response's id from its `request-id` header, and an error body
carries it as `request_id` too. The gateway's id (`x-request-id`, its ledger row's key) is given
under those names as well, by wrapping the `send` of the exchange: an error response's start is
held until its body, which gains the field (and the start a new length)."""

from __future__ import annotations

import orjson
from starlette.types import Message, Send

GATEWAY_HEADER = b"x-request-id"
ANTHROPIC_HEADER = b"request-id"


def with_request_id(send: Send) -> Send:
    held: Message | None = None
    request_id: bytes | None = None

    async def send_with_id(message: Message) -> None:
        nonlocal held, request_id
        if message["type"] == "http.response.start":
            headers = list(message.get("headers") or ())
            request_id = next((v for k, v in headers if k == GATEWAY_HEADER), None)
            if request_id is None:
                await send(message)
                return
            message = {**message, "headers": [*headers, (ANTHROPIC_HEADER, request_id)]}
            if message["status"] >= 400:
                held = message
                return
        elif held is not None and request_id is not None:
            start, held = held, None
            body = _with_id(message.get("body", b""), request_id.decode("latin-1"))
            length = str(len(body)).encode()
            start["headers"] = [
                (k, length if k == b"content-length" else v) for k, v in start["headers"]
            ]
            await send(start)
            message = {**message, "body": body}
        await send(message)

    return send_with_id


def _with_id(body: bytes, request_id: str) -> bytes:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(parsed, dict) or parsed.get("type") != "error":
        return body
    return orjson.dumps({**parsed, "request_id": request_id})
