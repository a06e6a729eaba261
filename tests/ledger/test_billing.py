"""Billing without a server: the output cap written into the upstream body, the worst case each
deployment can cost (machine time included), which usage reports are believed, and how a record
is billed from the gateway's own count."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from entrepot.config import ModelConfig, Price
from entrepot.ledger.billing import (
    bill,
    busy_bound_seconds,
    reported_usage,
    requested_output,
    settle_answer,
    upstream_body,
    worst_case_costs,
)
from entrepot.ledger.pricing import Cost
from entrepot.types import TokenUsage, UsageRecord

PRICE = Price(
    input_per_1m=Decimal(1000),
    output_per_1m=Decimal(2000),
    currency="EUR",
    as_of=dt.date(2026, 11, 1),
)


@dataclass
class Deployment:
    config: ModelConfig
    price: Price | None = None


def remote(**fields: Any) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "alias": "a",
            "provider": "openai_compatible",
            "target": "t",
            "base_url": "http://up.example/v1",
            **fields,
        }
    )


LOCAL = ModelConfig.model_validate(
    {
        "alias": "local",
        "provider": "llama_cpp",
        "target": "bundled:smollm2-135m-instruct",
        "hardware_cost_per_hour": "0.36",
        "timeouts": {"total": 60},
        "local": {"queue_timeout": 30},
    }
)
CHAT = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}


def test_the_cap_reserved_for_is_written_into_the_upstream_body() -> None:
    deployment = Deployment(remote(max_output_tokens=300))
    sent = upstream_body({**CHAT, "max_tokens": 5}, deployment)
    assert sent == {**CHAT, "model": "t", "max_tokens": 5}
    assert upstream_body(CHAT, deployment)["max_tokens"] == 300
    assert upstream_body({**CHAT, "max_completion_tokens": 7, "max_tokens": 9}, deployment) == {
        **CHAT,
        "model": "t",
        "max_tokens": 7,
    }


def test_an_embedding_body_gets_no_cap_and_reserves_no_output() -> None:
    deployment = Deployment(remote(), PRICE)
    body = {"model": "a", "input": "hello"}
    assert upstream_body(body, deployment) == {"model": "t", "input": "hello"}
    assert worst_case_costs(100, body, [deployment]) == [Cost(100 * 1_000_000, "EUR")]


def test_worst_cases_come_in_each_deployments_currency() -> None:
    priced = Deployment(remote(max_output_tokens=10), PRICE)
    unpriced = Deployment(remote(name="free"))
    costs = worst_case_costs(50, {**CHAT, "n": 2}, [priced, unpriced])
    # the prompt once per choice: an upstream that ignores `n` is asked again for the other
    assert costs == [Cost(2 * 50 * 1_000_000 + 2 * 10 * 2_000_000, "EUR")]


def test_machine_time_is_reserved_for_its_bound() -> None:
    local = Deployment(LOCAL)
    assert busy_bound_seconds(local) == 90
    # 90 s at 0.36 an hour
    assert worst_case_costs(50, CHAT, [local]) == [Cost(9_000_000, "USD")]
    self_hosted = Deployment(remote(hardware_cost_per_hour="3.6", timeouts={"total": 10}))
    assert worst_case_costs(50, CHAT, [self_hosted]) == [Cost(10_000_000, "USD")]


def test_machine_time_billed_never_exceeds_what_was_reserved() -> None:
    record = UsageRecord(request_id="r", endpoint="chat")
    long_ago = time.perf_counter() - 10_000
    bill(record, Deployment(LOCAL), TokenUsage(3, 4), estimated=False, started=long_ago)
    assert (record.cost_nanos, record.currency) == (9_000_000, "USD")


def test_a_usage_report_that_claims_nothing_is_not_believed() -> None:
    assert reported_usage(None) is None
    assert reported_usage("12") is None
    assert reported_usage({}) is None
    assert reported_usage({"prompt_tokens": 0, "completion_tokens": 0}) is None
    assert reported_usage({"prompt_tokens": 3, "completion_tokens": 0}) == TokenUsage(3, 0)


def test_reasoning_reported_apart_from_completion_is_billed_too() -> None:
    usage = {
        "prompt_tokens": 2,
        "completion_tokens": 5,
        "completion_tokens_details": {"reasoning_tokens": 40},
    }
    assert reported_usage(usage) == TokenUsage(2, 45, 40)
    within = {**usage, "completion_tokens": 50}
    assert reported_usage(within) == TokenUsage(2, 50, 40)


def test_an_answer_without_usage_is_billed_from_the_gateways_count() -> None:
    record = UsageRecord(request_id="r", endpoint="chat")
    answer = {
        "choices": [
            {"message": {"role": "assistant", "content": "abcdefgh", "reasoning_content": "xyz"}}
        ]
    }
    settle_answer(record, Deployment(remote(), PRICE), CHAT, answer, time.perf_counter())
    # prompt: "user" + "hi" = 6 bytes -> 2, plus 4 for the message; output 11 bytes -> 3.
    assert (record.prompt_tokens, record.completion_tokens, record.reasoning_tokens) == (6, 3, 1)
    assert (record.usage_estimated, record.usage_reported) == (True, False)
    assert (record.cost_nanos, record.currency) == (6 * 1_000_000 + 3 * 2_000_000, "EUR")


def test_an_answer_with_usage_is_billed_as_reported() -> None:
    record = UsageRecord(request_id="r", endpoint="chat")
    answer = {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    settle_answer(record, Deployment(remote(), PRICE), CHAT, answer, time.perf_counter())
    assert (record.usage_estimated, record.usage_reported) == (False, True)
    assert record.cost_nanos == 3_000_000


def answered(text: str, usage: dict[str, int] | None, body: dict[str, Any] = CHAT) -> UsageRecord:
    record = UsageRecord(request_id="r", endpoint="chat")
    answer: dict[str, Any] = {"choices": [{"message": {"role": "assistant", "content": text}}]}
    if usage is not None:
        answer["usage"] = usage
    settle_answer(record, Deployment(remote(), PRICE), body, answer, time.perf_counter())
    return record


def test_best_of_reserves_every_generation_the_upstream_makes() -> None:
    """Legacy completions' `best_of` generates (and bills) that many answers for `n` shown."""
    body = {"model": "a", "prompt": "hi", "max_tokens": 10, "best_of": 5}
    assert requested_output(body, Deployment(remote())) == 50
    assert requested_output({**body, "n": 7}, Deployment(remote())) == 70
    assert requested_output({**body, "best_of": "5"}, Deployment(remote())) == 10


def test_an_estimate_never_exceeds_the_output_cap_the_upstream_was_sent() -> None:
    record = answered("x" * 400, None, {**CHAT, "max_tokens": 5})  # 100 tokens by bytes
    assert (record.completion_tokens, record.usage_estimated) == (5, True)


def test_a_report_wins_over_the_gateways_count_above_the_cap_or_below_the_estimate() -> None:
    """What the upstream reports is what it invoices: past the cap (it generated past it) and
    below the gateway's estimate (which is only an estimate), it is billed as reported."""
    over = answered(
        "x" * 40, {"prompt_tokens": 1, "completion_tokens": 90}, {**CHAT, "max_tokens": 5}
    )
    assert (over.completion_tokens, over.usage_reported) == (90, True)
    under = answered("x" * 400, {"prompt_tokens": 1, "completion_tokens": 2})
    assert (under.completion_tokens, under.usage_reported) == (2, True)


def test_a_report_of_no_output_for_an_answer_with_output_is_not_believed() -> None:
    record = answered("abcdefgh", {"prompt_tokens": 9, "completion_tokens": 0})
    assert (record.prompt_tokens, record.completion_tokens) == (9, 2)  # its prompt, our output
    assert (record.usage_estimated, record.usage_reported) == (True, False)
    empty = answered("", {"prompt_tokens": 9, "completion_tokens": 0})
    assert (empty.prompt_tokens, empty.completion_tokens, empty.usage_reported) == (9, 0, True)


def test_budgets_reserve_a_generation_per_attempt() -> None:
    priced = Deployment(remote(max_output_tokens=10), PRICE)
    local = Deployment(LOCAL)
    once = worst_case_costs(50, CHAT, [priced, local])
    twice = worst_case_costs(50, CHAT, [priced, local], attempts=2)
    assert twice == [Cost(2 * cost.nanos, cost.currency) for cost in once]
