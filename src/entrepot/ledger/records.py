"""The usage record: exactly one per client request, whatever happened to it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class UsageRecord:
    request_id: str
    endpoint: str
    stream: bool = False
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    key_id: int | None = None
    key_name: str | None = None
    model_alias: str | None = None
    deployment: str | None = None
    provider: str | None = None
    jurisdiction: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    usage_reported: bool = False
    cost_nanos: int | None = None
    currency: str | None = None
    price_date: str | None = None
    latency_ms: int = 0
    ttft_ms: int | None = None
    status: int = 200
    error_type: str | None = None
    team: str | None = None
    data_class: str | None = None
    findings: dict[str, int] | None = None
    attempts: list[dict[str, Any]] | None = None
    cache_hit: bool = False
