"""Opening the database: the per-user SQLite file by default, any SQLAlchemy URL otherwise.

Migrations run on open, so every process (server, CLI) sees the same schema; SQLite is put in WAL
mode so `entrepot keys create` can write while a server is reading.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config as AlembicConfig
from platformdirs import user_data_dir
from sqlalchemy import Engine, create_engine, event

from entrepot.config import StoreConfig


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
    url = database_url(config)
    engine = create_engine(
        url, pool_pre_ping=not url.startswith("sqlite"), json_serializer=_json_text
    )
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    migrate(engine)
    return engine


def _json_text(value: Any) -> str:
    """JSON columns (stored responses, key allow-lists) written by orjson: several times faster
    than the standard library's encoder on a stored response's nested items."""
    return orjson.dumps(value).decode()


def migrate(engine: Engine) -> None:
    alembic = AlembicConfig()
    alembic.set_main_option("script_location", "entrepot.store:migrations")
    with engine.begin() as connection:
        alembic.attributes["connection"] = connection
        command.upgrade(alembic, "head")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
