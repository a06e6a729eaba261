"""A persistent response cache for bench runs, so re-running a bench never pays twice.

Keyed on the model alias, its target and the exact request, so changing the prompt, the model
behind an alias or the sampling parameters is a miss, while a re-run or a resumed run is free."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

import orjson


class ResponseStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, body BLOB NOT NULL)"
        )
        self._lock = threading.Lock()

    @staticmethod
    def key(alias: str, target: str, body: dict[str, Any]) -> str:
        material = orjson.dumps([alias, target, body], option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(material).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        loaded: dict[str, Any] = orjson.loads(row[0])
        return loaded

    def put(self, key: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, body) VALUES (?, ?)",
                (key, orjson.dumps(body)),
            )

    def close(self) -> None:
        self._db.close()
