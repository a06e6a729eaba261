"""What the ledger tests read back from a store, and how they wait for the writer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import Engine, func, select

from entrepot.store.tables import usage_records


def stored_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(usage_records.c.request_id).order_by(usage_records.c.id))
        return [row[0] for row in rows]


def row_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(usage_records)).scalar_one())


async def until(condition: Callable[[], bool], attempts: int = 4_000) -> None:
    """Let the event loop run until `condition` holds (a bound on hangs, not a timing check)."""
    for _ in range(attempts):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never became true")
