"""The admin HTTP API: keys and usage, only with the admin key."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from entrepot.api.asgi import parse_json, read_body
from entrepot.api.gateway import Gateway
from entrepot.exceptions import InvalidRequestError
from entrepot.ledger.pricing import nanos_to_amount
from entrepot.policy.explain import explain_route
from entrepot.policy.key_models import check_allowed_models
from entrepot.routing.good_enough import check_task
from entrepot.store.usage import summarise
from entrepot.types import ApiKey


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _admin(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    gateway.keys.require_admin(request)
    return gateway


async def list_keys(request: Request) -> Response:
    gateway = _admin(request)
    keys = gateway.keys.store.list(include_revoked=request.query_params.get("all") == "true")
    return _json({"object": "list", "data": [key.public() for key in keys]})


async def create_key(request: Request) -> Response:
    gateway = _admin(request)
    body = parse_json(await read_body(request.receive, request.headers, 64 * 1024))
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise InvalidRequestError("name is required and must be a string", param="name")
    allowed = body.get("allowed_models")
    if allowed is not None and not (
        isinstance(allowed, list) and all(isinstance(a, str) for a in allowed)
    ):
        raise InvalidRequestError(
            "allowed_models must be an array of strings", param="allowed_models"
        )
    budget = body.get("budget") or {}
    if not isinstance(budget, dict):
        raise InvalidRequestError("budget must be an object", param="budget")
    try:
        amount = Decimal(str(budget["amount"])) if "amount" in budget else None
    except InvalidOperation:
        raise InvalidRequestError("budget.amount must be a number", param="budget.amount") from None
    extras: dict[str, Any] = {}
    for field in ("requests_per_minute", "tokens_per_minute", "cache_ttl_seconds"):
        value = body.get(field)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidRequestError(f"{field} must be an integer", param=field)
        extras[field] = value
    for field in ("team", "data_class", "default_task"):
        value = body.get(field)
        if value is not None and not isinstance(value, str):
            raise InvalidRequestError(f"{field} must be a string", param=field)
        extras[field] = value
    key, secret = await new_key(
        gateway,
        body["name"],
        allowed_models=allowed,
        budget_amount=amount,
        budget_currency=str(budget.get("currency", "USD")),
        budget_period=str(budget.get("period", "month")),
        **extras,
    )
    return _json({**key.public(), "key": secret}, status=201)


async def new_key(
    gateway: Gateway, name: str, models_field: str = "allowed_models", **fields: Any
) -> tuple[ApiKey, str]:
    """A key made here or in the console: what only the configuration knows (models, data
    classes, tasks) is checked here, the rest by the store; then every replica is told.
    `models_field` is what the caller's form calls the allow-list, for the error."""
    check_allowed_models(
        gateway.config, fields.get("allowed_models"), models_field, param="allowed_models"
    )
    classes = gateway.config.policy.classes
    if fields.get("data_class") is not None and fields["data_class"] not in classes:
        raise InvalidRequestError(f"data_class must be one of {classes}", param="data_class")
    if fields.get("default_task") is not None:
        check_task(fields["default_task"], "default_task")
    key, secret = gateway.keys.store.create(name, **fields)
    await gateway.keys.changed()
    return key, secret


async def revoke_key(request: Request) -> Response:
    gateway = _admin(request)
    key = gateway.keys.store.revoke(request.path_params["ref"])
    await gateway.keys.changed()
    return _json(key.public())


async def usage_summary(request: Request) -> Response:
    gateway = _admin(request)
    by = request.query_params.get("by", "model")
    if by not in ("key", "model", "day"):
        raise InvalidRequestError("by must be key, model or day", param="by")
    await gateway.ledger.flush()
    rows = summarise(gateway.engine, by)  # type: ignore[arg-type]
    return _json(
        {
            "object": "list",
            "by": by,
            "data": [
                {
                    "group": row.group,
                    "requests": row.requests,
                    "failed": row.failed,
                    "prompt_tokens": row.prompt_tokens,
                    "completion_tokens": row.completion_tokens,
                    "cost": {c: str(nanos_to_amount(n)) for c, n in row.cost_nanos.items()},
                }
                for row in rows
            ],
        }
    )


async def explain(request: Request) -> Response:
    """The route a request would take, for a key (by name), without sending it anywhere."""
    gateway = _admin(request)
    body = parse_json(await read_body(request.receive, request.headers, 1024 * 1024))
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise InvalidRequestError("model is required", param="model")
    key = None
    if isinstance(body.get("key"), str):
        key = next((k for k in gateway.keys.store.list() if k.name == body["key"]), None)
        if key is None:
            raise InvalidRequestError(f"no active key named {body['key']!r}", param="key")
    sample = body.get("request") or {"messages": [{"role": "user", "content": "Hello"}]}
    result = explain_route(
        config=gateway.config,
        table=gateway.routing,
        router=gateway.router,
        detector=gateway.detector,
        egress=gateway.egress,
        key=key,
        alias=body["model"],
        body=sample if isinstance(sample, dict) else {},
        class_header=body.get("data_class"),
        task_header=body["task"] if isinstance(body.get("task"), str) else None,
        offline=gateway.offline,
    )
    return _json(result.as_json())
