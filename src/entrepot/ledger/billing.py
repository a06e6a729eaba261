"""What a request costs: the worst case reserved before calling an upstream, the output cap that
makes that worst case a bound the upstream is told, and the real cost settled onto its usage
record afterwards — from the upstream's usage report, or from the gateway's own count
(`ledger/estimate.py`) when the upstream gave none."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

from entrepot.config import ModelConfig, Price
from entrepot.ledger.estimate import answer_usage, prompt_tokens
from entrepot.ledger.hardware import hourly_rate
from entrepot.ledger.pricing import Cost, cost_nanos, hardware_cost_nanos
from entrepot.types import JSON, TokenUsage, UsageRecord

BYTES_PER_TOKEN_ESTIMATE = 4
# Hardware is priced in US dollars (`hardware_cost_per_hour`, and the reference).
HARDWARE_CURRENCY = "USD"
# The field the gateway sets the output cap in: the one most upstreams honour. A provider whose
# upstream needs another moves it (`ModelConfig.output_cap_field` for OpenAI-compatible ones).
CAP_FIELD = "max_tokens"
OTHER_CAP_FIELD = "max_completion_tokens"


class Billable(Protocol):
    """What billing needs to know of a deployment: how it is configured and priced. Routing's
    `Deployment` is one; naming only this keeps the ledger below routing, which prices its
    deployments from the ledger's catalogue."""

    @property
    def config(self) -> ModelConfig: ...

    @property
    def price(self) -> Price | None: ...


def generates(body: JSON) -> bool:
    """Whether the body asks for generated text (chat or completion), rather than embeddings."""
    return "messages" in body or "prompt" in body


def output_cap(body: JSON, deployment: Billable) -> int:
    """Tokens per choice: what the client asked for, else the deployment's `max_output_tokens`."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return int(limit) if limit else deployment.config.max_output_tokens


def requested_output(body: JSON, deployment: Billable) -> int:
    if not generates(body):
        return 0
    return output_cap(body, deployment) * generations(body)


def generations(body: JSON) -> int:
    """How many generations the upstream makes: `n`, or legacy completions' `best_of` (it
    generates that many, bills them all and answers the best `n`)."""
    n, best_of = body.get("n"), body.get("best_of")
    if n is None and best_of is None:  # nearly every request: checked once per deployment
        return 1
    counts = (c for c in (n, best_of) if isinstance(c, int) and not isinstance(c, bool))
    return max((1, *counts))


def upstream_body(body: JSON, deployment: Billable) -> JSON:
    """The body sent to `deployment`: the client's, under the deployment's target name, with the
    output cap the budget reserved for written out. An upstream left to its own default (or
    sent a field it ignores) can generate far past the reservation, so the worst case would
    bound nothing."""
    upstream = {**body, "model": deployment.config.target}
    if generates(body):
        upstream.pop(OTHER_CAP_FIELD, None)
        upstream[CAP_FIELD] = output_cap(body, deployment)
    return upstream


def estimated_tokens(body_size: int, body: JSON, deployments: Sequence[Billable]) -> int:
    """For tokens-per-minute admission: a typical ~4 bytes per token plus the output asked for."""
    output = max(requested_output(body, d) for d in deployments)
    return body_size // BYTES_PER_TOKEN_ESTIMATE + output


def busy_bound_seconds(deployment: Billable) -> float:
    """The longest a request is billed machine time for on a deployment priced by the hour: its
    total timeout, plus the wait for a local model's queue. Billed time is capped here, so the
    reservation made from it is a real bound (`settle`)."""
    config = deployment.config
    queued = config.local.queue_timeout if config.provider == "llama_cpp" else 0.0
    return config.timeouts.total + queued


def worst_case_costs(
    body_size: int, body: JSON, deployments: Sequence[Billable], attempts: int = 1
) -> list[Cost]:
    """An upper bound on what the request can cost on each eligible deployment that has a price,
    each in its own currency (the limiter converts them into a budget's).

    No tokenizer produces more tokens than the request has bytes, so the body's size bounds the
    prompt, once per generation (an upstream that ignores `n` is asked again for each missing
    choice, and bills the prompt each time); the output is bounded by the cap sent upstream
    (`upstream_body`) times n. A deployment priced by machine time is bounded by
    `busy_bound_seconds`. When routing may make `attempts` calls, every one of them may be billed
    (a generation that timed out, broke off or was refused costs as much as one that answered):
    one generation per attempt. Empty when no deployment is priced."""
    count = generations(body)
    prompt, generating = body_size * count, generates(body)
    bounds: list[Cost] = []
    for deployment in deployments:
        price = deployment.price
        if price is not None:
            output = output_cap(body, deployment) * count if generating else 0
            nanos = cost_nanos(TokenUsage(prompt_tokens=prompt, completion_tokens=output), price)
            bounds.append(Cost(nanos * attempts, price.currency))
        elif (rate := hourly_rate(deployment.config)) is not None:
            nanos = hardware_cost_nanos(busy_bound_seconds(deployment), rate.per_hour)
            bounds.append(Cost(nanos * attempts, HARDWARE_CURRENCY))
    return bounds


def cut_off_usage(body: JSON, deployment: Billable) -> TokenUsage:
    """A generation whose length the gateway cannot know (its answer never arrived, or a host
    filter discarded it): the gateway's count of the prompt it was sent as `body`, and the whole
    output cap in it — the most it may have generated, and what the budget reserved for it."""
    return TokenUsage(
        prompt_tokens=prompt_tokens(body), completion_tokens=requested_output(body, deployment)
    )


def reported_usage(usage: Any) -> TokenUsage | None:
    """The upstream's usage report as billed: None when there is none, or it claims no tokens at
    all (nothing is free to generate). Reasoning is part of `completion_tokens` by OpenAI's
    convention; an upstream reporting more reasoning than completion tokens plainly counted
    them apart, so they are added."""
    tokens = TokenUsage.from_openai(usage)
    if tokens is None or tokens.prompt_tokens + tokens.completion_tokens == 0:
        return None
    if tokens.reasoning_tokens > tokens.completion_tokens:
        tokens.completion_tokens += tokens.reasoning_tokens
    return tokens


def settle(
    record: UsageRecord,
    deployment: Billable,
    body: JSON,
    usage: Any,
    count: Callable[[int | None], TokenUsage],
    started: float,
) -> None:
    """Bill the answer to `body` (as sent upstream) from the upstream's usage report; where
    there is none, from `count`, the gateway's own count of the same answer given its output
    cap (`ledger/estimate.py`: never more than the cap, unless proven), flagged estimated.

    The report is what the upstream invoices, so it wins over the gateway's count, which is an
    estimate — even when lower, or higher than the output cap (the upstream then generated past
    it, and that was spent) — except where it cannot be true: no completion tokens for an
    answer that has output is billed at the gateway's count of the output (flagged estimated)."""
    tokens = reported_usage(usage)
    if tokens is not None and (tokens.completion_tokens or not generates(body)):
        bill(record, deployment, tokens, estimated=False, started=started)
        return
    counted = count(requested_output(body, deployment) if generates(body) else None)
    if tokens is not None:  # reported, but with no completion tokens
        if not counted.completion_tokens:
            bill(record, deployment, tokens, estimated=False, started=started)
            return
        counted.prompt_tokens, counted.cached_tokens = tokens.prompt_tokens, tokens.cached_tokens
    bill(record, deployment, counted, estimated=True, started=started)


def settle_answer(
    record: UsageRecord, deployment: Billable, body: JSON, answer: JSON, started: float
) -> None:
    """Bill a complete answer to `body`."""
    count = partial(answer_usage, body, answer)
    settle(record, deployment, body, answer.get("usage"), count, started)


def bill(
    record: UsageRecord,
    deployment: Billable,
    tokens: TokenUsage,
    *,
    estimated: bool,
    started: float,
) -> None:
    """Put the tokens and their cost on the record: by the token price, else by machine time
    since `started` (at most `busy_bound_seconds`) at the deployment's hourly rate, dated when
    it comes from the hardware price reference."""
    record.usage_reported = not estimated
    record.usage_estimated = estimated
    record.prompt_tokens = tokens.prompt_tokens
    record.completion_tokens = tokens.completion_tokens
    record.reasoning_tokens = tokens.reasoning_tokens
    record.cached_tokens = tokens.cached_tokens
    price = deployment.price
    if price is not None:
        record.cost_nanos = cost_nanos(tokens, price)
        record.currency, record.price_date = price.currency, price.as_of.isoformat()
    elif (rate := hourly_rate(deployment.config)) is not None:
        busy = min(time.perf_counter() - started, busy_bound_seconds(deployment))
        record.cost_nanos = hardware_cost_nanos(busy, rate.per_hour)
        record.currency = HARDWARE_CURRENCY
        if rate.as_of is not None:
            record.price_date = rate.as_of.isoformat()


def cost_of(record: UsageRecord) -> Cost | None:
    """The cost settled onto a record, in its currency; None if it has none."""
    if record.cost_nanos is None or record.currency is None:
        return None
    return Cost(record.cost_nanos, record.currency)
