"""The inference endpoints — chat, completions, embeddings — and the one path they share:
authenticate → validate → resolve the model → check the key may use it → call the provider →
bill. Every request leaves exactly one usage record, whichever step it stopped at.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from entrepot.api.errors import error_body, error_response
from entrepot.api.gateway import Gateway
from entrepot.api.sse import SSEResponse
from entrepot.api.validation import validate_chat, validate_completion, validate_embedding
from entrepot.exceptions import (
    GatewayError,
    InvalidRequestError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from entrepot.ledger.pricing import cost_nanos, hardware_cost_nanos
from entrepot.ledger.records import UsageRecord
from entrepot.policy.access import authorize_model
from entrepot.providers.base import JSON, TokenUsage
from entrepot.routing.table import Deployment

DONE = b"data: [DONE]\n\n"


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
    handed_to_stream = False
    try:
        key = await gateway.keys.authenticate(request)
        if key is not None:
            record.key_id, record.key_name = key.id, key.name
        body = endpoint.validate(await read_json(request, gateway.config.server.max_body_bytes))
        alias: str = body["model"]
        record.model_alias = alias[:256]
        authorize_model(key, alias)
        deployment = gateway.routing.resolve(alias)
        record.deployment = deployment.config.deployment
        record.provider = deployment.config.provider
        record.jurisdiction = deployment.config.jurisdiction
        headers["x-entrepot-deployment"] = deployment.config.deployment
        upstream = {**body, "model": deployment.config.target}
        if endpoint.stream_call and body.get("stream"):
            response = await open_stream(
                gateway, endpoint, deployment, upstream, record, started, headers
            )
            handed_to_stream = True
            return response
        result = await getattr(deployment.provider, endpoint.call)(upstream)
        normalise(result, alias, endpoint)
        settle(record, deployment, result.get("usage"), started)
        return Response(orjson.dumps(result), media_type="application/json", headers=headers)
    except GatewayError as exc:
        fail(record, exc)
        return error_response(exc, headers)
    finally:
        if not handed_to_stream:
            record.latency_ms = _ms_since(started)
            gateway.ledger.record(record)


async def read_json(request: Request, limit: int) -> Any:
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
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from None


async def open_stream(
    gateway: Gateway,
    endpoint: Endpoint,
    deployment: Deployment,
    upstream: JSON,
    record: UsageRecord,
    started: float,
    headers: dict[str, str],
) -> SSEResponse:
    """Wait for the upstream's first chunk before answering, so a failure to start is a proper
    HTTP error; after that, failures can only be reported inside the stream."""
    record.stream = True
    client_options = upstream.get("stream_options") or {}
    include_usage = bool(client_options.get("include_usage"))
    upstream["stream_options"] = {**client_options, "include_usage": True}
    assert endpoint.stream_call is not None
    chunks: AsyncIterator[JSON] = getattr(deployment.provider, endpoint.stream_call)(upstream)
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await _close(chunks)
        raise
    events = stream_events(gateway, deployment, chunks, first, record, started, include_usage)
    return SSEResponse(events, headers)


async def stream_events(
    gateway: Gateway,
    deployment: Deployment,
    chunks: AsyncIterator[JSON],
    first: JSON | None,
    record: UsageRecord,
    started: float,
    include_usage: bool,
) -> AsyncGenerator[bytes, None]:
    alias = deployment.alias
    usage: JSON | None = None
    finished = False
    record.status, record.error_type = 499, "client_closed"
    try:
        chunk = first
        while chunk is not None:
            if chunk.get("usage") is not None:
                usage = chunk["usage"]
                if not include_usage:
                    del chunk["usage"]
            if record.ttft_ms is None and _has_output(chunk):
                record.ttft_ms = _ms_since(started)
            if chunk.get("choices") or include_usage:
                chunk["model"] = alias
                for choice in chunk.get("choices") or ():
                    choice.setdefault("finish_reason", None)
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            chunk = await anext(chunks, None)
        yield DONE
        finished = True
        record.status, record.error_type = 200, None
    except GatewayError as exc:
        fail(record, exc)
        yield b"data: " + orjson.dumps(error_body(exc)) + b"\n\n"
    finally:
        await _close(chunks)
        if finished or usage is not None:
            settle(record, deployment, usage, started)
        record.latency_ms = _ms_since(started)
        gateway.ledger.record(record)


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


def settle(record: UsageRecord, deployment: Deployment, usage: Any, started: float) -> None:
    tokens = TokenUsage.from_openai(usage)
    if tokens is not None:
        record.usage_reported = True
        record.prompt_tokens = tokens.prompt_tokens
        record.completion_tokens = tokens.completion_tokens
        record.reasoning_tokens = tokens.reasoning_tokens
        record.cached_tokens = tokens.cached_tokens
    price = deployment.price
    per_hour = deployment.config.hardware_cost_per_hour
    if price is not None and tokens is not None:
        record.cost_nanos = cost_nanos(tokens, price)
        record.currency, record.price_date = price.currency, price.as_of.isoformat()
    elif per_hour is not None:
        record.cost_nanos = hardware_cost_nanos(time.perf_counter() - started, per_hour)
        record.currency = "USD"


def fail(record: UsageRecord, exc: GatewayError) -> None:
    record.status = exc.status_code
    record.error_type = exc.code or exc.error_type


def _has_output(chunk: JSON) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content"):
            return True
        if choice.get("text"):
            return True
    return False


async def _close(chunks: AsyncIterator[JSON]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await asyncio.shield(close())


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
