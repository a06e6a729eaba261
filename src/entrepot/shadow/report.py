"""The live verdicts of the routes' shadows, from the graded pairs in the store: one per route,
task, incumbent and candidate, as text (80 columns), JSON and an offline HTML certificate.
Aggregates only — no request or answer ever reaches a report."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

from sqlalchemy import Engine

from entrepot.config import Config, ShadowConfig
from entrepot.shadow import pairs
from entrepot.shadow.sequential import Verdict, verdict
from entrepot.types import JSON

ALPHA = 0.05
DEFAULT_MARGIN = ShadowConfig.model_fields["margin"].default


@dataclass(frozen=True, slots=True)
class RouteVerdict:
    route: str
    task: str | None
    incumbent: str
    candidate: str
    verdict: Verdict
    cost_ratio: float | None  # the candidate's cost over the incumbent's, on the graded pairs
    grading_cost_nanos: int
    currency: str | None
    price_date: str | None
    graded_by: str | None

    def sentence(self) -> str:
        """The certificate's one sentence."""
        v, task = self.verdict, f"task `{self.task}`" if self.task else "no named task"
        points = f"{v.margin * 100:g} points"
        confidence = f"{(1 - v.alpha) * 100:g}% confidence"
        requests = f"{v.n:,} live request{'s' if v.n != 1 else ''} of {task}"
        if v.state == "non-inferior":
            claim = f"{self.candidate} is non-inferior to {self.incumbent} within {points}"
        elif v.state == "inferior":
            claim = f"{self.candidate} is inferior to {self.incumbent} by more than {points}"
        else:
            claim = f"undecided whether {self.candidate} is within {points} of {self.incumbent}"
        return f"{claim} at {confidence} on {requests}{self._saving()}"

    def _saving(self) -> str:
        if self.cost_ratio is None or self.cost_ratio <= 0:
            return ""
        dated = f", prices of {self.price_date}" if self.price_date else ""
        if self.cost_ratio >= 1:
            return f", at {self.cost_ratio:.2g}x the cost{dated}"
        shown = (
            f"1/{round(1 / self.cost_ratio)}"
            if self.cost_ratio < 0.5
            else f"{self.cost_ratio:.2f}x"
        )
        return f", at {shown} of the cost{dated}"

    def as_json(self) -> JSON:
        v = self.verdict
        return {
            "route": self.route,
            "task": self.task,
            "incumbent": self.incumbent,
            "candidate": self.candidate,
            "verdict": v.state,
            "requests": v.n,
            "margin": v.margin,
            "confidence": 1 - v.alpha,
            "mean_difference": v.mean,
            "difference_low": v.low,
            "difference_high": v.high,
            "cost_ratio": self.cost_ratio,
            "grading_cost_nanos": self.grading_cost_nanos,
            "currency": self.currency,
            "price_date": self.price_date,
            "graded_by": self.graded_by,
            "statement": self.sentence(),
        }


def verdicts(engine: Engine, config: Config, route: str | None = None) -> list[RouteVerdict]:
    """One verdict per (route, task, incumbent, candidate) with graded pairs, at the margin the
    route's shadow has now (the default margin for a route no longer configured)."""
    found = []
    by_group = groupby(
        sorted(
            pairs.graded(engine, route),
            key=lambda g: (g.route, g.task or "", g.incumbent, g.candidate),
        ),
        key=lambda g: (g.route, g.task, g.incumbent, g.candidate),
    )
    for (name, task, incumbent, candidate), rows in by_group:
        graded = list(rows)  # sorted() is stable: still in the order observed
        shadow = config.routes[name].shadow if name in config.routes else None
        margin = shadow.margin if shadow is not None else DEFAULT_MARGIN
        found.append(
            RouteVerdict(
                name,
                task,
                incumbent,
                candidate,
                verdict([g.difference for g in graded], margin, ALPHA),
                _ratio(graded),
                sum(g.grading_cost_nanos or 0 for g in graded),
                graded[-1].currency,
                max((g.price_date for g in graded if g.price_date), default=None),
                graded[-1].graded_by,
            )
        )
    return found


def _ratio(graded: Sequence[pairs.Graded]) -> float | None:
    """Candidate over incumbent cost, on the pairs where both are known in one currency."""
    priced = [
        g
        for g in graded
        if g.incumbent_cost_nanos is not None and g.candidate_cost_nanos is not None
    ]
    incumbent = sum(g.incumbent_cost_nanos or 0 for g in priced)
    candidate = sum(g.candidate_cost_nanos or 0 for g in priced)
    return candidate / incumbent if incumbent > 0 else None


def text(found: Sequence[RouteVerdict], outcomes: dict[tuple[str, str], int]) -> str:
    """The verdicts for a terminal of 80 columns, then what became of every copy."""
    if not found:
        lines = ["No graded shadow pairs yet."]
    else:
        lines = []
        for item in found:
            v = item.verdict
            head = f"{item.route}: {item.candidate} vs {item.incumbent} — {v.state.upper()}"
            lines += [*_wrapped(head, ""), *_wrapped(item.sentence(), "  ")]
            lines.append(
                f"  n={v.n}  mean difference {v.mean:+.3f}  "
                f"{(1 - v.alpha) * 100:g}% sequence [{v.low:+.3f}, {v.high:+.3f}]  "
                f"margin -{v.margin:g}"
            )
    for name in sorted({r for r, _ in outcomes}):
        counts = ", ".join(
            f"{s} {outcomes[(name, s)]}" for s in pairs.STATUSES if (name, s) in outcomes
        )
        lines += _wrapped(f"copies of {name}: {counts}", "")
    return "\n".join(lines)


def _wrapped(sentence: str, indent: str, width: int = 80) -> list[str]:
    lines, current = [], indent
    for word in sentence.split():
        if len(current) + len(word) + 1 > width and current.strip():
            lines.append(current.rstrip())
            current = indent
        current += word + " "
    lines.append(current.rstrip())
    return lines


def document(found: Sequence[RouteVerdict], outcomes: dict[tuple[str, str], int]) -> JSON:
    return {
        "verdicts": [item.as_json() for item in found],
        "copies": [
            {"route": name, "status": status, "count": count}
            for (name, status), count in sorted(outcomes.items())
        ],
        "method": (
            "anytime-valid confidence sequence (hedged capital, Waudby-Smith & Ramdas 2024) on"
            " the candidate-minus-incumbent score difference"
        ),
    }


def certificate(found: Sequence[RouteVerdict]) -> str:
    """A self-contained HTML page: the sentence and numbers of each verdict, nothing else."""
    sections = []
    for item in found:
        v = item.verdict
        rows = [
            ("verdict", v.state),
            ("live requests graded", f"{v.n:,}"),
            ("mean difference (candidate − incumbent)", f"{v.mean:+.3f}"),
            (f"{(1 - v.alpha) * 100:g}% confidence sequence", f"[{v.low:+.3f}, {v.high:+.3f}]"),
            ("margin δ", f"{v.margin:g}"),
            ("cost ratio", f"{item.cost_ratio:.4f}" if item.cost_ratio is not None else "unknown"),
            ("prices of", item.price_date or "unknown"),
            ("graded by", item.graded_by or "unknown"),
        ]
        cells = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(val)}</td></tr>" for k, val in rows
        )
        sections.append(
            f"<section><h2>{html.escape(item.route)}</h2>"
            f"<p class=claim>{html.escape(item.sentence())}.</p><table>{cells}</table></section>"
        )
    body = "".join(sections) or "<p>No graded shadow pairs yet.</p>"
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>Entrepôt shadow certificate"
        "</title><style>body{font-family:sans-serif;max-width:50em;margin:2em auto}"
        ".claim{font-size:1.2em}th{text-align:left;padding-right:1em}</style></head><body>"
        "<h1>Shadow verification on live traffic</h1>"
        f"{body}<p><small>Anytime-valid confidence sequence (hedged capital process, "
        "Waudby-Smith &amp; Ramdas, JRSS B 2024): valid however often it is read. Pairs judged "
        "in both orders; a disagreement counts as a tie.</small></p></body></html>"
    )
