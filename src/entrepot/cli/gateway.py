"""The gateway's commands: serve, models, keys, route and usage."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import uvicorn
from rich.markup import escape

from entrepot.cli.banner import print_banner
from entrepot.cli.common import (
    TABLE,
    ConfigOption,
    FormatOption,
    console,
    load,
    output_format,
)
from entrepot.cli.preflight import check_port, missing_files, missing_keys
from entrepot.config import Config, ModelConfig, is_loopback
from entrepot.exceptions import ConfigError, GatewayError
from entrepot.ledger.display import count as fmt_count
from entrepot.ledger.display import money
from entrepot.ledger.hardware import hourly_rate
from entrepot.ledger.pricing import nanos_to_amount, price_for
from entrepot.listing import Column, Format, Listing, Row, print_json, show
from entrepot.providers.provenance import listing_row
from entrepot.store.db import open_engine
from entrepot.store.keys import KeyStore
from entrepot.store.usage import summarise

if TYPE_CHECKING:
    from entrepot.policy.explain import RouteExplanation

keys_app = typer.Typer(help="Create, list and revoke client API keys.", no_args_is_help=True)


def check_bind(config: Config, host: str) -> None:
    """Refuse to expose the gateway beyond this machine without authentication."""
    server = config.server
    if not is_loopback(host) and not (server.admin_key() and server.require_client_keys):
        raise ConfigError(
            f"refusing to bind {host}: a non-loopback address needs an admin key"
            f" (${server.admin_key_env}) and server.require_client_keys: true"
        )


def serve(
    config_path: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Serve only local deployments; no outbound traffic.")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(min=1, help="Worker processes (more than 1 needs shared.backend: redis)."),
    ] = 1,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Serve the OpenAI-compatible API."""
    from entrepot.api.factory import OFFLINE_ENV, configured
    from entrepot.shadow.serve import WORKER_APP, gateway_app

    config = configured(load(config_path), offline)
    host = host or config.server.host
    port = config.server.port if port is None else port
    served = [m for m in config.models if m.is_local or not config.policy.offline]
    try:
        check_bind(config, host)
        check_workers(config, workers)
        if missing := missing_files(served):
            raise ConfigError("\n".join(missing))
        # One worker is served from here; several build their own from the environment.
        app = gateway_app(config) if workers == 1 else WORKER_APP
        check_port(host, port)  # models load in uvicorn's start-up, before it binds
        print_banner(config, host, port, _refused_warnings(served), console)
    except ConfigError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None
    if workers > 1:
        if config_path is not None:
            os.environ["ENTREPOT_CONFIG"] = str(config_path.resolve())
        os.environ[OFFLINE_ENV] = "1" if offline else "0"
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        factory=workers > 1,
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        access_log=False,
        server_header=False,  # no advertising of the server software to every client
        timeout_graceful_shutdown=30,
    )


def _refused_warnings(models: list[ModelConfig]) -> list[str]:
    """A model without its key still lets the gateway start (the others serve); said here."""
    return [f"{problem}: its requests will fail" for problem in missing_keys(models)]


def check_workers(config: Config, workers: int) -> None:
    """Several workers are a fleet: without the shared backend each would keep its own limits,
    budgets and circuits, and a key could spend its budget once per worker."""
    if workers > 1 and config.shared.backend != "redis":
        raise ConfigError(
            f"--workers {workers} needs shared.backend: redis (and ${config.shared.redis_url_env}),"
            " so that limits and budgets hold across workers; or serve with --workers 1"
        )
    if workers > 1:
        config.shared.redis_url()  # its absence is said here, once, not by every worker


def models(config_path: ConfigOption = None, fmt: FormatOption = TABLE) -> None:
    """Show the configured models."""
    config = load(config_path)
    listing = Listing(
        [
            Column("alias", lambda r: r["alias"]),
            Column("provider", lambda r: r["provider"]),
            Column("target", lambda r: r["target"]),
            Column("jurisdiction", lambda r: r["jurisdiction"]),
            Column("licence", lambda r: r["licence"] or ""),
            Column("sha256", lambda r: r["sha256_shown"]),
            Column("quant", lambda r: r["quantisation"] or ""),
            Column("price (1M in·out, or hour)", lambda r: r["price_text"]),
        ]
    )
    for model in config.models:
        price = price_for(model)
        if price is not None:
            pair = [
                money(float(p), price.currency) for p in (price.input_per_1m, price.output_per_1m)
            ]
            shown = f"{'·'.join(pair)} ({price.as_of})"
        elif (rate := hourly_rate(model)) is not None:
            shown = rate.describe()
        else:
            shown = "unpriced"
        listing.add(
            {
                "alias": model.alias,
                "provider": model.provider,
                "target": model.target,
                "jurisdiction": model.jurisdiction,
                "licence": model.licence,
                "input_per_1m": price.input_per_1m if price else None,
                "output_per_1m": price.output_per_1m if price else None,
                "currency": price.currency if price else None,
                "price_as_of": price.as_of if price else None,
                "price_text": shown,
                **listing_row(model),
            }
        )
    show(listing, console, output_format(fmt))


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


def route(
    model: Annotated[str, typer.Option("--model", "-m", help="The alias to route.")],
    explain: Annotated[bool, typer.Option("--explain", help="Show every candidate.")] = True,
    key_name: Annotated[str | None, typer.Option("--key", help="Key name to route for.")] = None,
    message: Annotated[str, typer.Option(help="Sample user message.")] = "Hello",
    request_file: Annotated[
        Path | None, typer.Option("--request", help="Sample request body (JSON file).")
    ] = None,
    data_class: Annotated[str | None, typer.Option(help="As the data-class header.")] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="As the x-entrepot-task header.")
    ] = None,
    offline: Annotated[bool, typer.Option("--offline")] = False,
    config_path: ConfigOption = None,
    fmt: FormatOption = TABLE,
) -> None:
    """Explain where a request would go, and why each deployment is admitted or rejected; for a
    good_enough route, the evidence each candidate was judged on."""
    import orjson

    from entrepot.policy.detector import PiiDetector
    from entrepot.policy.egress import EgressPolicy
    from entrepot.policy.explain import explain_route
    from entrepot.routing.good_enough import board_for
    from entrepot.routing.router import Router
    from entrepot.routing.table import RoutingTable

    config = load(config_path)
    engine = open_engine(config.store)
    board = board_for(config, engine)
    if board is not None:
        board.load_now()
    key = None
    if key_name is not None:
        store = KeyStore(engine)
        key = next((k for k in store.list() if k.name == key_name), None)
        if key is None:
            console.print(f"[red]no active key named {key_name!r}[/red]")
            raise typer.Exit(1)
    if request_file is not None:
        body = orjson.loads(request_file.read_bytes())
    else:
        body = {"model": model, "messages": [{"role": "user", "content": message}]}
    result = explain_route(
        config=config,
        table=RoutingTable(config, board),
        router=Router(config),
        detector=PiiDetector(config.policy.detector),
        egress=EgressPolicy(config.policy, config.teams),
        key=key,
        alias=model,
        body=body,
        class_header=data_class,
        task_header=task,
        offline=offline or config.policy.offline,
    )
    _print_explanation(result, output_format(fmt))


def _print_explanation(result: RouteExplanation, fmt: Format) -> None:
    """The route's verdict, its candidates, and for good_enough the evidence; as JSON the whole
    explanation, as CSV the candidates (and the evidence after a blank line)."""
    if fmt == "json":
        print_json(dataclasses.asdict(result), console)
        return
    candidates = Listing(
        [
            Column("deployment", lambda r: r["deployment"]),
            Column("order", lambda r: str(r["order"] or "—"), numeric=True),
            Column("alias", lambda r: r["alias"]),
            Column("jurisdiction", lambda r: r["jurisdiction"]),
            Column("admitted", lambda r: "yes" if r["admitted"] else "no"),
            Column("why", lambda r: r["reason"]),
            Column("circuit", lambda r: r["circuit"]),
        ],
        rows=[dataclasses.asdict(row) for row in result.candidates],
    )
    evidence = _evidence_listing(result) if result.strategy == "good_enough" else None
    if fmt == "csv":
        show(candidates, console, fmt)
        if evidence is not None:
            console.print()
            show(evidence, console, fmt)
        return
    found = ", ".join(f"{k}×{n}" for k, n in result.findings.items()) or "none"
    served = "refused" if result.refusal else f"served as [bold]{escape(result.alias)}[/bold]"
    console.print(
        f"model [bold]{escape(result.requested)}[/bold] → {served}; data class"
        f" [bold]{result.data_class or '—'}[/bold]; detector findings: {found};"
        f" strategy {result.strategy}"
    )
    show(candidates, console)
    if evidence is not None:
        show(evidence, console)
    for note in result.notes:
        console.print(f"note: {escape(note)}")
    if result.refusal is not None:
        refusal = result.refusal
        console.print(
            f"[red]refused: {refusal.status} {refusal.code}[/red] — {escape(refusal.message)}",
            highlight=False,
        )


def _evidence_listing(result: RouteExplanation) -> Listing:
    """A good_enough route's candidates: the evidence each was judged on, and the verdict."""
    return Listing(
        [
            Column("candidate", lambda r: r["alias"]),
            Column("chosen", lambda r: "yes" if r["chosen"] else "no"),
            Column("score (95% CI)", lambda r: _interval(r, "score"), numeric=True),
            Column("vs reference (95% CI)", lambda r: _interval(r, "relative"), numeric=True),
            Column("items", lambda r: "—" if r["items"] is None else fmt_count(r["items"]),
                   numeric=True),
            Column("published", lambda r: r["published"] or "—"),
            Column("cost/item", _cost_per_item, numeric=True),
            Column("why", lambda r: r["reason"]),
        ],
        title=f"good_enough for task {result.task or '— (none)'}",
        rows=[dataclasses.asdict(row) for row in result.evidence],
    )  # fmt: skip


def _interval(row: Row, name: str) -> str:
    if row[name] is None:
        return "—"
    return f"{row[name]:.3f} ({row[name + '_low']:.3f}–{row[name + '_high']:.3f})"


def _cost_per_item(row: Row) -> str:
    if row["cost_per_item"] is None:
        return "—"
    cost = money(row["cost_per_item"], row["currency"] or "USD")
    return f"{cost} ({row['price_date'] or 'undated'})"


def usage(
    by: Annotated[str, typer.Option("--by", help="Group by key, model or day.")] = "model",
    config_path: ConfigOption = None,
    fmt: FormatOption = TABLE,
) -> None:
    """Summarise the usage ledger."""
    if by not in ("key", "model", "day"):
        console.print("[red]--by must be key, model or day[/red]")
        raise typer.Exit(2)
    rows = summarise(open_engine(load(config_path).store), by)  # type: ignore[arg-type]
    listing = Listing(
        [
            Column(by, lambda r: r["group"]),
            Column("requests", lambda r: fmt_count(r["requests"]), numeric=True),
            Column("failed", lambda r: fmt_count(r["failed"]), numeric=True),
            Column("prompt tokens", lambda r: fmt_count(r["prompt_tokens"]), numeric=True),
            Column("completion tokens", lambda r: fmt_count(r["completion_tokens"]), numeric=True),
            Column("cost", _costs_text, numeric=True),
        ]
    )
    for row in rows:
        listing.add(
            {
                "group": row.group,
                "requests": row.requests,
                "failed": row.failed,
                "prompt_tokens": row.prompt_tokens,
                "completion_tokens": row.completion_tokens,
                "cost": {c: nanos_to_amount(n) for c, n in sorted(row.cost_nanos.items())},
            }
        )
    show(listing, console, output_format(fmt))


def _costs_text(row: Row) -> str:
    return ", ".join(money(float(amount), c) for c, amount in row["cost"].items()) or "—"
