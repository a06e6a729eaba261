"""OpenAI-format error responses for the routes Starlette serves (admin, models, unknown paths)."""

from __future__ import annotations

import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response

from entrepot.api.asgi import error_body
from entrepot.exceptions import GatewayError, MethodNotAllowedError, NotFoundError

log = logging.getLogger("entrepot.api")


def error_response(exc: GatewayError, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(error_body(exc)),
        status_code=exc.status_code,
        media_type="application/json",
        headers=headers,
    )


async def gateway_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc, getattr(exc, "headers", None))


async def not_found_handler(request: Request, _exc: Exception) -> Response:
    return error_response(NotFoundError(f"no route {request.method} {request.url.path}"))


async def method_not_allowed_handler(request: Request, _exc: Exception) -> Response:
    return error_response(
        MethodNotAllowedError(f"method {request.method} is not allowed on {request.url.path}")
    )


async def unexpected_error_handler(_request: Request, exc: Exception) -> Response:
    """Last resort: log the type (never the request) and answer in the same format."""
    log.error("unexpected error: %s", type(exc).__name__, exc_info=exc)
    return error_response(GatewayError("the gateway hit an internal error"))
