"""`server:` — where the gateway listens, who may call it, and what it accepts."""

from __future__ import annotations

import os

from pydantic import Field

from entrepot.config.strict import Strict


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    require_client_keys: bool = False
    admin_key_env: str = "ENTREPOT_ADMIN_KEY"
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    cors_origins: list[str] = Field(default_factory=list)
    # A folder of bench, audit and shadow runs (each a folder with report.json and report.html)
    # that the console's Evaluations page lists beside the runs published to the store.
    reports_dir: str | None = None

    def admin_key(self) -> str | None:
        return os.environ.get(self.admin_key_env) or None
