"""The gateway's commands: serve, models, keys, route and usage."""

from __future__ import annotations

import logging
import os
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import uvicorn
from rich.table import Table

from entrepot.cli.common import ConfigOption, console, load
from entrepot.config import Config, is_loopback
from entrepot.exceptions import ConfigError, GatewayError
from entrepot.ledger.hardware import hourly_rate
from entrepot.ledger.pricing import nanos_to_amount, price_for
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
    try:
        check_bind(config, host)
        check_workers(config, workers)
        # One worker is served from here; several build their own from the environment.
        app = gateway_app(config) if workers == 1 else WORKER_APP
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
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


def models(config_path: ConfigOption = None) -> None:
    """Show the configured models."""
    config = load(config_path)
    table = Table(
        "alias",
        "provider",
        "target",
        "jurisdiction",
        "licence",
        "sha256",
        "quant",
        "price (1M in·out, or hour)",
    )
    for model in config.models:
        provenance = listing_row(model)
        price = price_for(model)
        if price is not None:
            shown = f"{price.input_per_1m}·{price.output_per_1m} {price.currency} ({price.as_of})"
        elif (rate := hourly_rate(model)) is not None:
            shown = rate.describe()
        else:
            shown = "unpriced"
        table.add_row(
            model.alias,
            model.provider,
            model.target,
            model.jurisdiction,
            model.licence or "",
            provenance["sha256_shown"],
            provenance["quantisation"] or "",
            shown,
        )
    console.print(table)


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
    store = KeyStore(open_engine(config.store))
    allowed = [m.strip() for m in models.split(",") if m.strip()] if models else None
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
) -> None:
    """List keys (never their secrets)."""
    store = KeyStore(open_engine(load(config_path).store))
    table = Table(
        "id", "name", "prefix", "models", "budget", "team", "class", "rpm/tpm", "created", "revoked"
    )
    for key in store.list(include_revoked):
        budget = (
            f"{key.budget_amount} {key.budget_currency}/{key.budget_period}"
            if key.budget_amount is not None
            else ""
        )
        table.add_row(
            str(key.id),
            key.name,
            key.key_prefix + "…",
            ",".join(key.allowed_models) if key.allowed_models else "all",
            budget,
            key.team or "",
            key.data_class or "",
            f"{key.requests_per_minute or '—'}/{key.tokens_per_minute or '—'}",
            key.created_at.strftime("%Y-%m-%d %H:%M"),
            key.revoked_at.strftime("%Y-%m-%d %H:%M") if key.revoked_at else "",
        )
    console.print(table)


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
    found = ", ".join(f"{k}×{n}" for k, n in result.findings.items()) or "none"
    served = "refused" if result.refusal else f"served as [bold]{result.alias}[/bold]"
    console.print(
        f"model [bold]{model}[/bold] → {served}; data class"
        f" [bold]{result.data_class or '—'}[/bold]; detector findings: {found};"
        f" strategy {result.strategy}"
    )
    table = Table("order", "alias", "deployment", "jurisdiction", "admitted", "why", "circuit")
    for row in result.candidates:
        table.add_row(
            str(row.order or "—"),
            row.alias,
            row.deployment,
            row.jurisdiction,
            "yes" if row.admitted else "no",
            row.reason,
            row.circuit,
        )
    console.print(table)
    if result.strategy == "good_enough":
        console.print(_evidence_table(result))
    for note in result.notes:
        console.print(f"note: {note}")
    if result.refusal is not None:
        refusal = result.refusal
        console.print(
            f"[red]refused: {refusal.status} {refusal.code}[/red] — {refusal.message}",
            highlight=False,
        )


def _evidence_table(result: RouteExplanation) -> Table:
    """A good_enough route's candidates: the evidence each was judged on, and the verdict."""
    table = Table(
        "candidate", "chosen", "score (95% CI)", "vs reference (95% CI)", "items", "published",
        "cost/item", "why",
        title=f"good_enough for task {result.task or '— (none)'}",
    )  # fmt: skip
    for row in result.evidence:
        score = relative = cost = "—"
        if row.score is not None:
            score = f"{row.score:.3f} ({row.score_low:.3f}–{row.score_high:.3f})"
        if row.relative is not None:
            relative = f"{row.relative:.3f} ({row.relative_low:.3f}–{row.relative_high:.3f})"
        if row.cost_per_item is not None:
            cost = f"{row.cost_per_item:.8f} {row.currency} ({row.price_date or 'undated'})"
        table.add_row(
            row.alias,
            "yes" if row.chosen else "no",
            score,
            relative,
            str(row.items) if row.items is not None else "—",
            row.published or "—",
            cost,
            row.reason,
        )
    return table


def usage(
    by: Annotated[str, typer.Option("--by", help="Group by key, model or day.")] = "model",
    config_path: ConfigOption = None,
) -> None:
    """Summarise the usage ledger."""
    if by not in ("key", "model", "day"):
        console.print("[red]--by must be key, model or day[/red]")
        raise typer.Exit(2)
    rows = summarise(open_engine(load(config_path).store), by)  # type: ignore[arg-type]
    table = Table(by, "requests", "failed", "prompt tokens", "completion tokens", "cost")
    for row in rows:
        costs = [f"{nanos_to_amount(n):.6f} {c}" for c, n in sorted(row.cost_nanos.items())]
        table.add_row(
            row.group,
            str(row.requests),
            str(row.failed),
            str(row.prompt_tokens),
            str(row.completion_tokens),
            ", ".join(costs) or "—",
        )
    console.print(table)
