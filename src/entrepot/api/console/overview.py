"""Overview: requests, tokens, spend and errors over a date range, by hour, day or month, split
by model, key, team or endpoint; latency (p50, p95) and time to first token per model; the keys
with the most requests.

Everything is read from the hourly rollups (`store/rollups.py`), so the page costs the same
however large the ledger is. Spend is drawn in the currency most is spent in; other currencies
are listed beside it, never converted silently.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from markupsafe import Markup
from sqlalchemy import Engine
from starlette.responses import Response

from entrepot.api.console import charts, figures
from entrepot.api.console.pages import Page, PageContext
from entrepot.api.console.ranges import (
    OTHER,
    Range,
    amount,
    choice,
    label,
    leaders,
    main_currency,
    read_range,
)
from entrepot.store.rollups import (
    Latency,
    Split,
    Totals,
    collapse,
    latency_by_model,
    series,
    totals_by,
)

SPLITS = ("model", "key", "team", "endpoint")
MISSING = {"model": "(no model)", "key": "(no key)", "team": "(no team)", "endpoint": "–"}
TOP_KEYS = 10


@dataclass(frozen=True)
class Figures:
    buckets: dict[str, dict[str, Totals]]
    groups: dict[str, Totals]
    keys: dict[str, Totals]
    latency: list[Latency]


async def gather(engine: Engine, shown: Range, split: Split) -> Figures:
    """The page's queries at once, each in a thread of its own: SQLite and PostgreSQL run them
    side by side (a month of hourly rows takes a few hundred milliseconds per query)."""
    window = shown.window
    buckets, keys, latency = await asyncio.gather(
        asyncio.to_thread(series, engine, window, shown.grain, split),
        asyncio.to_thread(totals_by, engine, window, "key"),
        asyncio.to_thread(latency_by_model, engine, window),
    )
    return Figures(buckets=buckets, groups=collapse(buckets), keys=keys, latency=latency)


def overall(groups: Mapping[str, Totals]) -> Totals:
    total = Totals()
    for one in groups.values():
        total.merge(one)
    return total


def time_charts(shown: Range, found: Figures, split: str, currency: str | None) -> list[Markup]:
    """Requests, tokens, spend and errors per bucket, one line per leading group."""
    names = leaders(found.groups)
    rest = [name for name in found.groups if name not in names]
    buckets = shown.buckets()
    x_labels = [short(bucket) for bucket in buckets]

    def lines(measure: Callable[[Totals], float]) -> list[charts.Series]:
        out = []
        for group in names + ([OTHER] if rest else []):
            members = rest if group == OTHER else [group]
            values = [
                sum(measure(t) for m in members if (t := found.buckets.get(b, {}).get(m)))
                for b in buckets
            ]
            out.append(charts.Series(label(group, MISSING[split]), values))
        return out

    drawn = [
        charts.line_chart("Requests", x_labels, lines(lambda t: t.requests), _count("requests")),
        charts.line_chart("Tokens", x_labels, lines(lambda t: t.tokens), _count("tokens")),
        charts.line_chart("Errors", x_labels, lines(lambda t: t.errors), _count("errors")),
    ]
    if currency is not None:
        spend = lines(lambda t: float(amount(t, currency)))
        drawn.insert(2, charts.line_chart(f"Spend ({currency})", x_labels, spend, _money(currency)))
    return drawn


def short(bucket: str) -> str:
    """An axis label: "11-30 17h" for an hour, "11-30" for a day, "2026-11" for a month."""
    if len(bucket) == 13:
        return f"{bucket[5:10]} {bucket[11:]}h"
    return bucket[5:] if len(bucket) == 10 else bucket


def _count(unit: str) -> Callable[[float], str]:
    return lambda value: figures.count(round(value), unit if value != 1 else unit.rstrip("s"))


def _money(currency: str) -> Callable[[float], str]:
    return lambda value: figures.money(Decimal(str(value)), currency)


def latency_text(ms: float | None) -> str:
    """A quantile past the histogram's last bound is only known to be larger than it."""
    if ms is not None and math.isinf(ms):
        return "> 60 s"
    return figures.latency(ms)


async def get(ctx: PageContext) -> Response:
    query = ctx.request.query_params
    shown = read_range(query)
    problems = list(shown.problems)
    split = choice(query, "split", SPLITS, problems)
    found = await gather(ctx.gateway.engine, shown, split)  # type: ignore[arg-type]
    currency = main_currency(found.groups)
    top_keys = sorted(found.keys.items(), key=lambda kv: (-kv[1].requests, kv[0]))[:TOP_KEYS]
    return ctx.render(
        "overview.html",
        shown=shown,
        problems=problems,
        split=split,
        splits=SPLITS,
        missing=MISSING[split],
        total=overall(found.groups),
        groups=sorted(found.groups.items(), key=lambda kv: (-kv[1].requests, kv[0])),
        charts=time_charts(shown, found, split, currency),
        latency=found.latency,
        latency_text=latency_text,
        top_keys=top_keys,
        amount=amount,
    )


PAGE = Page(path="/overview", title="Overview", get=get)
