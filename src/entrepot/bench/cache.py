"""The persistent stores of a bench or audit out directory, so a re-run never pays twice and
never reuses what no longer matches.

An answer is keyed by a hash of everything that decides it: the deployment asked (provider,
target, host) and the full request sent (messages, sampling parameters, max tokens, seed). A grade
is keyed by the grader's definition (kind, parameters, expected answer), the question and the
answer, and the model that judges or embeds where the grader needs one. Editing a prompt,
`--max-tokens`, `--seed` or an expected answer is therefore a miss, and is asked or graded
again; an unchanged re-run or a resumed run is free.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from entrepot.bench.schema import TaskItem
from entrepot.config import ModelConfig
from entrepot.types import JSON

# Part of every key: bump it when what a key covers changes, so old entries simply miss.
KEY_FORMAT = 2
ANSWERS = "responses.sqlite"
GRADES = "grades.sqlite"
JUDGEMENTS = "judgements.sqlite"
RESULTS = "results.jsonl"
RUN_FILES = (RESULTS, ANSWERS, GRADES, JUDGEMENTS)


class ResponseStore:
    """A key → JSON body table in one SQLite file, safe to share between a run's tasks."""

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
    def key(*parts: Any) -> str:
        """A stable hash of `parts` (JSON values; dict order does not matter)."""
        material = orjson.dumps([KEY_FORMAT, *parts], option=orjson.OPT_SORT_KEYS)
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


def deployment_identity(deployment: ModelConfig) -> JSON:
    """Who answers: not only the alias, which can be re-pointed at another model or host."""
    asked: JSON = {
        "alias": deployment.alias,
        "provider": deployment.provider,
        "target": deployment.target,
        "base_url": deployment.base_url,
    }
    if deployment.provider == "llama_cpp":
        # The context size truncates prompts and the seed drives unseeded sampling.
        asked["local"] = {"n_ctx": deployment.local.n_ctx, "seed": deployment.local.seed}
    return asked


def request_key(deployment: ModelConfig, body: JSON) -> str:
    """The key of one answer: who was asked and exactly what was sent."""
    return ResponseStore.key("answer", deployment_identity(deployment), body)


def clear_run(out: Path) -> None:
    """Forget every answer, grade and judgement of earlier runs in `out` (`--fresh`)."""
    for name in RUN_FILES:
        for suffix in ("", "-wal", "-shm"):
            (out / f"{name}{suffix}").unlink(missing_ok=True)


def grade_key(item: TaskItem, answer: str, helper: JSON | None) -> str:
    """The key of one grade: the grader's definition (kind, parameters, expected answer), the
    question and the answer, and the judge or embedding model (`helper`) for graders that use
    one. A `python` grader is keyed by its function's name, not its code."""
    grader = item.grader.model_dump(mode="json", by_alias=True)
    return ResponseStore.key("grade", grader, item.expected, item.chat_messages(), answer, helper)


@runtime_checkable
class ModelBacked(Protocol):
    """A judge or embedder that says which model it stands for (see `bench.judge`)."""

    @property
    def identity(self) -> JSON: ...


def model_identity(helper: object) -> JSON | None:
    """Which model stands behind a grader's helper, for `grade_key`; None when unknown."""
    return helper.identity if isinstance(helper, ModelBacked) else None
