"""The pairs a route's shadow compares, in the store (`shadow_pairs`), and the spend of its
budget line in the ledger.

Answers are kept only for the route's retention period: `purge` sets them to NULL after it,
and keeps everything a verdict is made of (the grade, the costs), which is all a report reads.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from sqlalchemy import Engine, func, insert, select, update

from entrepot.config import CurrencyRates
from entrepot.store.tables import shadow_pairs, usage_records

STATUSES = ("graded", "ungraded", "ineligible", "over_budget", "failed")


@dataclass(slots=True)
class Pair:
    """One original request and what became of its copy; `status` is one of `STATUSES`."""

    request_id: str
    created_at: dt.datetime
    route: str
    task: str | None
    incumbent: str
    candidate: str
    status: str
    copy_id: str | None = None
    incumbent_answer: str | None = None
    candidate_answer: str | None = None
    incumbent_cost_nanos: int | None = None
    candidate_cost_nanos: int | None = None
    grading_cost_nanos: int | None = None
    currency: str | None = None
    price_date: str | None = None
    graded_by: str | None = None
    difference: float | None = None


@dataclass(frozen=True, slots=True)
class Graded:
    """What a report reads of a graded pair: no answers."""

    route: str
    task: str | None
    incumbent: str
    candidate: str
    difference: float
    incumbent_cost_nanos: int | None
    candidate_cost_nanos: int | None
    grading_cost_nanos: int | None
    currency: str | None
    price_date: str | None
    graded_by: str | None


def save(engine: Engine, pair: Pair) -> None:
    with engine.begin() as conn:
        conn.execute(insert(shadow_pairs), [asdict(pair)])


def purge(engine: Engine, route: str, retention_days: int, now: dt.datetime) -> int:
    """Forget the answers of `route`'s pairs older than its retention; how many rows changed."""
    cutoff = now - dt.timedelta(days=retention_days)
    t = shadow_pairs
    with engine.begin() as conn:
        result = conn.execute(
            update(t)
            .where(t.c.route == route, t.c.created_at < cutoff)
            .where(t.c.incumbent_answer.is_not(None) | t.c.candidate_answer.is_not(None))
            .values(incumbent_answer=None, candidate_answer=None)
        )
    return int(result.rowcount)


def graded(engine: Engine, route: str | None = None) -> list[Graded]:
    """Every graded pair (of one route, or all), in the order it was observed."""
    t = shadow_pairs
    query = select(
        t.c.route,
        t.c.task,
        t.c.incumbent,
        t.c.candidate,
        t.c.difference,
        t.c.incumbent_cost_nanos,
        t.c.candidate_cost_nanos,
        t.c.grading_cost_nanos,
        t.c.currency,
        t.c.price_date,
        t.c.graded_by,
    ).where(t.c.status == "graded", t.c.difference.is_not(None))
    if route is not None:
        query = query.where(t.c.route == route)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(t.c.created_at, t.c.request_id)).all()
    return [Graded(*row) for row in rows]


def outcomes(engine: Engine, route: str | None = None) -> dict[tuple[str, str], int]:
    """How many pairs of each (route, status): copies withheld by policy or budget included."""
    t = shadow_pairs
    query = select(t.c.route, t.c.status, func.count()).group_by(t.c.route, t.c.status)
    if route is not None:
        query = query.where(t.c.route == route)
    with engine.connect() as conn:
        return {(r, s): int(n) for r, s, n in conn.execute(query).all()}


def line_spend(
    engine: Engine, line: str, since: dt.datetime, currency: str, rates: CurrencyRates
) -> int:
    """What a shadow budget line (the ledger's `key_name` of its copies and grading calls) has
    spent since `since`, in nanos of `currency`: the seed of its budget counter."""
    t = usage_records
    query = (
        select(t.c.currency, func.coalesce(func.sum(t.c.cost_nanos), 0))
        .where(t.c.key_name == line, t.c.created_at >= since, t.c.cost_nanos.is_not(None))
        .group_by(t.c.currency)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return sum(rates.convert(int(nanos), source, currency) for source, nanos in rows)
