"""Inline SVG charts for the HTML report: nothing to download, nothing to load from a CDN.

Each chart has a viewBox, so it scales down to a phone's width, and keeps its labels inside the
plot: a point's name is written to its left when it sits in the right half. Axes carry ticks with
values; cost is in money, on a log scale when costs span more than ten times (a model that cost
nothing, say an unpriced local one, sits on a "0" tick left of the log range)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from html import escape

from markupsafe import Markup

from entrepot.bench.schema import ModelSummary
from entrepot.ledger.display import money

WIDTH, HEIGHT = 640, 380
LEFT, RIGHT, TOP, BOTTOM = 64, 40, 16, 56
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
SCORE_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)
ZERO_GAP = 40  # room left of a log axis for the "0" tick


def colours(models: list[ModelSummary]) -> dict[str, str]:
    """One colour per model, the same in every chart and legend of a report."""
    return {m.model: COLOURS[i % len(COLOURS)] for i, m in enumerate(models)}


def _y(score: float) -> float:
    return HEIGHT - BOTTOM - score * (HEIGHT - TOP - BOTTOM)


def _cost_axis(costs: list[float]) -> tuple[Callable[[float], float], list[float], bool]:
    """(position of a cost, the ticks, whether the axis is logarithmic)."""
    positive = [c for c in costs if c > 0]
    left, right = LEFT, WIDTH - RIGHT
    if positive and max(positive) / min(positive) > 10:
        low = 10.0 ** math.floor(math.log10(min(positive)))
        high = 10.0 ** math.ceil(math.log10(max(positive)))
        start = left + (ZERO_GAP if len(positive) < len(costs) else 0)

        def log_x(cost: float) -> float:
            if cost <= 0:
                return left
            share = (math.log10(cost) - math.log10(low)) / (math.log10(high) - math.log10(low))
            return start + share * (right - start)

        decades = round(math.log10(high / low))
        ticks = [low * 10**k for k in range(decades + 1)]
        return log_x, ([0.0] if start > left else []) + ticks, True
    step = _nice_step(max(costs, default=0.0) / 4) if any(costs) else 1.0
    top = step * max(1, math.ceil(max(costs, default=0.0) / step))
    ticks = [step * k for k in range(round(top / step) + 1)]
    return (lambda cost: left + cost / top * (right - left)), ticks, False


def _tick_text(value: float, currency: str) -> str:
    """A tick's amount without the trailing zeros money keeps for precision ("$0.001")."""
    text = money(value, currency)
    return re.sub(r"\.?0+(?=\D*$)", "", text) if "." in text else text


def _nice_step(raw: float) -> float:
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def scatter_svg(models: list[ModelSummary]) -> Markup:
    """Cost per item against score with its 95% interval as whiskers; the Pareto frontier (no
    other model both cheaper and better) joined by a line. Models without a score (every call
    failed) are left out."""
    palette = colours(models)
    scored = [(m, m.score) for m in models if m.score is not None]
    currency = scored[0][0].currency if scored else "USD"
    x, ticks, log = _cost_axis([m.cost_per_item for m, _ in scored])
    parts = [_score_axis(), _axis_line()]
    for tick in ticks:
        parts.append(
            f'<line class="tick" x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{HEIGHT - BOTTOM}"'
            f' y2="{HEIGHT - BOTTOM + 5}" stroke="#333"/><text x="{x(tick):.1f}"'
            f' y="{HEIGHT - BOTTOM + 18}" font-size="11" text-anchor="middle">'
            f"{escape(_tick_text(tick, currency))}</text>"
        )
    label = f"cost per item ({'log scale, ' if log else ''}{currency})"
    parts.append(
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 14}" font-size="12"'
        f' text-anchor="middle">{escape(label)}</text>'
    )
    frontier = sorted((p for p in scored if p[0].on_frontier), key=lambda p: p[0].cost_per_item)
    if len(frontier) > 1:
        points = " ".join(f"{x(m.cost_per_item):.1f},{_y(s.estimate):.1f}" for m, s in frontier)
        parts.append(
            f'<polyline class="frontier" points="{points}" fill="none" stroke="#555"'
            f' stroke-width="1.5" stroke-dasharray="6 3"/>'
        )
    for m, score in scored:
        cx, cy, colour = x(m.cost_per_item), _y(score.estimate), palette[m.model]
        right_half = cx > (LEFT + WIDTH - RIGHT) / 2
        anchor, dx = ("end", -10) if right_half else ("start", 10)
        ty = min(max(cy - 6, TOP + 10), HEIGHT - BOTTOM - 4)
        tip = (
            f"{m.model}: score {score.estimate:.3f} ({score.low:.3f}–{score.high:.3f}),"
            f" {money(m.cost_per_item, m.currency)} per item"
        )
        parts.append(
            f'<g class="point"><title>{escape(tip)}</title><line x1="{cx:.1f}" x2="{cx:.1f}"'
            f' y1="{_y(score.low):.1f}" y2="{_y(score.high):.1f}" stroke="{colour}"'
            f' stroke-width="2"/><circle cx="{cx:.1f}" cy="{cy:.1f}"'
            f' r="{7 if m.on_frontier else 5}" fill="{colour}"/><text x="{cx + dx:.1f}"'
            f' y="{ty:.1f}" font-size="12" text-anchor="{anchor}">{escape(m.model)}</text></g>'
        )
    return _svg(parts, "Score against cost per item")


def task_bars_svg(models: list[ModelSummary]) -> Markup:
    """Each task's mean score per model, bars in the models' colours."""
    tasks = sorted({t for m in models for t in m.per_task})
    if not tasks:
        return Markup("")
    palette = colours(models)
    group = (WIDTH - LEFT - RIGHT) / len(tasks)
    bar = group * 0.8 / max(len(models), 1)
    parts = [_score_axis(), _axis_line()]
    for t_index, task in enumerate(tasks):
        left = LEFT + t_index * group + group * 0.1
        parts.append(
            f'<text x="{left + group * 0.4:.1f}" y="{HEIGHT - BOTTOM + 18}" font-size="11"'
            f' text-anchor="middle">{escape(task)}</text>'
        )
        for m_index, m in enumerate(models):
            interval = m.per_task.get(task)
            if interval is None:
                continue
            top = _y(interval.estimate)
            parts.append(
                f'<rect x="{left + m_index * bar:.1f}" y="{top:.1f}" width="{bar * 0.9:.1f}"'
                f' height="{HEIGHT - BOTTOM - top:.1f}" fill="{palette[m.model]}">'
                f"<title>{escape(m.model)} on {escape(task)}: {interval.estimate:.3f}"
                f" ({interval.low:.3f}–{interval.high:.3f})</title></rect>"
            )
    return _svg(parts, "Score by task and model")


def _axis_line() -> str:
    bottom = HEIGHT - BOTTOM
    return (
        f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" stroke="#333"/>'
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="#333"/>'
    )


def _score_axis() -> str:
    """Score ticks with light grid lines, and the axis name written upwards."""
    parts = []
    for tick in SCORE_TICKS:
        y = _y(tick)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{LEFT - 8}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"{tick:.2f}</text>"
        )
    middle = (TOP + HEIGHT - BOTTOM) / 2
    parts.append(
        f'<text x="16" y="{middle}" font-size="12" text-anchor="middle"'
        f' transform="rotate(-90 16 {middle})">score</text>'
    )
    return "".join(parts)


def _svg(parts: list[str], title: str) -> Markup:
    body = "".join(parts)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">{body}</svg>'
    )
