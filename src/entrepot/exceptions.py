"""Every error Entrepôt raises on purpose, in one hierarchy:

    EntrepotError
    ├── ConfigError                      the configuration is missing, malformed or inconsistent
    ├── StoreUnavailableError            the database cannot take writes now (ledger: spool)
    └── GatewayError (500)               a request failed; answered in OpenAI's error format
        ├── InvalidRequestError (400)
        │   ├── MethodNotAllowedError (405)
        │   ├── PayloadTooLargeError (413)
        │   ├── UnsupportedMediaTypeError (415)
        │   └── ClientClosedError (499)
        ├── AuthenticationError (401)
        ├── BudgetExceededError (402)    limits: a key's or team's budget is spent
        ├── CurrencyRateMissingError     limits: no configured rate into a budget's currency
        ├── PermissionDeniedError (403)
        │   └── EgressDeniedError (403)  policy: no deployment may receive this data
        ├── NotFoundError (404)
        │   └── ModelNotFoundError (404)
        ├── RateLimitedError (429)       limits: requests or tokens per minute
        ├── OverloadedError (503)
        ├── LimitsUnavailableError (503) limits: the shared counters (Redis) cannot be reached
        ├── UpstreamError (502)
        │   ├── UpstreamTimeoutError (504)
        │   └── UpstreamIncapableError (502) the upstream cannot do what was asked (`n`)
        │       └── WeightsMismatchError (503) a local model's file is not the one registered
        ├── UpstreamRejectedError (4xx)  the upstream's own refusal, its status passed on
        └── ModelRefusedError (502)      routing: the model refused; the next deployment is tried

`GatewayError` subclasses carry what the API layer needs to answer in OpenAI's error format
(status, type, code, param), so any layer — policy, routing, limits, a provider — can fail a
request precisely without knowing about HTTP responses. They live here, at the bottom of the
layers, so that catching one never means importing the layer that raises it.
"""

from __future__ import annotations

from typing import Literal


class EntrepotError(Exception):
    """Base of every error raised by Entrepôt."""


class ConfigError(EntrepotError):
    """The configuration file is missing, malformed or inconsistent."""


class StoreUnavailableError(EntrepotError):
    """The database cannot take writes now (unreachable, locked, read-only, full), as opposed to
    rejecting a record: the ledger spools and retries rather than setting any record aside."""


class GatewayError(EntrepotError):
    """A request failed; rendered to the client as an OpenAI-format error body."""

    status_code = 500
    error_type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequestError(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationError(GatewayError):
    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status_code = 403
    error_type = "invalid_request_error"
    code = "permission_denied"


class EgressDeniedError(PermissionDeniedError):
    """The data's class (or its team) forbids every deployment the request could go to: a
    refusal by policy, which names the rules, rather than a failure of any model."""

    code = "egress_denied"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        data_class: str | None = None,
        findings: dict[str, int] | None = None,
        excluded: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """`data_class`, `findings` (kinds and counts, never values) and `excluded` (each
        deployment refused, with the rule's sentence) go into the refused request's usage
        record: a refusal by policy is recorded with the reason it happened."""
        super().__init__(message, param=param)
        self.data_class = data_class
        self.findings = findings
        self.excluded = excluded


class BudgetExceededError(GatewayError):
    status_code = 402
    error_type = "insufficient_quota"
    code = "budget_exceeded"

    def __init__(self, message: str, *, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.headers = headers


class CurrencyRateMissingError(GatewayError):
    """A cost is in a currency the configured rate table cannot convert into a budget's currency.
    The request is refused rather than run unpriced: a budget that silently skipped such costs
    could be overspent without limit. A server-side gap (500), which the configuration fixes."""

    code = "currency_rate_missing"


class RateLimitedError(GatewayError):
    """`error_type` names the limit ("requests" or "tokens"), as OpenAI's 429s do."""

    status_code = 429
    code = "rate_limit_exceeded"

    def __init__(
        self, message: str, *, kind: Literal["requests", "tokens"], headers: dict[str, str]
    ) -> None:
        super().__init__(message)
        self.error_type = kind
        self.headers = headers


class NotFoundError(GatewayError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowedError(InvalidRequestError):
    status_code = 405
    code = "method_not_allowed"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class PayloadTooLargeError(InvalidRequestError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(InvalidRequestError):
    status_code = 415
    code = "unsupported_media_type"


class ClientClosedError(InvalidRequestError):
    """The client went away mid-request; nobody reads the answer, but the ledger records it."""

    status_code = 499
    code = "client_closed"


class OverloadedError(GatewayError):
    """A local deployment's wait queue is full; the client should retry later."""

    status_code = 503
    error_type = "server_error"
    code = "overloaded"


class LimitsUnavailableError(GatewayError):
    """The shared counters that a key's limits and budget are kept in (Redis) cannot be reached,
    and the gateway is configured to fail closed (`shared.on_unavailable: closed`): a request
    that could overspend is refused rather than served unchecked. Keys without limits are still
    served. The client may retry shortly."""

    status_code = 503
    error_type = "server_error"
    code = "limits_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = {"retry-after": "1"}


class UpstreamError(GatewayError):
    """The upstream could not be reached or answered with a server error.

    What the failed call may still cost rides on it to the request's record: `delivered` when
    the upstream received the whole request and may have generated an answer that never arrived
    whole (the deadline fired, or the answer broke off once it had begun); `spent`, the usage
    report of calls that answered before one failed (an upstream that ignores `n` is asked
    again for the missing choices)."""

    status_code = 502
    error_type = "upstream_error"
    code = "bad_gateway"
    spent: object = None

    def __init__(self, message: str, *, delivered: bool = False, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.delivered = delivered


class UpstreamTimeoutError(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


class UpstreamIncapableError(UpstreamError):
    """The upstream cannot do what this request asks (it answers fewer choices than `n`).
    Another deployment may, so routing tries the next; but it says nothing about the
    deployment's health, so it never counts towards opening its circuit."""

    code = "upstream_incapable"


class WeightsMismatchError(UpstreamIncapableError):
    """A local model's weights (or LoRA adapter) file does not have the SHA-256 its
    configuration declares: the model is not loaded and its requests are refused, and routing
    tries the alias's other deployments, whose weights may be intact. It never opens the
    deployment's circuit, whose "unavailable, retry shortly" would hide the reason from every
    later client: retrying cannot help, restoring the file can."""

    status_code = 503
    code = "weights_mismatch"


class UpstreamRejectedError(GatewayError):
    """The upstream refused the request itself (a 4xx); its status is passed on, and so is its
    `Retry-After` (in seconds), which tells the client — and the router — when to ask again."""

    error_type = "invalid_request_error"
    code = "upstream_rejected"

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        param: str | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message, param=param)
        self.status_code = status_code
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"retry-after": self.retry_after} if self.retry_after is not None else {}


class ModelRefusedError(GatewayError):
    """A deployment's model refused (`reason` says how), on a route with `on_refusal: fallback`:
    the router records the attempt as `refused` and tries the next deployment, without counting
    it against the deployment's circuit — the deployment works, its model declined."""

    status_code = 502
    code = "refused_by_model"

    def __init__(self, deployment: str, reason: str) -> None:
        super().__init__(f"the model of {deployment} refused to answer ({reason})")
        self.reason = reason
