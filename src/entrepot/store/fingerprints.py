"""Fingerprint runs and their answers, kept with their date in the store every replica reads, so
a check on any machine compares with the same take (see `entrepot.fingerprint`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sqlalchemy import Engine, insert, select

from entrepot.store.tables import fingerprint_answers, fingerprint_runs


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    sample: int
    canary: str
    answer: str
    prompt_tokens: int
    completion_tokens: int
    deployment: str | None
    finish_reason: str | None


@dataclass(frozen=True, slots=True)
class FingerprintRun:
    """A take (the reference) or a check; a check's findings are None on a take."""

    id: str
    kind: str
    created_at: dt.datetime
    model_alias: str
    deployment: str | None
    canary_set: str
    samples: int
    key_name: str | None = None
    fingerprint_id: str | None = None
    exact_share: float | None = None
    similarity: float | None = None
    floor: float | None = None
    floor_spread: float | None = None
    margin: float | None = None
    substituted: bool | None = None
    reason: str | None = None


def save(engine: Engine, run: FingerprintRun, answers: Sequence[StoredAnswer]) -> None:
    """A run with all its answers, together: a take is never seen half-written."""
    with engine.begin() as conn:
        conn.execute(insert(fingerprint_runs), [asdict(run)])
        rows = [{"run_id": run.id, **asdict(answer)} for answer in answers]
        conn.execute(insert(fingerprint_answers), rows)


def latest_take(engine: Engine, alias: str, canary_set: str) -> FingerprintRun | None:
    """The newest take of `alias` with this canary set: a newer take supersedes an older one."""
    query = (
        select(fingerprint_runs)
        .where(
            fingerprint_runs.c.model_alias == alias,
            fingerprint_runs.c.kind == "take",
            fingerprint_runs.c.canary_set == canary_set,
        )
        .order_by(fingerprint_runs.c.created_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return None if row is None else _run(dict(row))


def answers(engine: Engine, run_id: str) -> list[StoredAnswer]:
    query = (
        select(fingerprint_answers)
        .where(fingerprint_answers.c.run_id == run_id)
        .order_by(fingerprint_answers.c.sample, fingerprint_answers.c.canary)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [StoredAnswer(**{k: v for k, v in row.items() if k != "run_id"}) for row in rows]


def history(engine: Engine, alias: str) -> list[FingerprintRun]:
    """Every take and check of `alias`, oldest first."""
    query = (
        select(fingerprint_runs)
        .where(fingerprint_runs.c.model_alias == alias)
        .order_by(fingerprint_runs.c.created_at)
    )
    with engine.connect() as conn:
        return [_run(dict(row)) for row in conn.execute(query).mappings()]


def _run(values: dict[str, object]) -> FingerprintRun:
    created = values["created_at"]
    assert isinstance(created, dt.datetime)
    if created.tzinfo is None:  # SQLite keeps no offset; every row is written in UTC
        values["created_at"] = created.replace(tzinfo=dt.UTC)
    return FingerprintRun(**values)  # type: ignore[arg-type]
