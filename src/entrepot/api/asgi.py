"""Plain ASGI for the inference endpoints: headers, bodies and responses without a framework.

The inference endpoints are the gateway's hot path. Going through Starlette's middleware, router,
Request and Response for them cost more per request than everything the gateway adds on top of
the upstream call, chiefly because every resumption of a request suspended on its upstream
passes back through each layer; so they are served straight from the ASGI messages, and
Starlette keeps every other route (admin, models, health, metrics, unknown paths).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.types import Message, Receive, Scope, Send

from entrepot.exceptions import (
    ClientClosedError,
    GatewayError,
    InvalidRequestError,
    MethodNotAllowedError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)

JSON_CONTENT_TYPE = (b"content-type", b"application/json")
MAX_WRITABLE_DEPTH = 254


def request_headers(scope: Scope) -> dict[str, str]:
    """Header names are lower-case in ASGI; for a repeated header the first one counts, as with
    Starlette's `Headers.get`."""
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in reversed(scope["headers"])
    }


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    """The whole JSON body, refused early when its type is wrong or its size over `limit`."""
    content_type = headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise UnsupportedMediaTypeError(
            f"Content-Type must be application/json, got {content_type[:100] or 'none'!r}"
        )
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"the request body exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientClosedError("the client closed the connection before sending its body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json(raw: bytes) -> object:
    """The parsed body, refused unless it can also be written back out for the upstream.

    orjson reads documents nested up to 1,024 levels but writes at most 254, so a body between the
    two would fail when forwarded, as an internal error. Only a body with more opening brackets
    than that (counted at C speed, in strings too) can be that deep; it alone pays a trial write.
    """
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from None
    if raw.count(b"[") + raw.count(b"{") > MAX_WRITABLE_DEPTH:
        try:
            orjson.dumps(parsed)
        except orjson.JSONEncodeError:
            raise InvalidRequestError(
                f"the request body is nested more than {MAX_WRITABLE_DEPTH} levels deep"
            ) from None
    return parsed


def method_not_allowed(scope: Scope) -> MethodNotAllowedError:
    """The inference endpoints take POST only; sent with `allow: POST` (RFC 9110)."""
    return MethodNotAllowedError(f"method {scope['method']} is not allowed on {scope['path']}")


def error_body(exc: GatewayError) -> dict[str, object]:
    """OpenAI's error object, for every failure a client can see."""
    return {
        "error": {
            "message": exc.message,
            "type": exc.error_type,
            "param": exc.param,
            "code": exc.code,
        }
    }


async def send_json(send: Send, status: int, body: bytes, headers: Mapping[str, str]) -> None:
    raw_headers = [
        JSON_CONTENT_TYPE,
        (b"content-length", str(len(body)).encode()),
        *((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: GatewayError, headers: Mapping[str, str]) -> None:
    await send_json(send, exc.status_code, orjson.dumps(error_body(exc)), headers)
