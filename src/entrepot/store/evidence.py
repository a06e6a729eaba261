"""Published bench evidence: one row per model × task of a bench run, kept in the store every
replica reads, so the whole fleet routes `good_enough` by the same results.

A row's quality relative to the run's reference is the paired interval `entrepot bench`
computed; its cost per item is in the run's prices, which `price_fingerprint` identifies so a
router can tell when the configuration has priced the model differently since.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine, insert, select

from entrepot.store.tables import bench_evidence

# (task, model alias, reference alias): what a route looks evidence up by.
EvidenceKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Evidence:
    id: str
    run_id: str
    published_at: dt.datetime
    task: str
    model_alias: str
    reference_alias: str
    items: int
    score: float
    score_low: float
    score_high: float
    relative: float | None
    relative_low: float | None
    relative_high: float | None
    cost_per_item_nanos: int | None
    currency: str | None
    price_date: str | None
    price_fingerprint: str | None

    @property
    def key(self) -> EvidenceKey:
        return (self.task, self.model_alias, self.reference_alias)


def publish(engine: Engine, rows: Sequence[Evidence]) -> None:
    """Store one run's rows together: a router never sees half a run."""
    if not rows:
        return
    with engine.begin() as conn:
        conn.execute(insert(bench_evidence), [asdict(row) for row in rows])


def latest(engine: Engine, since: dt.datetime) -> dict[EvidenceKey, Evidence]:
    """The newest row per (task, model, reference) published since `since`: an older run of the
    same comparison is superseded, whatever it said."""
    query = (
        select(bench_evidence)
        .where(bench_evidence.c.published_at >= since)
        .order_by(bench_evidence.c.published_at)
    )
    with engine.connect() as conn:
        rows = [_from_row(row) for row in conn.execute(query).mappings()]
    return {row.key: row for row in rows}


def _from_row(row: Any) -> Evidence:
    values = dict(row)
    published: dt.datetime = values["published_at"]
    if published.tzinfo is None:  # SQLite keeps no offset; every row is written in UTC
        values["published_at"] = published.replace(tzinfo=dt.UTC)
    return Evidence(**values)
