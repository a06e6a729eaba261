"""In-process callers of the pipeline (`entrepot bench`, `audit`, `fingerprint`, shadow copies):
the same steps an HTTP request takes — policy, limits, cache, routing, ledger — driven without
HTTP, so a command obeys every rule a client of the server does."""

from __future__ import annotations

import asyncio

import orjson

from entrepot.api.errors import log_unexpected
from entrepot.api.gateway import Gateway
from entrepot.api.pipeline import Endpoint, Exchange
from entrepot.exceptions import ClientClosedError, GatewayError, InvalidRequestError
from entrepot.types import JSON, ApiKey


async def call(
    gateway: Gateway,
    endpoint: Endpoint,
    body: JSON,
    *,
    key: ApiKey | None,
    principal: str,
    record_as: str | None,
    cache_header: str | None = None,
    fall_back_on_refusal: bool = True,
) -> JSON:
    """Answer one request in-process, exactly as the server would answer it over HTTP (without
    streaming): the same policy, limits, cache and ledger, with `key` as the caller — or, with
    no key, the caller named `principal` in the ledger, treated as an anonymous client. A
    refusal or failure is raised as the `GatewayError` a client would have received.
    `cache_header` is what an HTTP client's `x-entrepot-cache` would say;
    `fall_back_on_refusal=False` answers with the model's refusal even on a route that would
    send it elsewhere (an audit measures the model's refusals, which a fallback would hide)."""
    exchange = in_process_exchange(
        gateway,
        endpoint,
        key=key,
        principal=principal,
        record_as=record_as,
        fall_back_on_refusal=fall_back_on_refusal,
    )
    return await answer_in_process(exchange, body, cache_header=cache_header)


def in_process_exchange(
    gateway: Gateway,
    endpoint: Endpoint,
    *,
    key: ApiKey | None,
    principal: str,
    record_as: str | None,
    fall_back_on_refusal: bool = True,
) -> Exchange:
    """The exchange `call` answers, for a caller that also reads its usage record once
    answered (which deployment answered: `entrepot fingerprint`)."""
    exchange = Exchange(gateway, endpoint, record_as)
    exchange.fall_back_on_refusal = fall_back_on_refusal
    exchange.identify(key)
    if key is None:
        exchange.record.key_name = principal
    return exchange


async def answer_in_process(
    exchange: Exchange,
    body: JSON,
    *,
    class_header: str | None = None,
    cache_header: str | None = None,
    task_header: str | None = None,
) -> JSON:
    """Take an in-process exchange whose caller is settled from `prepare` to its record (see
    `call`; a shadow copy sets its caller apart). The headers are what an HTTP client's would
    say."""
    try:
        if body.get("stream"):
            raise InvalidRequestError("in-process calls do not stream", param="stream")
        size = len(orjson.dumps(body))
        hit = await exchange.prepare(
            body, size, class_header, cache_header, task_header=task_header
        )
        if hit is not None:
            cached: JSON = orjson.loads(hit)
            return cached
        result = await exchange.answer()
        exchange.remember(orjson.dumps(result))
        return result
    except GatewayError as exc:
        exchange.failed(exc)
        raise
    except asyncio.CancelledError:  # an interrupted run, a stopping gateway: cut off
        exchange.failed(ClientClosedError("the call was cancelled before its answer"))
        raise
    except Exception as exc:
        log_unexpected(exc)
        internal = GatewayError("the gateway hit an internal error")
        exchange.failed(internal)
        raise internal from None
    finally:
        await exchange.finish()
