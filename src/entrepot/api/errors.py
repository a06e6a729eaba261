"""OpenAI-format error responses for the routes Starlette serves (admin, models, unknown paths)."""

from __future__ import annotations

import logging
import traceback

import orjson
from starlette.exceptions import HTTPException
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


async def method_not_allowed_handler(request: Request, exc: Exception) -> Response:
    """Keeps the router's `Allow` header: RFC 9110 requires it on a 405."""
    headers = exc.headers if isinstance(exc, HTTPException) else None
    return error_response(
        MethodNotAllowedError(f"method {request.method} is not allowed on {request.url.path}"),
        dict(headers) if headers else None,
    )


def log_unexpected(exc: BaseException) -> None:
    """Log a failure nobody planned for by its type and stack alone: an exception's message (or a
    chained one's) can quote the request — a value, a key, a prompt — and the request's content
    never reaches the logs."""
    stack = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
    log.error("unexpected error: %s\n%s", type(exc).__name__, stack)


async def unexpected_error_handler(_request: Request, exc: Exception) -> Response:
    """Last resort: log the type and stack (never the request) and answer in the same format."""
    log_unexpected(exc)
    return error_response(GatewayError("the gateway hit an internal error"))
