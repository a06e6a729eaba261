"""`entrepot keys`: create, list and revoke client API keys in the store, and tell running
replicas at once so that a revoked key stops working everywhere."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated

import typer
from rich.markup import escape

from entrepot.cli.common import TABLE, ConfigOption, FormatOption, console, load, output_format
from entrepot.config import Config
from entrepot.exceptions import GatewayError
from entrepot.ledger.display import money
from entrepot.listing import Column, Listing, Row, show
from entrepot.store.db import open_engine
from entrepot.store.keys import KeyStore

keys_app = typer.Typer(help="Create, list and revoke client API keys.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key, e.g. the team or app.")],
    models: Annotated[
        str | None, typer.Option("--models", help="Comma-separated aliases the key may use.")
    ] = None,
    budget: Annotated[Decimal | None, typer.Option(help="Budget amount.")] = None,
    currency: Annotated[str, typer.Option(help="Budget currency.")] = "USD",
    period: Annotated[str, typer.Option(help="Budget period: day, month or total.")] = "month",
    team: Annotated[str | None, typer.Option(help="Team whose rules and limits apply.")] = None,
    data_class: Annotated[str | None, typer.Option(help="Minimum data class.")] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.")] = None,
    cache_ttl: Annotated[int | None, typer.Option(help="Cache answers for N seconds.")] = None,
    task: Annotated[
        str | None,
        typer.Option("--task", help="Task of requests that name none (x-entrepot-task)."),
    ] = None,
    config_path: ConfigOption = None,
) -> None:
    """Create a key; the secret is printed once and stored only as a hash."""
    from entrepot.policy.key_models import check_allowed_models
    from entrepot.routing.good_enough import check_task

    config = load(config_path)
    if data_class is not None and data_class not in config.policy.classes:
        console.print(f"[red]unknown data class {data_class!r}: {config.policy.classes}[/red]")
        raise typer.Exit(2)
    try:
        if task is not None:
            check_task(task, "--task")
    except GatewayError as exc:
        console.print(f"[red]--task: {exc.message}[/red]")
        raise typer.Exit(2) from None
    allowed = [m.strip() for m in models.split(",") if m.strip()] if models else None
    try:
        check_allowed_models(config, allowed, "--models", param="allowed_models")
    except GatewayError as exc:
        console.print(f"[red]{escape(exc.message)}[/red]", highlight=False)
        raise typer.Exit(2) from None
    store = KeyStore(open_engine(config.store))
    try:
        key, secret = store.create(
            name,
            allowed,
            budget,
            currency,
            period,
            team=team,
            data_class=data_class,
            requests_per_minute=rpm,
            tokens_per_minute=tpm,
            cache_ttl_seconds=cache_ttl,
            default_task=task,
        )
    except GatewayError as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from None
    announce_key_change(config)
    console.print(f"created key [bold]{key.name}[/bold] (id {key.id})")
    typer.echo(secret)


@keys_app.command("list")
def keys_list(
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    config_path: ConfigOption = None,
    fmt: FormatOption = TABLE,
) -> None:
    """List keys (never their secrets)."""
    store = KeyStore(open_engine(load(config_path).store))
    listing = Listing(
        [
            Column("name", lambda r: r["name"]),
            Column("id", lambda r: str(r["id"]), numeric=True),
            Column("prefix", lambda r: r["prefix"]),
            Column("models", lambda r: ", ".join(r["models"]) if r["models"] else "all"),
            Column("budget", _budget_text),
            Column("team", lambda r: r["team"] or ""),
            Column("class", lambda r: r["data_class"] or ""),
            Column("rpm/tpm", lambda r: f"{r['rpm'] or '—'}/{r['tpm'] or '—'}", numeric=True),
            Column("created", lambda r: _minute(r["created_at"])),
            Column("revoked", lambda r: _minute(r["revoked_at"])),
        ]
    )
    for key in store.list(include_revoked):
        listing.add(
            {
                "id": key.id,
                "name": key.name,
                "prefix": key.key_prefix,
                "models": key.allowed_models,
                "budget": key.budget_amount,
                "currency": key.budget_currency,
                "period": key.budget_period,
                "team": key.team,
                "data_class": key.data_class,
                "rpm": key.requests_per_minute,
                "tpm": key.tokens_per_minute,
                "created_at": key.created_at,
                "revoked_at": key.revoked_at,
            }
        )
    show(listing, console, output_format(fmt))


def _minute(moment: dt.datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else ""


def _budget_text(row: Row) -> str:
    if row["budget"] is None:
        return ""
    return f"{money(float(row['budget']), row['currency'])}/{row['period']}"


@keys_app.command("revoke")
def keys_revoke(
    ref: Annotated[str, typer.Argument(help="Key id or name.")],
    config_path: ConfigOption = None,
) -> None:
    """Revoke a key; running gateways stop accepting it within a second (with the shared
    backend; else at their next reload from the database, within seconds)."""
    config = load(config_path)
    store = KeyStore(open_engine(config.store))
    try:
        key = store.revoke(ref)
    except GatewayError as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from None
    announce_key_change(config)
    console.print(f"revoked key {key.name} (id {key.id})")


def announce_key_change(config: Config) -> None:
    """Tell every replica sharing Redis to reload its keys now, as the admin API does; with
    Redis unreachable they still find the change at their next reload from the database."""
    if config.shared.backend != "redis":
        return
    import asyncio

    from entrepot.store.key_events import KeyEvents
    from entrepot.store.redis import connect

    async def announce() -> None:
        redis = connect(config.shared)
        try:
            await KeyEvents(redis).announce()
        finally:
            await redis.aclose()

    asyncio.run(announce())
