"""`store:`, `shared:` and `responses:` — where the gateway keeps what outlives a request: the
database and its usage ledger, the state every replica must agree on, and stored answers."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field

from entrepot.config.strict import Strict
from entrepot.exceptions import ConfigError


class StoreConfig(Strict):
    url: str | None = None
    ledger_flush_seconds: float = Field(default=0.25, gt=0)
    ledger_batch_size: int = Field(default=500, ge=1)
    # Where usage records wait while the store is unreachable; default: beside the SQLite file,
    # or in the data directory.
    spool_dir: str | None = None
    # PostgreSQL: the longest wait for a new connection (libpq counts whole seconds, at least 2)
    # and for one statement, so a database that stops answering fails calls instead of hanging.
    connect_timeout_seconds: int = Field(default=5, ge=2)
    statement_timeout_seconds: float = Field(default=30, gt=0)


class SharedConfig(Strict):
    """Where the state every replica must agree on lives: rate and budget counters, the response
    cache, circuit state and key revocations. `memory` (the default) serves one process; a fleet
    (several workers or machines) needs `redis`, at the URL in the environment variable
    `redis_url_env`. When Redis cannot be reached, `on_unavailable: closed` refuses requests of
    keys with limits (503 `limits_unavailable`) while others are served; `open` counts them in
    the process's own memory and flags their usage records."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url_env: str = "ENTREPOT_REDIS_URL"
    on_unavailable: Literal["closed", "open"] = "closed"

    def redis_url(self) -> str:
        url = os.environ.get(self.redis_url_env)
        if not url:
            raise ConfigError(
                f"shared.backend is redis but ${self.redis_url_env} is not set:"
                f" export {self.redis_url_env}=redis://HOST:6379/0"
            )
        return url


class ResponsesConfig(Strict):
    """Responses API answers kept for `GET /v1/responses/{id}` and `previous_response_id`. They
    hold conversation content, so they are kept no longer than `retention_days`."""

    retention_days: int = Field(default=30, ge=1)
