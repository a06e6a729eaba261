"""Evaluations: the bench runs published to the store (the evidence `good_enough` routes choose
by), the shadow comparisons graded on live traffic, and the bench, audit and shadow runs in
`server.reports_dir` — each with its headline and interval, its report page one click away —
and quality against cost across every bench run, on one chart.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from pathlib import Path

from markupsafe import Markup, escape
from starlette.responses import FileResponse, Response

from entrepot.api.console import charts, figures
from entrepot.api.console.pages import Page, PageContext
from entrepot.api.console.reports import REPORT_HEADERS, Point, report_html, runs
from entrepot.ledger.pricing import nanos_to_amount
from entrepot.store.evaluations import BenchRun, bench_runs, shadow_summaries

W, H = charts.WIDTH, charts.HEIGHT
LEFT, RIGHT, TOP, BOTTOM = charts.LEFT, charts.RIGHT, charts.TOP, charts.BOTTOM


def store_points(found: Sequence[BenchRun]) -> list[Point]:
    """The published runs' rows as chart points (a model's score on a task, and its cost)."""
    points = []
    for run in found:
        for row in run.rows:
            cost = row.cost_per_item_nanos
            points.append(
                Point(
                    f"{row.task} ({run.published_at:%Y-%m-%d})",
                    row.model_alias,
                    row.score,
                    row.score_low,
                    row.score_high,
                    None if cost is None else float(nanos_to_amount(cost)),
                    row.currency,
                )
            )
    return points


def quality_cost_chart(points: Sequence[Point]) -> Markup | None:
    """Score (with its interval) against cost per item on a log axis, one colour per model:
    a cheap model good enough for a task sits up and to the left. Points without a cost in the
    chart's currency are left out (and said so under it)."""
    priced = [p for p in points if p.cost_per_item and p.cost_per_item > 0]
    if not priced:
        return None
    currencies = [p.currency for p in priced if p.currency]
    if not currencies:
        return None
    currency = max(set(currencies), key=currencies.count)
    priced = [p for p in priced if p.currency == currency]
    low = math.floor(math.log10(min(p.cost_per_item or 1 for p in priced)))
    high = max(math.ceil(math.log10(max(p.cost_per_item or 1 for p in priced))), low + 1)
    models = sorted({p.model for p in priced})

    def x(cost: float) -> float:
        return LEFT + (W - LEFT - RIGHT) * (math.log10(cost) - low) / (high - low)

    def y(score: float) -> float:
        return TOP + (H - TOP - BOTTOM) * (1 - score)

    label = f"Quality against cost per item ({currency}, log scale), every bench run"
    parts = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(label)}"'
        f' xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>'
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"'
            f' stroke="#e5e7eb"/><text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end"'
            f' font-size="11" fill="#374151">{figures.percent(tick)}</text>'
        )
    for power in range(low, high + 1):
        cost = 10.0**power
        parts.append(
            f'<text x="{x(cost):.1f}" y="{H - BOTTOM + 16}" font-size="11" text-anchor="middle"'
            f' fill="#374151">{escape(figures.money(cost, currency))}</text>'
        )
    for p in priced:
        colour = charts.PALETTE[models.index(p.model) % len(charts.PALETTE)]
        cx, tip = x(p.cost_per_item or 1), f"{p.model}, {p.run}: {figures.percent(p.score)}"
        parts.append(
            f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(p.low):.1f}" y2="{y(p.high):.1f}"'
            f' stroke="{colour}"/><circle cx="{cx:.1f}" cy="{y(p.score):.1f}" r="4"'
            f' fill="{colour}"><title>{escape(tip)}</title></circle>'
        )
    parts.append("</svg>")
    return Markup("".join(parts)) + charts._legend(models)


async def get(ctx: PageContext) -> Response:
    directory = ctx.gateway.config.server.reports_dir
    folder = Path(directory) if directory else None
    wanted = ctx.request.query_params.get("open")
    if wanted and folder is not None:
        page = await asyncio.to_thread(report_html, folder, wanted)
        if page is not None:
            return FileResponse(page, media_type="text/html", headers=REPORT_HEADERS)
    engine = ctx.gateway.engine
    published = await asyncio.to_thread(bench_runs, engine)
    shadows = await asyncio.to_thread(shadow_summaries, engine)
    listed = await asyncio.to_thread(runs, folder) if folder is not None else []
    points = store_points(published) + [p for run in listed for p in run.points]
    return ctx.render(
        "evaluations.html",
        status=404 if wanted else 200,
        missing=wanted,
        published=published,
        shadows=shadows,
        listed=listed,
        folder=directory,
        chart=quality_cost_chart(points),
        amount=nanos_to_amount,
    )


PAGE = Page(path="/evaluations", title="Evaluations", get=get)
