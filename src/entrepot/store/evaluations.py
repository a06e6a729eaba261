"""What the console's Evaluations page reads from the store: the bench runs published as
evidence (`bench_evidence`, one row per model and task), and the shadow pairs graded on live
traffic (`shadow_pairs`), summed per route and pair of models. The shadow verdict itself (a
sequential test) is `entrepot shadow report`'s: these are its raw figures.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from entrepot.store.evidence import Evidence, _from_row
from entrepot.store.tables import bench_evidence, shadow_pairs


@dataclass(frozen=True)
class BenchRun:
    run_id: str
    published_at: dt.datetime
    rows: list[Evidence]


def bench_runs(engine: Engine, most: int = 20) -> list[BenchRun]:
    """The newest `most` published runs, newest first, each with its rows."""
    e = bench_evidence.c
    newest = (
        select(e.run_id, func.max(e.published_at).label("at"))
        .group_by(e.run_id)
        .order_by(func.max(e.published_at).desc())
        .limit(most)
    )
    with engine.connect() as conn:
        runs = conn.execute(newest).all()
        rows = conn.execute(
            select(bench_evidence)
            .where(e.run_id.in_([run_id for run_id, _ in runs]))
            .order_by(e.task, e.model_alias)
        ).mappings()
    evidence = [_from_row(row) for row in rows]
    return [
        BenchRun(run_id, _utc(at), [row for row in evidence if row.run_id == run_id])
        for run_id, at in runs
    ]


@dataclass(frozen=True)
class ShadowSummary:
    route: str
    incumbent: str
    candidate: str
    graded: int
    mean_difference: float
    incumbent_cost_nanos: int
    candidate_cost_nanos: int
    currency: str | None
    last: dt.datetime


def shadow_summaries(engine: Engine) -> list[ShadowSummary]:
    t = shadow_pairs.c
    query = (
        select(
            t.route,
            t.incumbent,
            t.candidate,
            func.count(),
            func.avg(t.difference),
            func.coalesce(func.sum(t.incumbent_cost_nanos), 0),
            func.coalesce(func.sum(t.candidate_cost_nanos), 0),
            func.max(t.currency),
            func.max(t.created_at),
        )
        .where(t.status == "graded", t.difference.is_not(None))
        .group_by(t.route, t.incumbent, t.candidate)
        .order_by(t.route, t.candidate)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        ShadowSummary(
            route, incumbent, candidate, int(n), float(mean), int(inc), int(cand), cur, _utc(last)
        )
        for route, incumbent, candidate, n, mean, inc, cand, cur, last in rows
    ]


def _utc(moment: dt.datetime) -> dt.datetime:
    """SQLite returns UTC without its offset."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
