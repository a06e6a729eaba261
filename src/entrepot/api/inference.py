"""The inference endpoints — chat, completions, embeddings — and the one path they share, in the
order of the package layout: authenticate and validate (api) → data class and eligible
deployments (policy) → cache, limits and budget → pick and call a deployment with fallbacks
(routing, providers) → bill (ledger). Every request leaves exactly one usage record, whichever
step it stopped at.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from entrepot.api.errors import error_response
from entrepot.api.gateway import Gateway
from entrepot.api.sse import SSEResponse
from entrepot.api.streaming import OpenedStream, open_stream, stream_events
from entrepot.api.validation import validate_chat, validate_completion, validate_embedding
from entrepot.exceptions import (
    GatewayError,
    InvalidRequestError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from entrepot.ledger.billing import estimated_tokens, settle, worst_case_cost_nanos
from entrepot.ledger.records import UsageRecord
from entrepot.limits.limiter import Admission
from entrepot.policy.access import authorize_model
from entrepot.policy.eligibility import eligible_deployments
from entrepot.providers.base import JSON
from entrepot.routing import cache
from entrepot.routing.router import Attempt
from entrepot.routing.table import Deployment
from entrepot.store.keys import ApiKey

DATA_CLASS_HEADER = "x-entrepot-data-class"


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


async def chat_completions(request: Request) -> Any:
    return await serve(request, CHAT)


async def completions(request: Request) -> Any:
    return await serve(request, COMPLETIONS)


async def embeddings(request: Request) -> Any:
    return await serve(request, EMBEDDINGS)


async def serve(request: Request, endpoint: Endpoint) -> Any:
    gateway: Gateway = request.app.state.gateway
    record = UsageRecord(request_id=f"req_{uuid.uuid4().hex}", endpoint=endpoint.name)
    started = time.perf_counter()
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
        raw = await read_body(request, gateway.config.server.max_body_bytes)
        body = endpoint.validate(parse_json(raw))
        alias: str = body["model"]
        record.model_alias = alias[:256]
        authorize_model(key, alias)
        eligible = eligible_deployments(
            table=gateway.routing,
            detector=gateway.detector,
            egress=gateway.egress,
            key=key,
            alias=alias,
            body=body,
            class_header=request.headers.get(DATA_CLASS_HEADER),
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
                return Response(hit, media_type="application/json", headers=headers)

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
            headers["x-entrepot-deployment"] = deployment.name

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
            return SSEResponse(await anext(events), events, headers)

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
        return Response(payload, media_type="application/json", headers=headers)
    except GatewayError as exc:
        record.status = exc.status_code
        record.error_type = exc.code or exc.error_type
        return error_response(exc, {**headers, **getattr(exc, "headers", {})})
    finally:
        if not handed_to_stream:
            await finish()


def _cache_ttl(gateway: Gateway, request: Request, key: ApiKey | None) -> float | None:
    return gateway.cache.ttl_for(
        request.headers.get(cache.HEADER), key.cache_ttl_seconds if key else None
    )


async def read_body(request: Request, limit: int) -> bytes:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise UnsupportedMediaTypeError(
            f"Content-Type must be application/json, got {content_type[:100] or 'none'!r}"
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"the request body exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from None


async def read_json(request: Request, limit: int) -> Any:
    return parse_json(await read_body(request, limit))


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
