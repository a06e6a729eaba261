"""Writing and summarising usage records."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import Engine, Integer, String, func, insert, select

from entrepot.ledger.records import UsageRecord
from entrepot.store.tables import usage_records

Grouping = Literal["key", "model", "day"]


@dataclass(slots=True)
class UsageSummaryRow:
    """One group's totals; costs stay separate per currency rather than being added up."""

    group: str
    requests: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_nanos: dict[str, int] = field(default_factory=dict)


def insert_records(engine: Engine, records: Sequence[UsageRecord]) -> None:
    if not records:
        return
    with engine.begin() as conn:
        conn.execute(insert(usage_records), [r.as_row() for r in records])


def summarise(engine: Engine, by: Grouping) -> list[UsageSummaryRow]:
    t = usage_records
    group = {
        "key": func.coalesce(t.c.key_name, "(no key)"),
        "model": func.coalesce(t.c.model_alias, "(none)"),
        "day": func.substr(func.cast(t.c.created_at, String), 1, 10),
    }[by]
    query = (
        select(
            group.label("grp"),
            t.c.currency,
            func.count().label("requests"),
            func.sum((t.c.status >= 400).cast(Integer)).label("failed"),
            func.coalesce(func.sum(t.c.prompt_tokens), 0).label("prompt"),
            func.coalesce(func.sum(t.c.completion_tokens), 0).label("completion"),
            func.coalesce(func.sum(t.c.cost_nanos), 0).label("cost"),
        )
        .group_by(group, t.c.currency)
        .order_by(group, t.c.currency)
    )
    rows: dict[str, UsageSummaryRow] = {}
    with engine.connect() as conn:
        for result in conn.execute(query):
            row = rows.setdefault(str(result.grp), UsageSummaryRow(str(result.grp)))
            row.requests += int(result.requests)
            row.failed += int(result.failed or 0)
            row.prompt_tokens += int(result.prompt)
            row.completion_tokens += int(result.completion)
            if result.currency is not None:
                row.cost_nanos[result.currency] = int(result.cost)
    return list(rows.values())


def spend_since(
    engine: Engine,
    *,
    since: dt.datetime,
    currency: str,
    key_id: int | None = None,
    team: str | None = None,
) -> int:
    """What a key or a team has spent since a moment, in nanos of one currency: the starting
    point of a budget period for a process that did not see the earlier requests."""
    t = usage_records
    query = select(func.coalesce(func.sum(t.c.cost_nanos), 0)).where(
        t.c.created_at >= since, t.c.currency == currency
    )
    if key_id is not None:
        query = query.where(t.c.key_id == key_id)
    if team is not None:
        query = query.where(t.c.team == team)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())
