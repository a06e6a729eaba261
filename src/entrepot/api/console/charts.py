"""Charts as inline SVG drawn on the server: nothing to vendor, load or run in the browser, and
a chart reads the same air-gapped. Each is an accessible image (`role="img"` and a label) with
its values on the axis, and scales to the width of its container (phones included).

Colours are presentation attributes, not `style=`: the console's CSP forbids inline styles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 72, 16, 16, 40
MAX_BAR = 64
PALETTE = ("#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#65a30d", "#db2777")
Formatter = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]  # one per x label; None: no value there


def _ticks(values: Sequence[float], count: int = 4) -> list[float]:
    """Round tick values from 0 to at least the largest value (1, 2 or 5 times a power of ten
    apart); whole numbers apart when the values are counts, so no "0.5 requests"."""
    top = max(values, default=0.0)
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    if all(float(v).is_integer() for v in values):
        raw = max(raw, 1.0)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [step * i for i in range(math.ceil(top / step - 1e-9) + 1)]


def _frame(label: str, ticks: list[float], fmt: Formatter, x_labels: Sequence[str]) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
    ]
    for tick in ticks:
        y = TOP + plot_h * (1 - tick / ticks[-1])
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11"'
            f' fill="#374151">{escape(fmt(tick))}</text>'
        )
    step = max(1, math.ceil(len(x_labels) / 8))  # at most about eight labels under the axis
    for i in range(0, len(x_labels), step):
        parts.append(
            f'<text x="{_x(i, len(x_labels)):.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11"'
            f' text-anchor="middle" fill="#374151">{escape(x_labels[i])}</text>'
        )
    return parts


def _x(i: int, n: int) -> float:
    plot_w = WIDTH - LEFT - RIGHT
    return LEFT + plot_w * ((i + 0.5) / n)


def _y(value: float, top: float) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - value / top)


def _legend(names: Sequence[str]) -> str:
    items = "".join(
        f'<li><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12"'
        f' fill="{PALETTE[i % len(PALETTE)]}"/></svg> {escape(name)}</li>'
        for i, name in enumerate(names)
    )
    return f'<ul class="legend">{items}</ul>'


def line_chart(
    label: str, x_labels: Sequence[str], series: Sequence[Series], fmt: Formatter
) -> Markup:
    """One line per series over shared x labels (hours, days…); `fmt` writes the y values
    with their unit (one of `figures.py`'s functions)."""
    ticks = _ticks([v for s in series for v in s.values if v is not None])
    parts = _frame(label, ticks, fmt, x_labels)
    n = max(len(x_labels), 1)
    for index, one in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        points = [(_x(i, n), _y(v, ticks[-1])) for i, v in enumerate(one.values) if v is not None]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.extend(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>' for x, y in points
        )
    parts.append("</svg>")
    legend = _legend([s.name for s in series]) if len(series) > 1 else ""
    return Markup("".join(parts) + legend)


def bar_chart(label: str, bars: Sequence[tuple[str, float]], fmt: Formatter) -> Markup:
    """One bar per (label, value), its value written above it."""
    ticks = _ticks([v for _, v in bars])
    names = [name for name, _ in bars]
    parts = _frame(label, ticks, fmt, names)
    n = max(len(bars), 1)
    width = min((WIDTH - LEFT - RIGHT) / n * 0.7, MAX_BAR)
    for i, (_, value) in enumerate(bars):
        x, y = _x(i, n) - width / 2, _y(value, ticks[-1])
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{HEIGHT - BOTTOM - y:.1f}"'
            f' fill="{PALETTE[0]}"><title>{escape(fmt(value))}</title></rect>'
            f'<text x="{x + width / 2:.1f}" y="{y - 4:.1f}" font-size="11" text-anchor="middle"'
            f' fill="#111827">{escape(fmt(value))}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
