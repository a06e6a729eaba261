"""Tokens to money. Prices ship as data (`prices.yaml`), each with the date it was read, and a
model's own `price` in config overrides the catalogue.

Amounts are Decimals end to end and stored as integer billionths, so a ledger total is exact.
Reasoning tokens are already part of `completion_tokens` (OpenAI's convention, which DeepSeek and
Qwen follow), so they are not billed twice; cached prompt tokens are billed at the cached rate.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from importlib import resources
from typing import NamedTuple

import yaml

from entrepot.config import ModelConfig, Price
from entrepot.types import TokenUsage

NANOS = Decimal(1_000_000_000)


class Cost(NamedTuple):
    """An amount in billionths of `currency`: a cost is never a bare number, so a budget kept in
    another currency converts it (or refuses it) instead of adding it up unconverted."""

    nanos: int
    currency: str


@lru_cache(maxsize=1)
def catalogue() -> dict[str, Price]:
    """The shipped catalogue, keyed by upstream model name."""
    text = resources.files("entrepot.ledger").joinpath("prices.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    prices: dict[str, Price] = {}
    for vendor in raw["vendors"]:
        for name, entry in vendor["models"].items():
            prices[name] = Price(
                input_per_1m=Decimal(str(entry["input"])),
                output_per_1m=Decimal(str(entry["output"])),
                cached_input_per_1m=(
                    Decimal(str(entry["cached_input"])) if "cached_input" in entry else None
                ),
                currency=vendor.get("currency", "USD"),
                as_of=vendor["as_of"],
            )
    return prices


def price_for(model: ModelConfig) -> Price | None:
    """Config first; then the catalogue by exact target, then by the last path segment
    (`deepseek/deepseek-chat` on a router is priced as `deepseek-chat`)."""
    if model.price is not None:
        return model.price
    if model.provider == "llama_cpp":
        return None
    table = catalogue()
    return table.get(model.target) or table.get(model.target.rsplit("/", 1)[-1])


def cost_nanos(usage: TokenUsage, price: Price) -> int:
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    per_input, per_cached, per_output, denominator = _rates(price)
    exact = (
        (usage.prompt_tokens - cached) * per_input
        + cached * per_cached
        + usage.completion_tokens * per_output
    )
    nanos, remainder = divmod(exact, denominator)
    if 2 * remainder > denominator or (2 * remainder == denominator and nanos % 2):
        nanos += 1
    return nanos


# Rates per price object (kept beside it, so a reused id is noticed). An lru_cache keyed by the
# three Decimals cost as much as the arithmetic it saved — a Decimal's hash is not cached — and
# a request is priced twice (its worst case, then its cost).
_RATES: dict[int, tuple[Price, tuple[int, int, int, int]]] = {}
_RATES_KEPT = 1024


def _rates(price: Price) -> tuple[int, int, int, int]:
    entry = _RATES.get(id(price))
    if entry is None or entry[0] is not price:
        if len(_RATES) >= _RATES_KEPT:
            _RATES.clear()
        cached_rate = price.cached_input_per_1m
        rates = _nanos_per_token(
            price.input_per_1m,
            price.input_per_1m if cached_rate is None else cached_rate,
            price.output_per_1m,
        )
        entry = _RATES[id(price)] = (price, rates)
    return entry[1]


def _nanos_per_token(
    input_per_1m: Decimal, cached_per_1m: Decimal, output_per_1m: Decimal
) -> tuple[int, int, int, int]:
    """Each rate in billionths per token as an integer over one shared denominator: a cost is then
    exact integer arithmetic, rounded half to even once, with no Decimal work per request."""
    ratios = [
        (rate * 1000).as_integer_ratio() for rate in (input_per_1m, cached_per_1m, output_per_1m)
    ]
    denominator = math.lcm(*(q for _, q in ratios))
    per_input, per_cached, per_output = (p * (denominator // q) for p, q in ratios)
    return per_input, per_cached, per_output, denominator


def hardware_cost_nanos(busy_seconds: float, per_hour: Decimal) -> int:
    """A local model's cost is the machine time it occupied, not zero."""
    amount = Decimal(str(busy_seconds)) * per_hour / Decimal(3600)
    return int((amount * NANOS).to_integral_value(rounding=ROUND_HALF_EVEN))


def nanos_to_amount(nanos: int) -> Decimal:
    return Decimal(nanos) / NANOS
