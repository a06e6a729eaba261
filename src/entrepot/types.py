"""The types every layer shares, in one neutral module so that no package imports another
sideways or upwards to name them: the OpenAI-format body (`JSON`), token counts, a client key, one
attempt at a deployment, and the usage record. It depends on nothing but the configuration.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from entrepot.config import Budget, Limits

JSON = dict[str, Any]


@dataclass(slots=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0

    @classmethod
    def from_openai(cls, usage: JSON | None) -> TokenUsage | None:
        """Read OpenAI's usage object, including DeepSeek's `prompt_cache_hit_tokens` spelling."""
        if not isinstance(usage, dict):
            return None
        completion_details = usage.get("completion_tokens_details") or {}
        prompt_details = usage.get("prompt_tokens_details") or {}
        cached = prompt_details.get("cached_tokens") or usage.get("prompt_cache_hit_tokens") or 0
        return cls(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
            cached_tokens=int(cached),
        )

    def to_openai(self) -> JSON:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    name: str
    key_prefix: str
    allowed_models: tuple[str, ...] | None
    budget_amount: Decimal | None
    budget_currency: str | None
    budget_period: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    team: str | None = None
    data_class: str | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    cache_ttl_seconds: int | None = None
    # The task of this key's requests that name none (`x-entrepot-task`), for routing.
    default_task: str | None = None

    limits: Limits = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Built once per key load rather than on every request that checks the key's limits."""
        budget = None
        if self.budget_amount is not None:
            budget = Budget(
                amount=self.budget_amount,
                currency=self.budget_currency or "USD",
                period=self.budget_period or "month",
            )
        limits = Limits(
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            budget=budget,
        )
        object.__setattr__(self, "limits", limits)

    def may_use(self, alias: str) -> bool:
        return self.allowed_models is None or alias in self.allowed_models

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "key_prefix": self.key_prefix,
            "allowed_models": list(self.allowed_models) if self.allowed_models else None,
            "budget": (
                {
                    "amount": str(self.budget_amount),
                    "currency": self.budget_currency,
                    "period": self.budget_period,
                }
                if self.budget_amount is not None
                else None
            ),
            "team": self.team,
            "data_class": self.data_class,
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "cache_ttl_seconds": self.cache_ttl_seconds,
            "default_task": self.default_task,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(slots=True)
class Attempt:
    deployment: str
    outcome: str
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "outcome": self.outcome, "reason": self.reason}


@dataclass(slots=True)
class UsageRecord:
    request_id: str
    endpoint: str
    stream: bool = False
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    key_id: int | None = None
    key_name: str | None = None
    model_alias: str | None = None
    # The model name the client sent, where config mapped it to another alias (`model_names`).
    requested_model: str | None = None
    deployment: str | None = None
    provider: str | None = None
    jurisdiction: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    usage_reported: bool = False
    # Billed from the gateway's own token count: the upstream reported no usage for it.
    usage_estimated: bool = False
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
    # Admitted on this process's own counters: the shared ones (Redis) could not be reached and
    # `shared.on_unavailable` is `open`, so the fleet's limits did not hold for this request.
    limits_degraded: bool = False
    # The task the request was routed for, and the published bench result a `good_enough`
    # route chose its model by.
    task: str | None = None
    evidence_id: str | None = None
    # The answering model refused (the audit's classifier said so), whether or not a fallback
    # then answered instead.
    refused_by_model: bool = False
    # A shadow copy of another request (a route's `shadow`): that request's id.
    shadow_of: str | None = None
    # The SHA-256 of the local weights that answered, and of the LoRA adapter applied to them
    # (see `providers/weights.py`): every answer traced to exact bytes.
    weights_sha256: str | None = None
    adapter_sha256: str | None = None
