"""What a request costs: the worst case reserved before calling an upstream, and the real cost
settled onto its usage record afterwards."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from entrepot.config import ModelConfig, Price
from entrepot.ledger.pricing import cost_nanos, hardware_cost_nanos
from entrepot.types import JSON, TokenUsage, UsageRecord

BYTES_PER_TOKEN_ESTIMATE = 4


class Billable(Protocol):
    """What billing needs to know of a deployment: how it is configured and priced. Routing's
    `Deployment` is one; naming only this keeps the ledger below routing, which prices its
    deployments from the ledger's catalogue."""

    @property
    def config(self) -> ModelConfig: ...

    @property
    def price(self) -> Price | None: ...


def requested_output(body: JSON, deployment: Billable) -> int:
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    per_choice = int(limit) if limit else deployment.config.max_output_tokens
    return per_choice * int(body.get("n") or 1)


def estimated_tokens(body_size: int, body: JSON, deployments: Sequence[Billable]) -> int:
    """For tokens-per-minute admission: a typical ~4 bytes per token plus the output asked for."""
    output = max(requested_output(body, d) for d in deployments)
    return body_size // BYTES_PER_TOKEN_ESTIMATE + output


def worst_case_cost_nanos(
    body_size: int, body: JSON, deployments: Sequence[Billable]
) -> int | None:
    """An upper bound on what the request can cost on any eligible deployment.

    No tokenizer produces more tokens than the request has bytes, so the body's size bounds the
    prompt; the output is bounded by max_tokens (or the deployment's cap) times n. None when no
    eligible deployment has a token price (local models are billed by time, not reserved)."""
    bounds = [
        cost_nanos(
            TokenUsage(prompt_tokens=body_size, completion_tokens=requested_output(body, d)),
            d.price,
        )
        for d in deployments
        if d.price is not None
    ]
    return max(bounds) if bounds else None


def settle(record: UsageRecord, deployment: Billable, usage: Any, started: float) -> None:
    tokens = TokenUsage.from_openai(usage)
    if tokens is not None:
        record.usage_reported = True
        record.prompt_tokens = tokens.prompt_tokens
        record.completion_tokens = tokens.completion_tokens
        record.reasoning_tokens = tokens.reasoning_tokens
        record.cached_tokens = tokens.cached_tokens
    price = deployment.price
    per_hour = deployment.config.hardware_cost_per_hour
    if price is not None and tokens is not None:
        record.cost_nanos = cost_nanos(tokens, price)
        record.currency, record.price_date = price.currency, price.as_of.isoformat()
    elif per_hour is not None:
        record.cost_nanos = hardware_cost_nanos(time.perf_counter() - started, per_hour)
        record.currency = "USD"
