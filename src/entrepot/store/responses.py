"""Stored Responses API answers: written once, read and deleted only by their owner, and never
read (then swept) once older than the retention period.

Every read and delete names the owner as well as the id, so another key's response is missing
in the same way as one that never existed: a caller cannot even learn that an id is taken.
Retention is enforced by the reads themselves (`not_before`), so an expired row is never
returned even before a sweep has deleted it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, insert, select

from entrepot.store.tables import responses
from entrepot.types import JSON


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    owner: str
    created_at: int  # Unix seconds
    response: JSON
    input_items: list[JSON]


def save(engine: Engine, batch: list[StoredResponse]) -> None:
    """Write a batch in one transaction: one commit (one fsync) for every response in it."""
    rows = [
        {
            "id": stored.id,
            "owner": stored.owner,
            "created_at": stored.created_at,
            "response": stored.response,
            "input_items": stored.input_items,
        }
        for stored in batch
    ]
    with engine.begin() as conn:
        conn.execute(insert(responses), rows)


def load(engine: Engine, response_id: str, owner: str, not_before: int) -> StoredResponse | None:
    """The owner's response, unless it is older than `not_before` (Unix seconds)."""
    query = select(responses).where(
        responses.c.id == response_id,
        responses.c.owner == owner,
        responses.c.created_at >= not_before,
    )
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return None if row is None else _from_row(row)


def remove(engine: Engine, response_id: str, owner: str, not_before: int) -> bool:
    """Delete the owner's response; False if there was none to delete (or it had expired)."""
    with engine.begin() as conn:
        result = conn.execute(
            delete(responses).where(
                responses.c.id == response_id,
                responses.c.owner == owner,
                responses.c.created_at >= not_before,
            )
        )
    return bool(result.rowcount)


def sweep(engine: Engine, before: int) -> int:
    """Delete every response created before `before` (Unix seconds); returns how many."""
    with engine.begin() as conn:
        result = conn.execute(delete(responses).where(responses.c.created_at < before))
    return int(result.rowcount or 0)


def _from_row(row: Any) -> StoredResponse:
    return StoredResponse(
        id=row["id"],
        owner=row["owner"],
        created_at=int(row["created_at"]),
        response=row["response"],
        input_items=list(row["input_items"]),
    )
