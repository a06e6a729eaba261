"""Keys and budgets: the client keys (create, with the secret shown once; revoke), and where each
key and team stands against its budget (`budgets.py`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.datastructures import FormData
from starlette.responses import Response

from entrepot.api.admin import new_key
from entrepot.api.console.budgets import Spends, Standing, standing
from entrepot.api.console.pages import Page, PageContext
from entrepot.exceptions import GatewayError, InvalidRequestError
from entrepot.store.keys import BUDGET_PERIODS
from entrepot.types import ApiKey


@dataclass(frozen=True)
class KeyRow:
    key: ApiKey
    standing: Standing


@dataclass(frozen=True)
class TeamRow:
    name: str
    keys: int
    standing: Standing


async def _rows(ctx: PageContext) -> tuple[list[KeyRow], list[TeamRow], list[ApiKey]]:
    gateway = ctx.gateway
    keys = gateway.keys.store.list(include_revoked=True)
    spends = Spends(gateway, dt.datetime.now(dt.UTC))
    active = [key for key in keys if key.revoked_at is None]
    rows = [
        KeyRow(
            key,
            await standing(spends, key.limits.budget, key.created_at, key=(key.id, key.name)),
        )
        for key in active
    ]
    teams = []
    for name, team in gateway.config.teams.items():
        members = [key for key in active if key.team == name]
        since = min((key.created_at for key in members), default=dt.datetime.now(dt.UTC))
        teams.append(
            TeamRow(
                name,
                len(members),
                await standing(spends, team.limits.budget, since, team=name),
            )
        )
    return rows, teams, [key for key in keys if key.revoked_at is not None]


async def get(ctx: PageContext) -> Response:
    return await _page(ctx)


async def _page(
    ctx: PageContext,
    status: int = 200,
    created: tuple[ApiKey, str] | None = None,
    error: GatewayError | None = None,
    form: FormData | None = None,
) -> Response:
    rows, teams, revoked = await _rows(ctx)
    config = ctx.gateway.config
    return ctx.render(
        "keys.html",
        status,
        rows=rows,
        teams=teams,
        revoked=revoked,
        created=created,
        error=error,
        form=form or FormData(),
        models=ctx.gateway.routing.aliases,
        classes=config.policy.classes,
        team_names=list(config.teams),
        currencies=sorted({config.currency_rates.base, *config.currency_rates.rates}),
        periods=BUDGET_PERIODS,
    )


async def post(ctx: PageContext, form: FormData) -> Response:
    action = form.get("action")
    try:
        if action == "create":
            created = await _create(ctx, form)
            return await _page(ctx, 201, created=created)
        if action == "revoke":
            ctx.gateway.keys.store.revoke(str(form.get("key_id", "")))
            await ctx.gateway.keys.changed()
            return ctx.redirect(PAGE.path)
    except GatewayError as exc:
        return await _page(ctx, exc.status_code, error=exc, form=form)
    return await _page(ctx, 400, error=InvalidRequestError(f"unknown action {action!r}"))


async def _create(ctx: PageContext, form: FormData) -> tuple[ApiKey, str]:
    """The form's fields as the admin API takes them; empty fields are left unset."""
    models = [str(m) for m in form.getlist("models")]
    fields: dict[str, Any] = {
        "allowed_models": models or None,
        "budget_amount": _decimal(form, "budget_amount"),
        "budget_currency": _text(form, "budget_currency") or "USD",
        "budget_period": _text(form, "budget_period") or "month",
        "requests_per_minute": _integer(form, "requests_per_minute"),
        "tokens_per_minute": _integer(form, "tokens_per_minute"),
        "team": _text(form, "team"),
        "data_class": _text(form, "data_class"),
        "default_task": _text(form, "default_task"),
    }
    return await new_key(
        ctx.gateway, _text(form, "name") or "", models_field="Allowed models", **fields
    )


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value.strip() or None if isinstance(value, str) else None


def _decimal(form: FormData, name: str) -> Decimal | None:
    text = _text(form, name)
    try:
        return None if text is None else Decimal(text.replace(",", ""))
    except InvalidOperation:
        raise InvalidRequestError(f"{name} must be a number, got {text!r}", param=name) from None


def _integer(form: FormData, name: str) -> int | None:
    text = _text(form, name)
    if text is None:
        return None
    if not text.replace(",", "").isdigit():
        raise InvalidRequestError(f"{name} must be a whole number, got {text!r}", param=name)
    return int(text.replace(",", ""))


PAGE = Page(path="/keys", title="Keys and budgets", get=get, post=post)
