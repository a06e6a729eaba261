"""Writing and summarising usage records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Engine, func, insert, select

from entrepot.ledger.records import UsageRecord
from entrepot.store.tables import usage_records

Grouping = Literal["key", "model", "day"]


@dataclass(frozen=True, slots=True)
class UsageSummaryRow:
    group: str
    currency: str | None
    requests: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    cost_nanos: int


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
        "day": func.substr(func.cast(t.c.created_at, type_=t.c.price_date.type), 1, 10),
    }[by]
    query = (
        select(
            group.label("grp"),
            t.c.currency,
            func.count().label("requests"),
            func.sum((t.c.status >= 400).cast(t.c.prompt_tokens.type)).label("failed"),
            func.coalesce(func.sum(t.c.prompt_tokens), 0).label("prompt"),
            func.coalesce(func.sum(t.c.completion_tokens), 0).label("completion"),
            func.coalesce(func.sum(t.c.cost_nanos), 0).label("cost"),
        )
        .group_by(group, t.c.currency)
        .order_by(group, t.c.currency)
    )
    with engine.connect() as conn:
        return [
            UsageSummaryRow(
                group=str(row.grp),
                currency=row.currency,
                requests=int(row.requests),
                failed=int(row.failed or 0),
                prompt_tokens=int(row.prompt),
                completion_tokens=int(row.completion),
                cost_nanos=int(row.cost),
            )
            for row in conn.execute(query)
        ]
