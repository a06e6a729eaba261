"""Anthropic's error format, `{"type": "error", "error": {"type", "message"}}`, with the status
codes and types Anthropic uses — which are what its SDKs turn into exception classes (a 529 is
`OverloadedError`, a 402 `PaymentRequiredError`, ...), so a client handles a refusal by the
gateway exactly as it would the same refusal by Anthropic."""

from __future__ import annotations

import orjson

from entrepot.exceptions import GatewayError, OverloadedError
from entrepot.types import JSON

# Anthropic answers "overloaded" with 529, never 503; its clients back off on that one.
OVERLOADED_STATUS = 529
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    OVERLOADED_STATUS: "overloaded_error",
}


def status_of(exc: GatewayError) -> int:
    """The HTTP status Anthropic would answer with: the gateway's own, but 529 for a full
    local queue."""
    return OVERLOADED_STATUS if isinstance(exc, OverloadedError) else exc.status_code


def error_object(exc: GatewayError) -> JSON:
    """The `error` member: its type by status (Anthropic types other 4xx as invalid requests
    and other 5xx as API errors), and the gateway's message."""
    status = status_of(exc)
    kind = _TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    return {"type": kind, "message": exc.message}


def error_response(exc: GatewayError) -> tuple[int, bytes]:
    return status_of(exc), orjson.dumps({"type": "error", "error": error_object(exc)})
