"""`entrepot reconcile`: do the budgets a fleet keeps in Redis agree with the ledger?

For every key and team with a budget, what Redis says was spent in the current period against
what the ledger says: the store, plus the records this machine's spool still holds. A request
settles in Redis a moment before its record reaches the ledger, so under traffic a drift of
the last flush window's spend is expected; a drift that stays is a real one (Redis lost a write,
spend was counted on a replica's own counters during an outage, the store was edited). `--fix`
sets Redis's spend to the ledger's, leaving the reservations of requests in flight alone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import typer
from sqlalchemy import Engine

from entrepot.cli.common import TABLE, ConfigOption, FormatOption, console, load, output_format
from entrepot.config import Budget, Config
from entrepot.listing import Column, Format, Listing, Row, show
from entrepot.types import UsageRecord

if TYPE_CHECKING:
    from entrepot.limits.limiter import Subject
    from entrepot.limits.redis_counters import RedisCounters


@dataclass(slots=True)
class Line:
    """One budget: the ledger's spend, Redis's (None: not in Redis, so it is seeded from the
    ledger on its next request), in nanos of `currency`."""

    who: str
    period: str
    currency: str
    ledger: int
    redis: int | None
    fixed: bool = False

    @property
    def drift(self) -> int:
        return 0 if self.redis is None else self.redis - self.ledger


def reconcile(
    fix: Annotated[
        bool, typer.Option("--fix", help="Set Redis's spend to the ledger's where they differ.")
    ] = False,
    config_path: ConfigOption = None,
    fmt: FormatOption = TABLE,
) -> None:
    """Compare each key's and team's budget spend in Redis with the ledger (exit 1 on drift)."""
    from entrepot.limits.shared import FAILURES  # here: the other commands need no Redis
    from entrepot.store.db import open_engine

    config = load(config_path)
    if config.shared.backend != "redis":
        console.print("[red]shared.backend is memory: there is no Redis to reconcile[/red]")
        raise typer.Exit(2)
    engine = open_engine(config.store)
    now = dt.datetime.now(dt.UTC)
    try:
        lines = asyncio.run(_reconcile(config, engine, now, fix))
    except FAILURES as error:
        console.print(f"[red]cannot reach Redis: {error}[/red]", highlight=False)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    _show(lines, fix, output_format(fmt))
    if any(line.drift and not line.fixed for line in lines):
        raise typer.Exit(1)


def _subjects(config: Config, engine: Engine) -> list[tuple[Subject, Budget]]:
    """Every active key with a budget, then every team with one."""
    from entrepot.limits.limiter import Subject
    from entrepot.store.keys import KeyStore

    subjects = []
    for key in KeyStore(engine).list():
        if key.limits.budget is not None:
            subjects.append((Subject(f"key:{key.id}", key.limits, key.name), key.limits.budget))
    for name, team in sorted(config.teams.items()):
        if team.limits.budget is not None:
            subjects.append((Subject(f"team:{name}", team.limits, name), team.limits.budget))
    return subjects


async def _reconcile(config: Config, engine: Engine, now: dt.datetime, fix: bool) -> list[Line]:
    from entrepot.ledger.spool import peek_every_slot, spool_directory
    from entrepot.limits.periods import budget_counter
    from entrepot.limits.redis_counters import RedisCounters
    from entrepot.store.redis import connect

    spooled = peek_every_slot(spool_directory(config.store, engine))
    client = connect(config.shared)
    counters = RedisCounters(client)
    lines = []
    try:
        for subject, budget in _subjects(config, engine):
            line = await _compare(config, engine, counters, spooled, subject, budget, now)
            if fix and line.drift:
                name = budget_counter(subject.name, budget, now)[0]
                line.fixed = await counters.set_spent(name, line.ledger) is not None
            lines.append(line)
    finally:
        await client.aclose()
    return lines


async def _compare(
    config: Config,
    engine: Engine,
    counters: RedisCounters,
    spooled: list[UsageRecord],
    subject: Subject,
    budget: Budget,
    now: dt.datetime,
) -> Line:
    from entrepot.ledger.writer import spend_of
    from entrepot.limits.periods import budget_counter
    from entrepot.store.usage import spend_since

    name, start, _ = budget_counter(subject.name, budget, now)
    kind, _, ident = subject.name.partition(":")
    key_id, team = (int(ident), None) if kind == "key" else (None, ident)
    currency, rates = budget.currency, config.currency_rates
    # Redis first, then the ledger: what settles in between shows as the ledger ahead.
    held = await counters.budget(name)
    ledger = spend_since(
        engine, since=start, currency=currency, rates=rates, key_id=key_id, team=team
    ) + spend_of(spooled, since=start, currency=currency, rates=rates, key_id=key_id, team=team)
    period = name.rsplit(":", 1)[1]
    redis = None if held is None else held[0]
    return Line(subject.who, period, currency, ledger, redis)


def _show(lines: list[Line], fix: bool, fmt: Format) -> None:
    """Each budget whole (amounts to the nano: a drift is often a few of them), then the count
    of drifted budgets and what to do; JSON and CSV carry the amounts as exact decimals."""
    if not lines and fmt == "table":
        console.print("no key or team has a budget: nothing to reconcile")
        return
    listing = Listing(
        [
            Column("subject", lambda r: r["subject"]),
            Column("period", lambda r: f"{r['period']} {r['currency']}"),
            Column("ledger", lambda r: f"{r['ledger']:.9f}", numeric=True),
            Column("redis", lambda r: "not in Redis" if r["redis"] is None else f"{r['redis']:.9f}",
                   numeric=True),
            Column("drift", lambda r: f"{r['drift']:+.9f}" if r["drift"] else "0", numeric=True),
        ],
        rows=[_row(line) for line in lines],
    )  # fmt: skip
    show(listing, console, fmt)
    if fmt != "table":
        return
    drifted = [line for line in lines if line.drift]
    summary = f"budgets: {len(lines)} checked, {len(drifted)} drifted"
    if drifted and fix:
        fixed = sum(line.fixed for line in drifted)
        summary += f", {fixed} set to the ledger's spend"
    elif drifted:
        summary += "; --fix sets Redis's spend to the ledger's"
    console.print(summary, highlight=False)


def _row(line: Line) -> Row:
    def amount(nanos: int | None) -> Decimal | None:
        return None if nanos is None else Decimal(nanos).scaleb(-9)

    return {
        "subject": line.who,
        "period": line.period,
        "currency": line.currency,
        "ledger": amount(line.ledger),
        "redis": amount(line.redis),
        "drift": amount(line.drift),
        "fixed": line.fixed,
    }
