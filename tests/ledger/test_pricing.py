"""Tokens to money: exact arithmetic in billionths, the shipped catalogue, and price lookup."""

from __future__ import annotations

import datetime as dt
import random
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest

from entrepot.config import ModelConfig, Price
from entrepot.ledger.pricing import (
    catalogue,
    cost_nanos,
    hardware_cost_nanos,
    nanos_to_amount,
    price_for,
)
from entrepot.types import TokenUsage

AS_OF = dt.date(2026, 1, 1)


def price(input_: str, output: str, cached: str | None = None) -> Price:
    return Price(
        input_per_1m=Decimal(input_),
        output_per_1m=Decimal(output),
        cached_input_per_1m=Decimal(cached) if cached is not None else None,
        as_of=AS_OF,
    )


def remote(target: str, **extra: Any) -> ModelConfig:
    return ModelConfig(
        alias="m", provider="openai_compatible", target=target, base_url="http://x/v1", **extra
    )


# --- cost arithmetic ----------------------------------------------------------------------------


def test_prompt_and_completion() -> None:
    # 1,000 x $2.00/1M + 500 x $8.00/1M = $0.002 + $0.004 = $0.006
    usage = TokenUsage(prompt_tokens=1_000, completion_tokens=500)
    assert cost_nanos(usage, price("2.00", "8.00")) == 6_000_000


def test_zero_usage_costs_nothing() -> None:
    assert cost_nanos(TokenUsage(), price("15", "75", "1.5")) == 0


def test_large_volume_is_exact() -> None:
    # 3M prompt at $1.25 + 2M completion at $10 = $3.75 + $20 = $23.75
    usage = TokenUsage(prompt_tokens=3_000_000, completion_tokens=2_000_000)
    assert cost_nanos(usage, price("1.25", "10.00")) == 23_750_000_000


def test_reasoning_tokens_are_not_billed_twice() -> None:
    plain = TokenUsage(prompt_tokens=100, completion_tokens=1_000)
    reasoning = TokenUsage(prompt_tokens=100, completion_tokens=1_000, reasoning_tokens=800)
    p = price("1.10", "4.40")
    # 100 x 1.10 + 1,000 x 4.40 = 110 + 4,400 = 4,510 micro-dollars
    assert cost_nanos(plain, p) == cost_nanos(reasoning, p) == 4_510_000


def test_cached_tokens_billed_at_cached_rate() -> None:
    # 600 uncached x $2.00 + 400 cached x $0.50 = 1,200 + 200 = 1,400 micro-dollars
    usage = TokenUsage(prompt_tokens=1_000, cached_tokens=400)
    assert cost_nanos(usage, price("2.00", "8.00", "0.50")) == 1_400_000


def test_cached_tokens_capped_at_prompt_tokens() -> None:
    # a misreported cache count cannot exceed the prompt: all 1,000 at $0.50 = $0.0005
    usage = TokenUsage(prompt_tokens=1_000, cached_tokens=5_000)
    assert cost_nanos(usage, price("2.00", "8.00", "0.50")) == 500_000


def test_no_cached_rate_bills_cached_at_input_rate() -> None:
    usage = TokenUsage(prompt_tokens=1_000, completion_tokens=10, cached_tokens=400)
    # 1,000 x $2.00 + 10 x $8.00 = 2,000 + 80 = 2,080 micro-dollars
    assert cost_nanos(usage, price("2.00", "8.00")) == 2_080_000


def test_free_cached_rate() -> None:
    usage = TokenUsage(prompt_tokens=1_000, cached_tokens=1_000)
    assert cost_nanos(usage, price("2.00", "8.00", "0")) == 0


@pytest.mark.parametrize(("tokens", "nanos"), [(1, 2), (3, 8), (5, 12), (7, 18)])
def test_sub_nano_amounts_round_half_even(tokens: int, nanos: int) -> None:
    # $0.0025/1M = 2.5 nanos a token: 2.5 -> 2, 7.5 -> 8, 12.5 -> 12, 17.5 -> 18
    usage = TokenUsage(prompt_tokens=tokens)
    assert cost_nanos(usage, price("0.0025", "0")) == nanos


def test_integer_arithmetic_equals_decimal_arithmetic() -> None:
    """Costs are computed in integers for speed; they must equal the plain Decimal formula,
    rounded half to even, for any rates and counts."""
    rng = random.Random(7)
    for _ in range(2_000):
        rates = [Decimal(rng.randint(0, 10**7)) / Decimal(10 ** rng.randint(0, 6)) for _ in "ioc"]
        usage = TokenUsage(
            prompt_tokens=rng.randint(0, 10**7),
            completion_tokens=rng.randint(0, 10**6),
            cached_tokens=rng.randint(0, 10**7),
        )
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        exact = (
            (usage.prompt_tokens - cached) * rates[0] + cached * rates[2]
        ) + usage.completion_tokens * rates[1]
        expected = int((exact * 1000).to_integral_value(rounding=ROUND_HALF_EVEN))
        priced = price(str(rates[0]), str(rates[1]), str(rates[2]))
        assert cost_nanos(usage, priced) == expected


def test_deepseek_chat_from_catalogue_with_cache_hits() -> None:
    usage = TokenUsage.from_openai(
        {
            "prompt_tokens": 10_000,
            "completion_tokens": 2_000,
            "prompt_cache_hit_tokens": 6_000,
            "prompt_cache_miss_tokens": 4_000,
        }
    )
    assert usage is not None
    # 4,000 x 0.28 + 6,000 x 0.028 + 2,000 x 0.42 = 1,120 + 168 + 840 = 2,128 micro-dollars
    assert cost_nanos(usage, catalogue()["deepseek-chat"]) == 2_128_000


def test_nanos_to_amount() -> None:
    assert nanos_to_amount(6_000_000) == Decimal("0.006")
    assert nanos_to_amount(23_750_000_000) == Decimal("23.75")
    assert nanos_to_amount(0) == 0


# --- hardware cost ------------------------------------------------------------------------------


def test_hardware_cost() -> None:
    # 10 s at $0.36/h = $0.001
    assert hardware_cost_nanos(10, Decimal("0.36")) == 1_000_000


@pytest.mark.parametrize(
    ("seconds", "per_hour", "nanos"),
    [
        (0.0, Decimal("0.36"), 0),
        (0.1, Decimal("0.36"), 10_000),
        (3600, Decimal("1.50"), 1_500_000_000),
        (1.5, Decimal("0.72"), 300_000),
        (10, Decimal("0"), 0),
    ],
)
def test_hardware_cost_cases(seconds: float, per_hour: Decimal, nanos: int) -> None:
    assert hardware_cost_nanos(seconds, per_hour) == nanos


# --- catalogue ----------------------------------------------------------------------------------


def test_catalogue_entries_have_a_date_and_currency() -> None:
    table = catalogue()
    assert len(table) >= 20
    for name, entry in table.items():
        assert isinstance(entry.as_of, dt.date), name
        assert entry.currency == "USD", name
        assert entry.input_per_1m >= 0, name
        assert entry.output_per_1m >= 0, name


def test_catalogue_deepseek_chat() -> None:
    entry = catalogue()["deepseek-chat"]
    assert entry.input_per_1m == Decimal("0.28")
    assert entry.cached_input_per_1m == Decimal("0.028")
    assert entry.output_per_1m == Decimal("0.42")
    assert entry.as_of == dt.date(2025, 9, 29)


def test_catalogue_entry_without_cached_rate() -> None:
    entry = catalogue()["qwen-plus"]
    assert entry.cached_input_per_1m is None
    assert (entry.input_per_1m, entry.output_per_1m) == (Decimal("0.4"), Decimal("1.2"))


def test_catalogue_prices_are_exact_decimals() -> None:
    entry = catalogue()["gpt-4.1-nano"]
    assert entry.cached_input_per_1m == Decimal("0.025")
    assert str(entry.input_per_1m) == "0.1"


# --- price lookup -------------------------------------------------------------------------------


def test_config_price_wins_over_catalogue() -> None:
    own = price("9", "9")
    assert price_for(remote("deepseek-chat", price=own)) is own


def test_config_price_applies_to_local_models_too() -> None:
    own = price("0.01", "0.02")
    model = ModelConfig(alias="l", provider="llama_cpp", target="gpt-4.1", price=own)
    assert price_for(model) is own


def test_exact_target() -> None:
    assert price_for(remote("deepseek-chat")) == catalogue()["deepseek-chat"]
    assert price_for(remote("gpt-4.1")) == catalogue()["gpt-4.1"]


def test_last_path_segment_fallback() -> None:
    found = price_for(remote("deepseek/deepseek-chat"))
    assert found == catalogue()["deepseek-chat"]
    assert price_for(remote("openrouter/openai/gpt-4o-mini")) == catalogue()["gpt-4o-mini"]


def test_llama_cpp_without_price_is_unpriced() -> None:
    model = ModelConfig(alias="l", provider="llama_cpp", target="gpt-4.1")
    assert price_for(model) is None


def test_unknown_target_is_unpriced() -> None:
    assert price_for(remote("no-such-model")) is None
    assert price_for(remote("vendor/no-such-model")) is None


# --- usage parsing ------------------------------------------------------------------------------


def test_from_openai_with_details() -> None:
    usage = TokenUsage.from_openai(
        {
            "prompt_tokens": 120,
            "completion_tokens": 80,
            "total_tokens": 200,
            "prompt_tokens_details": {"cached_tokens": 64},
            "completion_tokens_details": {"reasoning_tokens": 50},
        }
    )
    assert usage == TokenUsage(
        prompt_tokens=120, completion_tokens=80, reasoning_tokens=50, cached_tokens=64
    )


def test_from_openai_deepseek_cache_hits() -> None:
    usage = TokenUsage.from_openai(
        {"prompt_tokens": 100, "completion_tokens": 7, "prompt_cache_hit_tokens": 96}
    )
    assert usage == TokenUsage(prompt_tokens=100, completion_tokens=7, cached_tokens=96)


def test_from_openai_null_details_and_missing_fields() -> None:
    usage = TokenUsage.from_openai(
        {"prompt_tokens": 5, "prompt_tokens_details": None, "completion_tokens_details": None}
    )
    assert usage == TokenUsage(prompt_tokens=5)
    assert TokenUsage.from_openai({}) == TokenUsage()


@pytest.mark.parametrize("value", [None, [], "usage", 42])
def test_from_openai_non_dict_is_none(value: Any) -> None:
    assert TokenUsage.from_openai(value) is None


def test_to_openai_round_trip() -> None:
    usage = TokenUsage(prompt_tokens=10, completion_tokens=4, reasoning_tokens=2, cached_tokens=3)
    wire = usage.to_openai()
    assert wire["total_tokens"] == 14
    assert TokenUsage.from_openai(wire) == usage
