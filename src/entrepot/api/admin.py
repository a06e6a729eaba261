"""The admin HTTP API: keys and usage, only with the admin key."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from entrepot.api.gateway import Gateway
from entrepot.api.inference import read_json
from entrepot.exceptions import InvalidRequestError
from entrepot.ledger.pricing import nanos_to_amount
from entrepot.store.usage import summarise


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
    body = await read_json(request, 64 * 1024)
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
    key, secret = gateway.keys.store.create(
        body["name"],
        allowed_models=allowed,
        budget_amount=amount,
        budget_currency=str(budget.get("currency", "USD")),
        budget_period=str(budget.get("period", "month")),
    )
    await gateway.keys.reload()
    return _json({**key.public(), "key": secret}, status=201)


async def revoke_key(request: Request) -> Response:
    gateway = _admin(request)
    key = gateway.keys.store.revoke(request.path_params["ref"])
    await gateway.keys.reload()
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
