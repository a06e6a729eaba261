"""Bounded waits on PostgreSQL: a statement that runs too long is cancelled, a server that stops
answering (SIGSTOP: the port still accepts, nothing replies) fails a connection attempt instead of
hanging it, and migrations wait for each other however long they take."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from entrepot.config import StoreConfig
from entrepot.store.db import MIGRATION_LOCK, engine_for, open_engine
from tests.backing import Backing, new_database, start_postgres
from tests.store.pausing import paused, stop

HANG_BOUND = 120  # seconds: a bound on hangs, not a timing check


@pytest.fixture
def stoppable_postgres() -> Iterator[Backing]:
    """A private server of this test's own, to stop and continue."""
    server = start_postgres()
    yield server
    stop(server)


def in_thread(call: Callable[[], object]) -> BaseException | None:
    """Run `call` in a thread; what it raised. Fails the test if it does not return."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as error:  # handed back to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_BOUND)
    assert outcome, "the call hung"
    return outcome[0]


def test_a_statement_running_too_long_is_cancelled(postgres_url: str) -> None:
    engine = engine_for(StoreConfig(statement_timeout_seconds=0.2), new_database(postgres_url))
    with engine.connect() as conn:
        with pytest.raises(OperationalError, match="statement timeout"):
            conn.execute(text("SELECT pg_sleep(30)"))
        conn.rollback()
        # the connection goes on, with the same bound
        assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "200ms"
    engine.dispose()


def test_connecting_to_a_stopped_server_fails_instead_of_hanging(
    stoppable_postgres: Backing,
) -> None:
    url = new_database(stoppable_postgres.url)
    with paused(stoppable_postgres):
        failure = in_thread(lambda: open_engine(StoreConfig(url=url, connect_timeout_seconds=2)))
    assert isinstance(failure, OperationalError)
    assert "timeout" in str(failure)
    open_engine(StoreConfig(url=url)).dispose()  # and works again once it answers


def test_a_replica_waits_for_another_migrating_beyond_its_statement_timeout(
    postgres_url: str,
) -> None:
    """The migration lock is held (another replica migrating, say building an index on a large
    ledger) longer than the statement timeout: the replica waits for it rather than failing."""
    url = new_database(postgres_url)
    holder = create_engine(url)
    holding = holder.connect()
    holding.execute(text(f"SELECT pg_advisory_lock({MIGRATION_LOCK})"))
    opened = threading.Event()

    def open_store() -> None:
        open_engine(StoreConfig(url=url, statement_timeout_seconds=0.05)).dispose()
        opened.set()

    thread = threading.Thread(target=open_store, daemon=True)
    thread.start()
    assert not opened.wait(1)  # still waiting for the lock, past its statement timeout
    holding.execute(text(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
    holding.close()
    holder.dispose()
    thread.join(HANG_BOUND)
    assert opened.is_set()
