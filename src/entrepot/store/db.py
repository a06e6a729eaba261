"""Opening the database: the per-user SQLite file by default, any SQLAlchemy URL otherwise.

Migrations run on open, so every process (server, CLI) sees the same schema; SQLite is put in WAL
mode so `entrepot keys create` can write while a server is reading. Replicas of a fleet open the
same database at the same time: each takes the database's migration lock first, so one of them
migrates and the others wait, then find the schema at head.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from platformdirs import user_data_dir
from sqlalchemy import Connection, Engine, create_engine, event, make_url

from entrepot.config import StoreConfig

# pg_advisory_xact_lock's key for migrations: any constant, the same in every replica.
MIGRATION_LOCK = 0x656E747265706F74  # "entrepot"


def database_url(config: StoreConfig) -> str:
    if config.url:
        return config.url
    if env := os.environ.get("ENTREPOT_DATABASE_URL"):
        return env
    directory = data_directory()
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'entrepot.db'}"


def data_directory() -> Path:
    """Where the gateway keeps its files: `ENTREPOT_DATA_DIR`, else the user's data directory."""
    return Path(os.environ.get("ENTREPOT_DATA_DIR") or user_data_dir("entrepot"))


def open_engine(config: StoreConfig) -> Engine:
    engine = engine_for(config, database_url(config))
    migrate(engine)
    return engine


def engine_for(config: StoreConfig, url: str) -> Engine:
    """An engine for `url`, without migrating: for a process that knows the schema is at head.

    PostgreSQL gets bounded waits: a connection attempt gives up after `connect_timeout_seconds`
    and a statement after `statement_timeout_seconds`. The statement timeout is set once per
    connection, rather than as a startup option, which connection poolers may refuse."""
    postgres = make_url(url).get_backend_name() == "postgresql"
    connect_args = {"connect_timeout": config.connect_timeout_seconds} if postgres else {}
    engine = create_engine(
        url, pool_pre_ping=postgres, json_serializer=_json_text, connect_args=connect_args
    )
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif postgres:
        milliseconds = max(1, round(config.statement_timeout_seconds * 1000))
        event.listen(engine, "connect", _statement_timeout(milliseconds))
    return engine


def _json_text(value: Any) -> str:
    """JSON columns (stored responses, key allow-lists) written by orjson: several times faster
    than the standard library's encoder on a stored response's nested items."""
    return orjson.dumps(value).decode()


def migrate(engine: Engine) -> str | None:
    """Bring the schema to head; returns the revision found before (None for an empty database).

    The upgrade runs in one transaction that first takes the migration lock (PostgreSQL: an
    advisory lock; SQLite: the write lock), so replicas starting together migrate once. It has
    no statement timeout: building an index on a large ledger takes longer than any request
    should, and the replicas waiting for the lock wait as long.

    Alembic is imported here, not with the module: the ledger's writer process opens the store
    without migrating, and starts faster without it."""
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from alembic.migration import MigrationContext

    alembic = AlembicConfig()
    alembic.set_main_option("script_location", "entrepot.store:migrations")
    with engine.begin() as connection:
        _take_migration_lock(connection)
        found = MigrationContext.configure(connection).get_current_revision()
        alembic.attributes["connection"] = connection
        command.upgrade(alembic, "head")
    return found


def _take_migration_lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    elif connection.dialect.name == "sqlite":
        # Before the version is read: a read transaction cannot become a write one once
        # another process has migrated (WAL), so two first opens would both fail or both migrate.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _statement_timeout(milliseconds: int) -> Any:
    def set_timeout(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET statement_timeout = {milliseconds}")
        cursor.close()
        dbapi_connection.commit()  # else the pool's reset on return would roll it back

    return set_timeout


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
