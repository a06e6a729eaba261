"""Inline SVG charts for the HTML report: nothing to download, nothing to load from a CDN."""

from __future__ import annotations

import math
from html import escape

from markupsafe import Markup

from entrepot.bench.schema import ModelSummary

WIDTH, HEIGHT, PAD = 640, 360, 56
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def scatter_svg(models: list[ModelSummary]) -> Markup:
    """Cost per item (log scale when costs span more than 10×) against score with CI whiskers;
    the frontier is joined by a line. Models without a score (every call failed) are left out."""
    scored = [(m, m.score) for m in models if m.score is not None]
    costs = [m.cost_per_item for m, _ in scored]
    positive = [c for c in costs if c > 0]
    log = bool(positive) and max(positive) / min(positive) > 10
    low = min(positive) if positive else 0.0
    high = max(costs) if costs else 1.0

    def x(cost: float) -> float:
        if log:
            span = math.log10(high) - math.log10(low) or 1.0
            value = (math.log10(max(cost, low)) - math.log10(low)) / span
        else:
            value = cost / high if high else 0.5
        return PAD + value * (WIDTH - 2 * PAD)

    def y(score: float) -> float:
        return HEIGHT - PAD - score * (HEIGHT - 2 * PAD)

    parts = [_axes(f"cost per item{' (log)' if log else ''}", "score")]
    frontier = sorted((p for p in scored if p[0].on_frontier), key=lambda p: p[0].cost_per_item)
    if len(frontier) > 1:
        points = " ".join(f"{x(m.cost_per_item):.1f},{y(s.estimate):.1f}" for m, s in frontier)
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="#999" stroke-dasharray="4"/>'
        )
    for i, (m, score) in enumerate(scored):
        cx, colour = x(m.cost_per_item), COLOURS[i % len(COLOURS)]
        parts.append(
            f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(score.low):.1f}"'
            f' y2="{y(score.high):.1f}" stroke="{colour}"/>'
            f'<circle cx="{cx:.1f}" cy="{y(score.estimate):.1f}" r="{7 if m.on_frontier else 5}"'
            f' fill="{colour}"/><text x="{cx + 9:.1f}" y="{y(score.estimate) - 6:.1f}"'
            f' font-size="12">{escape(m.model)}</text>'
        )
    return _svg(parts)


def task_bars_svg(models: list[ModelSummary]) -> Markup:
    tasks = sorted({t for m in models for t in m.per_task})
    if not tasks:
        return Markup("")
    group = (WIDTH - 2 * PAD) / len(tasks)
    bar = group * 0.8 / max(len(models), 1)
    parts = [_axes("task", "score")]
    for t_index, task in enumerate(tasks):
        left = PAD + t_index * group + group * 0.1
        parts.append(
            f'<text x="{left:.1f}" y="{HEIGHT - PAD + 16}" font-size="11">{escape(task)}</text>'
        )
        for m_index, m in enumerate(models):
            interval = m.per_task.get(task)
            if interval is None:
                continue
            top = HEIGHT - PAD - interval.estimate * (HEIGHT - 2 * PAD)
            parts.append(
                f'<rect x="{left + m_index * bar:.1f}" y="{top:.1f}" width="{bar * 0.9:.1f}"'
                f' height="{HEIGHT - PAD - top:.1f}" fill="{COLOURS[m_index % len(COLOURS)]}">'
                f"<title>{escape(m.model)}: {interval.estimate:.3f}</title></rect>"
            )
    return _svg(parts)


def _axes(x_label: str, y_label: str) -> str:
    bottom = HEIGHT - PAD
    return (
        f'<line x1="{PAD}" y1="{bottom}" x2="{WIDTH - PAD}" y2="{bottom}" stroke="#333"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{bottom}" stroke="#333"/>'
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 12}" font-size="12">{escape(x_label)}</text>'
        f'<text x="12" y="{HEIGHT / 2}" font-size="12">{escape(y_label)}</text>'
        f'<text x="{PAD - 24}" y="{PAD + 4}" font-size="10">1.0</text>'
        f'<text x="{PAD - 24}" y="{bottom + 4}" font-size="10">0.0</text>'
    )


def _svg(parts: list[str]) -> Markup:
    body = "".join(parts)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}"'
        f' role="img">{body}</svg>'
    )
