"""The inference endpoints — chat, completions, embeddings — and the one path they share, in the
order of the package layout: authenticate and validate (api) → data class and eligible
deployments (policy) → cache, limits and budget → pick and call a deployment with fallbacks
(routing, providers) → bill (ledger). Every request leaves exactly one usage record, whichever
step it stopped at. Served as plain ASGI (see `api/asgi.py` for why).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from entrepot.api.asgi import parse_json, read_body, request_headers, send_error, send_json
from entrepot.api.errors import log_unexpected
from entrepot.api.gateway import Gateway
from entrepot.api.sse import SSEResponse
from entrepot.api.streaming import OpenedStream, open_stream, stream_events
from entrepot.api.validation import validate_chat, validate_completion, validate_embedding
from entrepot.exceptions import GatewayError
from entrepot.ledger.billing import estimated_tokens, settle, worst_case_cost_nanos
from entrepot.limits.limiter import Admission
from entrepot.policy.access import authorize_model
from entrepot.policy.eligibility import eligible_deployments
from entrepot.routing import cache
from entrepot.routing.table import Deployment
from entrepot.types import JSON, ApiKey, Attempt, UsageRecord

DATA_CLASS_HEADER = "x-entrepot-data-class"
DEPLOYMENT_HEADER = "x-entrepot-deployment"


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    validate: Callable[[Any], JSON]
    call: str
    stream_call: str | None
    completion_object: str | None


CHAT = Endpoint("chat", validate_chat, "chat", "stream_chat", "chat.completion")
COMPLETIONS = Endpoint(
    "completions", validate_completion, "complete", "stream_complete", "text_completion"
)
EMBEDDINGS = Endpoint("embeddings", validate_embedding, "embed", None, None)
ENDPOINTS = {
    "/v1/chat/completions": CHAT,
    "/v1/completions": COMPLETIONS,
    "/v1/embeddings": EMBEDDINGS,
}


async def serve(
    gateway: Gateway, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send
) -> None:
    record = UsageRecord(request_id=new_request_id(), endpoint=endpoint.name)
    started = time.perf_counter()
    request = request_headers(scope)
    headers = {"x-request-id": record.request_id}
    attempts: list[Attempt] = []
    admission: Admission | None = None
    handed_to_stream = False

    async def finish() -> None:
        """Write the request's record and release what it held; runs exactly once."""
        record.attempts = [a.as_json() for a in attempts] or None
        if admission is not None:
            tokens = record.prompt_tokens + record.completion_tokens
            await gateway.limiter.settle(
                admission, actual_tokens=tokens, actual_cost_nanos=record.cost_nanos
            )
        record.latency_ms = int((time.perf_counter() - started) * 1000)
        gateway.ledger.record(record)

    try:
        key = await gateway.keys.authenticate(request)
        if key is not None:
            record.key_id, record.key_name, record.team = key.id, key.name, key.team
        raw = await read_body(receive, request, gateway.config.server.max_body_bytes)
        body = endpoint.validate(parse_json(raw))
        alias: str = body["model"]
        # A NUL would make PostgreSQL refuse the whole ledger batch, again at every retry.
        record.model_alias = alias[:256].replace("\x00", "\N{REPLACEMENT CHARACTER}")
        authorize_model(key, alias)
        eligible = eligible_deployments(
            table=gateway.routing,
            detector=gateway.detector,
            egress=gateway.egress,
            key=key,
            alias=alias,
            body=body,
            class_header=request.get(DATA_CLASS_HEADER),
            offline=gateway.offline,
            reroute_alias=gateway.config.policy.reroute_alias,
        )
        attempts += eligible.skipped
        record.data_class, record.findings = eligible.data_class, eligible.findings or None
        streaming = bool(endpoint.stream_call and body.get("stream"))
        record.stream = streaming

        ttl = None if streaming else _cache_ttl(gateway, request, key)
        fingerprint = ""
        if ttl is not None:
            fingerprint = cache.ResponseCache.fingerprint(
                f"key:{key.id}" if key else "anonymous", endpoint.name, body
            )
            hit = gateway.cache.get(fingerprint)
            headers[cache.HEADER] = "hit" if hit is not None else "miss"
            if hit is not None:
                record.cache_hit = True
                await send_json(send, 200, hit, headers)
                return

        admission = await gateway.limiter.admit(
            gateway.subjects(key),
            estimated_tokens=estimated_tokens(len(raw), body, eligible.deployments),
            worst_cost_nanos=worst_case_cost_nanos(len(raw), body, eligible.deployments),
            cost_currency=next(
                (d.price.currency for d in eligible.deployments if d.price is not None), None
            ),
        )
        headers.update(admission.headers)

        def note(deployment: Deployment) -> None:
            record.deployment = deployment.name
            record.provider = deployment.config.provider
            record.jurisdiction = deployment.config.jurisdiction
            headers[DEPLOYMENT_HEADER] = deployment.name

        if streaming:
            assert endpoint.stream_call is not None
            method = endpoint.stream_call
            options = body.get("stream_options") or {}

            async def start(deployment: Deployment) -> OpenedStream:
                note(deployment)
                upstream = {
                    **body,
                    "model": deployment.config.target,
                    "stream_options": {**options, "include_usage": True},
                }
                return await open_stream(deployment, method, upstream)

            opened, deployment = await gateway.router.call(
                eligible.alias, eligible.deployments, start, attempts
            )
            note(deployment)

            async def end_stream() -> None:
                gateway.router.finished(deployment)
                await finish()

            events = stream_events(
                deployment,
                opened,
                record,
                started,
                bool(options.get("include_usage")),
                end_stream,
            )
            handed_to_stream = True
            await SSEResponse(await anext(events), events, headers)(scope, receive, send)
            return

        async def call(deployment: Deployment) -> JSON:
            note(deployment)
            upstream = {**body, "model": deployment.config.target}
            result: JSON = await getattr(deployment.provider, endpoint.call)(upstream)
            return result

        result, deployment = await gateway.router.call(
            eligible.alias, eligible.deployments, call, attempts
        )
        gateway.router.finished(deployment)
        note(deployment)
        normalise(result, alias, endpoint)
        settle(record, deployment, result.get("usage"), started)
        payload = orjson.dumps(result)
        if ttl is not None:
            gateway.cache.put(fingerprint, payload, ttl)
        await send_json(send, 200, payload, headers)
    except GatewayError as exc:
        record.status = exc.status_code
        record.error_type = exc.code or exc.error_type
        await send_error(send, exc, {**headers, **getattr(exc, "headers", {})})
    except Exception as exc:
        if handed_to_stream:
            raise
        log_unexpected(exc)
        internal = GatewayError("the gateway hit an internal error")
        record.status, record.error_type = internal.status_code, internal.error_type
        await send_error(send, internal, headers)
    finally:
        if not handed_to_stream:
            await finish()


def new_request_id() -> str:
    """Unique and in time order: the clock in nanoseconds, then 64 random bits. The ledger's
    unique index on request ids then grows at its end; random ids made each insert a random
    B-tree descent, which cost twice as much per row and grew with the table. An id is a label,
    not a secret, so the bits come from `random` (seeded from the OS, reseeded after a fork)
    rather than a system call per request."""
    return f"req_{time.time_ns():016x}{random.getrandbits(64):016x}"


def _cache_ttl(gateway: Gateway, request: dict[str, str], key: ApiKey | None) -> float | None:
    return gateway.cache.ttl_for(request.get(cache.HEADER), key.cache_ttl_seconds if key else None)


def normalise(result: JSON, alias: str, endpoint: Endpoint) -> None:
    """Fill what OpenAI's schema requires but some upstreams omit, and answer under the alias."""
    result["model"] = alias
    if endpoint.completion_object is None:
        return
    result.setdefault("object", endpoint.completion_object)
    result.setdefault("created", int(time.time()))
    for choice in result.get("choices") or ():
        choice.setdefault("logprobs", None)
        message = choice.get("message")
        if isinstance(message, dict):
            message.setdefault("content", None)
            message.setdefault("refusal", None)
