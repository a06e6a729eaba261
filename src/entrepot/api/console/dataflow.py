"""Where data went: the share of requests and tokens by jurisdiction (where each request was
processed) and by data class (how sensitive it was), over a date range; and the requests the
egress rules kept from a deployment — denied outright, or rerouted to one the rules allow —
with the rule that fired. Rules name classes, teams, deployments and jurisdictions, never
anything a request said.

Read from the hourly rollups, like the overview.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from markupsafe import Markup
from sqlalchemy import Engine
from starlette.responses import Response

from entrepot.api.console import charts, figures
from entrepot.api.console.overview import short
from entrepot.api.console.pages import Page, PageContext
from entrepot.api.console.ranges import OTHER, Range, label, leaders, read_range
from entrepot.store.rollups import (
    Egress,
    Totals,
    collapse,
    egress_events,
    egress_series,
    series,
)

MISSING = {"jurisdiction": "(not sent)", "data_class": "(none)"}
OUTCOMES = ("denied", "rerouted")


@dataclass(frozen=True)
class Flow:
    by: str  # "jurisdiction" or "data_class"
    totals: dict[str, Totals]
    buckets: dict[str, dict[str, Totals]]

    def shares(self) -> list[tuple[str, int, float, int, float]]:
        """(name, requests, share of requests, tokens, share of tokens), largest first."""
        requests = sum(t.requests for t in self.totals.values())
        tokens = sum(t.tokens for t in self.totals.values())
        return [
            (
                label(name, MISSING[self.by]),
                t.requests,
                t.requests / requests if requests else 0.0,
                t.tokens,
                t.tokens / tokens if tokens else 0.0,
            )
            for name, t in sorted(self.totals.items(), key=lambda kv: (-kv[1].requests, kv[0]))
        ]

    def chart(self, shown: Range, title: str) -> Markup:
        """Each group's share of the requests in each bucket."""
        names = leaders(self.totals)
        buckets = shown.buckets()
        lines = []
        for group in names + ([OTHER] if len(self.totals) > len(names) else []):
            values: list[float | None] = []
            for bucket in buckets:
                found = self.buckets.get(bucket, {})
                everything = sum(t.requests for t in found.values())
                mine = _requests(found, group, names)
                values.append(mine / everything if everything else None)
            lines.append(charts.Series(label(group, MISSING[self.by]), values))
        return charts.line_chart(title, [short(b) for b in buckets], lines, figures.percent)


def _requests(found: Mapping[str, Totals], group: str, named: list[str]) -> int:
    if group == OTHER:
        return sum(t.requests for name, t in found.items() if name not in named)
    one = found.get(group)
    return one.requests if one else 0


@dataclass(frozen=True)
class Figures:
    flows: tuple[Flow, Flow]
    egress_buckets: dict[str, dict[str, int]]
    events: list[Egress]


async def gather(engine: Engine, shown: Range) -> Figures:
    """The page's queries at once, each in a thread of its own (see the overview's)."""
    window, grain = shown.window, shown.grain
    places, classes, egress_buckets, events = await asyncio.gather(
        asyncio.to_thread(series, engine, window, grain, "jurisdiction"),
        asyncio.to_thread(series, engine, window, grain, "data_class"),
        asyncio.to_thread(egress_series, engine, window, grain),
        asyncio.to_thread(egress_events, engine, window),
    )
    flows = (
        Flow("jurisdiction", collapse(places), places),
        Flow("data_class", collapse(classes), classes),
    )
    return Figures(flows, egress_buckets, events)


def egress_chart(shown: Range, buckets: dict[str, dict[str, int]]) -> Markup:
    ordered = shown.buckets()
    lines = [
        charts.Series(outcome, [buckets.get(b, {}).get(outcome, 0) for b in ordered])
        for outcome in OUTCOMES
    ]
    return charts.line_chart(
        "Requests kept from a deployment by the egress rules",
        [short(b) for b in ordered],
        lines,
        lambda value: figures.count(round(value), "requests"),
    )


async def get(ctx: PageContext) -> Response:
    shown = read_range(ctx.request.query_params)
    found = await gather(ctx.gateway.engine, shown)
    jurisdiction, data_class = found.flows
    requests = sum(t.requests for t in jurisdiction.totals.values())
    return ctx.render(
        "dataflow.html",
        shown=shown,
        problems=list(shown.problems),
        requests=requests,
        flows=[
            (
                "jurisdiction",
                "By jurisdiction",
                jurisdiction.shares(),
                jurisdiction.chart(shown, "Share of requests by jurisdiction"),
            ),
            (
                "data-class",
                "By data class",
                data_class.shares(),
                data_class.chart(shown, "Share of requests by data class"),
            ),
        ],
        egress_chart=egress_chart(shown, found.egress_buckets) if found.events else None,
        events=found.events,
    )


PAGE = Page(path="/data", title="Where data went", get=get)
