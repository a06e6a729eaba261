"""The runs in `server.reports_dir`: each folder holding a `report.json` written by
`entrepot bench` or `entrepot audit` (or a shadow report saved as one, with its certificate as
`report.html`), read for its headline and intervals, and its `report.html` served as it is.

A report is opened by its folder's name, looked up among the folders listed: no path from the
request is ever joined to the directory. Its page keeps its own inline style and script, so it is
served with a policy that allows those and still loads nothing from anywhere.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from entrepot.api.console.figures import percent

REPORT_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline';"
        " img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}
MOST_LINES = 8


@dataclass(frozen=True)
class Point:
    """One model in one run, for the quality-vs-cost chart."""

    run: str
    model: str
    score: float
    low: float
    high: float
    cost_per_item: float | None
    currency: str | None


@dataclass(frozen=True)
class Run:
    name: str  # the folder's name
    kind: str  # bench, audit or shadow
    created_at: dt.datetime | None
    lines: list[str]  # the headline(s), each with its interval
    has_html: bool
    points: list[Point] = field(default_factory=list)
    problem: str | None = None


def runs(directory: Path) -> list[Run]:
    """Every run folder, newest first; an unreadable report is listed with what is wrong."""
    if not directory.is_dir():
        return []
    found = [
        read_run(folder)
        for folder in directory.iterdir()
        if folder.is_dir() and (folder / "report.json").is_file()
    ]
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(found, key=lambda run: (run.created_at or oldest, run.name), reverse=True)


def report_html(directory: Path, name: str) -> Path | None:
    """The report page of the run folder called `name`, if there is one."""
    for run in runs(directory):
        if run.name == name and run.has_html:
            return directory / run.name / "report.html"
    return None


def read_run(folder: Path) -> Run:
    has_html = (folder / "report.html").is_file()
    try:
        document = orjson.loads((folder / "report.json").read_bytes())
        kind, lines, points = _summary(folder.name, document)
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        problem = f"report.json cannot be read ({type(error).__name__}: {error})"
        return Run(folder.name, "unknown", None, [], has_html, problem=problem)
    return Run(folder.name, kind, _created(document), lines[:MOST_LINES], has_html, points)


def _created(document: dict[str, Any]) -> dt.datetime | None:
    text = document.get("created_at")
    if not isinstance(text, str):
        return None
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _summary(name: str, document: dict[str, Any]) -> tuple[str, list[str], list[Point]]:
    if "comparisons" in document:
        return "bench", *_bench(name, document)
    if "packs" in document:
        return "audit", _audit(document), []
    if "verdicts" in document:
        return "shadow", [v["statement"] + _interval(v) for v in document["verdicts"]], []
    raise ValueError("neither a bench, an audit nor a shadow report")


def _bench(name: str, document: dict[str, Any]) -> tuple[list[str], list[Point]]:
    lines = [c["headline"] for c in document["comparisons"]]
    points = []
    for model in document["models"]:
        score = model["score"]
        if score is None or score.get("estimate") is None:
            continue
        lines.append(
            f"{model['model']}: score {_pct(score['estimate'])}"
            f" (95% interval {_pct(score['low'])}–{_pct(score['high'])})"
            f" on {model['items']:,} items"
        )
        points.append(
            Point(
                name,
                model["model"],
                score["estimate"],
                score["low"],
                score["high"],
                model.get("cost_per_item"),
                model.get("currency"),
            )
        )
    return lines, points


def _audit(document: dict[str, Any]) -> list[str]:
    """Per model, pack and language: how often the model refused, with its interval."""
    lines = []
    for row in document["jurisdictions"]:
        refused = row["rates"]["refused"]
        lines.append(
            f"{row['model']} on {row['pack']} ({row['language']}): refused"
            f" {_pct(refused['estimate'])} (95% interval {_pct(refused['low'])}–"
            f"{_pct(refused['high'])}) of {row['n']:,} probes"
        )
    return lines


def _interval(verdict: dict[str, Any]) -> str:
    low, high = verdict.get("difference_low"), verdict.get("difference_high")
    if low is None or high is None:
        return ""
    return f" (difference {low * 100:+.1f} to {high * 100:+.1f} points)"


def _pct(share: float) -> str:
    return percent(share, 2)
