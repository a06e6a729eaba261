"""Writing a batch of usage records whatever it holds: the records the store rejects are found
and handed back, and the rest written; a store that cannot take writes at all is an outage.

The two need opposite answers from the ledger (set a record aside, or keep every record for
later), so neither may pass for the other:
- a batch that fails is split in halves until the failing record is alone. A record is judged
  bad only if it fails alone while a known-good record is accepted (written and rolled back): a
  store-wide problem, such as a schema the database does not have, is then an outage, not a
  reason to set every record aside.
- an error of the kind outages raise (a lost connection, a lock or statement timeout, a server
  limit) is an outage only if the known-good record fails too. A record that raises one on its
  own, twice, each time right after the store accepted the known-good record — say a value past a
  server limit, or one a trigger refuses with such an error — is rejected like any other: retried
  as an outage, it would hold back every record behind it forever.
- an error of the storage under the database (an I/O error, a full disk, a read-only or
  immutable file) is an outage at once. No record causes one, and the known-good record cannot
  reveal it: written and rolled back, it never reaches the disk, where only a commit fails.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine

from entrepot.exceptions import StoreUnavailableError
from entrepot.failure_log import describe
from entrepot.store.usage import Row, insert_rows, record_encoder, store_unavailable
from entrepot.types import UsageRecord

Refused = list[tuple[int, str]]  # positions in the batch of the records refused, and why
# Tries of a lone record failing with an outage's kind of error, each after the known-good
# record was accepted, before it is judged bad: one could be a blip between the two writes.
ALONE_TRIES = 2
PROBE = UsageRecord(request_id="ledger-probe", endpoint="probe")


def write_isolating(engine: Engine, rows: Sequence[Row]) -> tuple[int, Refused]:
    """Write a batch of encoded records; returns how many rows are new, and the positions of
    the records the store rejects with the reason. Raises StoreUnavailableError if the store
    cannot take writes at all."""
    return _isolate(engine, rows, 0)


def _isolate(engine: Engine, rows: Sequence[Row], offset: int) -> tuple[int, Refused]:
    try:
        return insert_rows(engine, rows), []
    except Exception as error:
        if storage_refuses(error) or (store_unavailable(error) and not _takes_writes(engine)):
            raise StoreUnavailableError(describe(error)) from error
        if len(rows) > 1:
            half = len(rows) // 2
            first, first_refused = _isolate(engine, rows[:half], offset)
            second, second_refused = _isolate(engine, rows[half:], offset + half)
            return first + second, first_refused + second_refused
        return _judge_alone(engine, rows[0], offset)


def _judge_alone(engine: Engine, row: Row, position: int) -> tuple[int, Refused]:
    """A record that failed on its own: bad only if the store takes a known-good record and
    still refuses this one; otherwise the store itself is failing."""
    reason = ""
    for _ in range(ALONE_TRIES):
        _probe(engine)
        try:
            return insert_rows(engine, [row]), []
        except Exception as again:
            if storage_refuses(again):
                raise StoreUnavailableError(describe(again)) from again
            reason = describe(again)
            if not store_unavailable(again):
                break  # a rejection (a constraint, a bad value) is the same every time
    return 0, [(position, reason)]


# SQLite's primary result codes for the storage failing: PERM, READONLY, IOERR, CORRUPT, FULL,
# CANTOPEN, NOTADB. PostgreSQL's SQLSTATEs: insufficient resources (class 53: a full disk),
# system errors (class 58: I/O), a read-only transaction (a standby, or read-only by default).
_SQLITE_STORAGE = frozenset({3, 8, 10, 11, 13, 14, 26})
_POSTGRES_STORAGE = ("53", "58", "25006")


def storage_refuses(error: BaseException) -> bool:
    """Whether a failed write is the storage under the database refusing, whatever the record."""
    cause = getattr(error, "orig", None) or error
    code = getattr(cause, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _SQLITE_STORAGE
    state = getattr(cause, "sqlstate", None)
    return isinstance(state, str) and state.startswith(_POSTGRES_STORAGE)


def _probe(engine: Engine) -> None:
    """Write a known-good record and roll it back; StoreUnavailableError if the store refuses."""
    try:
        insert_rows(engine, [record_encoder(engine.dialect.name)(PROBE)], rollback=True)
    except Exception as failure:
        raise StoreUnavailableError(describe(failure)) from failure


def _takes_writes(engine: Engine) -> bool:
    try:
        _probe(engine)
    except StoreUnavailableError:
        return False
    return True
