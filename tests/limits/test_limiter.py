"""The Limiter over MemoryCounters: errors and headers, all-or-nothing admission across subjects,
budget periods and seeding from the ledger, settling, and exactness under concurrency."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from decimal import Decimal

import pytest

from entrepot.config import Budget, Config, CurrencyRates, Limits
from entrepot.exceptions import CurrencyRateMissingError
from entrepot.ledger.pricing import Cost
from entrepot.limits.counters import MemoryCounters
from entrepot.limits.limiter import (
    Admission,
    BudgetExceededError,
    Limiter,
    RateLimitedError,
    Reservation,
    Subject,
    hold_seconds,
)
from entrepot.limits.periods import BEGINNING

NOW = dt.datetime(2024, 5, 17, 13, 45, tzinfo=dt.UTC)
CENT = 10_000_000  # nanos


class Ledger:
    """A stand-in for the usage table: what each subject spent, and every query made."""

    def __init__(self, spent: int = 0, delay: float = 0.0) -> None:
        self.spent = spent
        self.delay = delay
        self.calls: list[tuple[str, dt.datetime]] = []

    async def __call__(self, subject: Subject, start: dt.datetime) -> int:
        self.calls.append((subject.name, start))
        await asyncio.sleep(self.delay)
        return self.spent


class SeedRecorder(MemoryCounters):
    def __init__(self) -> None:
        super().__init__(clock=lambda: 30.0)
        self.ttls: dict[str, float | None] = {}

    async def seed(self, name: str, spent: int, *, ttl_seconds: float | None = None) -> None:
        self.ttls[name] = ttl_seconds
        await super().seed(name, spent, ttl_seconds=ttl_seconds)


def usd(nanos: int) -> Cost:
    return Cost(nanos, "USD")


def budget(amount: str, period: str = "month") -> Budget:
    return Budget.model_validate({"amount": Decimal(amount), "period": period})


def limiter(
    counters: MemoryCounters, ledger: Ledger | None = None, now: dt.datetime = NOW
) -> Limiter:
    return Limiter(counters, ledger or Ledger(), clock=lambda: now)


def test_requests_per_minute_refusal_is_a_429_with_headers() -> None:
    team = Subject("team:research", Limits(requests_per_minute=2))
    subject_limiter = limiter(MemoryCounters(lambda: 30.0))

    async def scenario() -> list[Admission]:
        return [
            await subject_limiter.admit([team], estimated_tokens=10, worst_costs=())
            for _ in range(2)
        ]

    admitted = asyncio.run(scenario())
    assert admitted[1].headers == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m30s",
    }
    with pytest.raises(RateLimitedError) as caught:
        asyncio.run(subject_limiter.admit([team], estimated_tokens=10, worst_costs=()))
    error = caught.value
    assert (error.status_code, error.error_type, error.code) == (
        429,
        "requests",
        "rate_limit_exceeded",
    )
    assert error.message == "team 'research' exceeded 2 requests per minute"
    # Two of two at 0-60s: the weighted count drops to one at 90s, 60 seconds from now.
    assert error.headers == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m0s",
        "retry-after": "60",
    }


def test_tokens_per_minute_uses_the_estimate_then_the_actual_count() -> None:
    key = Subject("key:7", Limits(tokens_per_minute=250), label="tests")
    counters = MemoryCounters(lambda: 0.5)
    subject_limiter = limiter(counters)

    async def scenario() -> RateLimitedError:
        first = await subject_limiter.admit([key], estimated_tokens=100, worst_costs=())
        await subject_limiter.admit([key], estimated_tokens=100, worst_costs=())
        with pytest.raises(RateLimitedError) as caught:
            await subject_limiter.admit([key], estimated_tokens=100, worst_costs=())
        await subject_limiter.settle(first, actual_tokens=40, actual_cost=None)
        third = await subject_limiter.admit([key], estimated_tokens=100, worst_costs=())
        assert third.headers["x-ratelimit-remaining-tokens"] == "10"
        assert third.headers["x-ratelimit-reset-tokens"] == "2m0s"
        return caught.value

    error = asyncio.run(scenario())
    assert (error.status_code, error.error_type) == (429, "tokens")
    assert error.message == "key 'tests' exceeded 250 tokens per minute"
    assert error.headers["x-ratelimit-remaining-tokens"] == "50"


def test_a_request_larger_than_the_token_limit_says_so() -> None:
    key = Subject("key:7", Limits(tokens_per_minute=100), label="tests")
    with pytest.raises(RateLimitedError) as caught:
        asyncio.run(limiter(MemoryCounters()).admit([key], estimated_tokens=500, worst_costs=()))
    assert caught.value.message == (
        "key 'tests' allows 100 tokens per minute; this request alone is estimated at 500"
    )


def test_headers_come_from_the_most_constrained_subject() -> None:
    key = Subject("key:1", Limits(requests_per_minute=100, tokens_per_minute=1_000))
    team = Subject("team:a", Limits(requests_per_minute=5, tokens_per_minute=1_000_000))
    admission = asyncio.run(
        limiter(MemoryCounters(lambda: 59.9)).admit(
            [key, team], estimated_tokens=300, worst_costs=()
        )
    )
    assert admission.headers == {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "4",
        "x-ratelimit-reset-requests": "1m1s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "700",
        "x-ratelimit-reset-tokens": "1m1s",
    }


def test_a_refusal_by_one_subject_takes_back_the_others_counts() -> None:
    key = Subject(
        "key:1",
        Limits(requests_per_minute=10, tokens_per_minute=1_000, budget=budget("1")),
        label="tests",
    )
    rate_team = Subject("team:a", Limits(requests_per_minute=1))
    broke_team = Subject("team:b", Limits(budget=budget("0.01")))
    counters = MemoryCounters(lambda: 0.0)
    subject_limiter = limiter(counters)
    key_budget = "key:1:budget:USD:2024-05"

    async def key_counts() -> tuple[int, int, tuple[int, int]]:
        requests = counters.hit("key:1:requests", 0, 10, 60.0)
        tokens = counters.hit("key:1:tokens", 0, 1_000, 60.0)
        return requests.used, tokens.used, counters.spent(key_budget)

    async def scenario() -> None:
        await subject_limiter.admit([key, rate_team], estimated_tokens=100, worst_costs=[usd(CENT)])
        before = await key_counts()
        assert before == (1, 100, (0, CENT))
        with pytest.raises(RateLimitedError):
            await subject_limiter.admit(
                [key, rate_team], estimated_tokens=100, worst_costs=[usd(CENT)]
            )
        assert await key_counts() == before
        with pytest.raises(BudgetExceededError) as caught:
            await subject_limiter.admit(
                [key, broke_team], estimated_tokens=100, worst_costs=[usd(2 * CENT)]
            )
        assert await key_counts() == before
        assert counters.spent("team:b:budget:USD:2024-05") == (0, 0)
        assert caught.value.headers == {
            "x-ratelimit-limit-requests": "10",
            "x-ratelimit-remaining-requests": "9",
            "x-ratelimit-reset-requests": "2m0s",
            "x-ratelimit-limit-tokens": "1000",
            "x-ratelimit-remaining-tokens": "900",
            "x-ratelimit-reset-tokens": "2m0s",
        }

    asyncio.run(scenario())


def test_an_exhausted_budget_refuses_even_unpriced_requests_with_a_402() -> None:
    key = Subject("key:12", Limits(budget=budget("10")), label="tests")
    subject_limiter = limiter(MemoryCounters(), Ledger(spent=10 * 1_000_000_000))
    with pytest.raises(BudgetExceededError) as caught:
        asyncio.run(subject_limiter.admit([key], estimated_tokens=1, worst_costs=()))
    error = caught.value
    assert (error.status_code, error.error_type, error.code) == (
        402,
        "insufficient_quota",
        "budget_exceeded",
    )
    assert error.message == "key 'tests' has used 10.000000 of its 10.000000 USD monthly budget"
    assert error.headers == {}


def test_a_worst_case_that_does_not_fit_is_refused_and_says_why() -> None:
    team = Subject("team:research", Limits(budget=budget("0.05", "day")))
    subject_limiter = limiter(MemoryCounters(), Ledger(spent=3 * CENT))

    async def scenario() -> str:
        await subject_limiter.admit([team], estimated_tokens=1, worst_costs=[usd(CENT)])
        with pytest.raises(BudgetExceededError) as caught:
            await subject_limiter.admit([team], estimated_tokens=1, worst_costs=[usd(2 * CENT)])
        return caught.value.message

    assert asyncio.run(scenario()) == (
        "team 'research' has used 0.030000 of its 0.050000 USD daily budget, with 0.010000 "
        "reserved by requests in flight; this request may cost up to 0.020000"
    )


@pytest.mark.parametrize(
    ("period", "now", "counter", "start", "ttl"),
    [
        (
            "day",
            NOW,
            "key:1:budget:USD:2024-05-17",
            dt.datetime(2024, 5, 17, tzinfo=dt.UTC),
            (10 * 3600 + 15 * 60) + 86400.0,
        ),
        (
            "month",
            NOW,
            "key:1:budget:USD:2024-05",
            dt.datetime(2024, 5, 1, tzinfo=dt.UTC),
            (14 * 86400 + 10 * 3600 + 15 * 60) + 86400.0,
        ),
        (
            "month",
            dt.datetime(2024, 12, 31, 12, tzinfo=dt.UTC),
            "key:1:budget:USD:2024-12",
            dt.datetime(2024, 12, 1, tzinfo=dt.UTC),
            12 * 3600 + 86400.0,
        ),
        ("total", NOW, "key:1:budget:USD:total", BEGINNING, None),
    ],
)
def test_budget_periods(
    period: str, now: dt.datetime, counter: str, start: dt.datetime, ttl: float | None
) -> None:
    key = Subject("key:1", Limits(budget=budget("5", period)))
    counters = SeedRecorder()
    ledger = Ledger()
    admission = asyncio.run(
        limiter(counters, ledger, now).admit([key], estimated_tokens=1, worst_costs=[usd(7)])
    )
    assert admission.reservations == (Reservation(counter, 7, "USD"),)
    assert ledger.calls == [("key:1", start)]
    assert counters.ttls == {counter: ttl}


def test_the_ledger_is_read_once_per_period_and_seeds_the_counter() -> None:
    key = Subject("key:1", Limits(budget=budget("1", "day")))
    counters = MemoryCounters()
    ledger = Ledger(spent=5 * CENT, delay=0.01)
    clock = {"now": NOW}
    subject_limiter = Limiter(counters, ledger, clock=lambda: clock["now"])

    async def admit() -> Admission:
        return await subject_limiter.admit([key], estimated_tokens=1, worst_costs=[usd(CENT)])

    async def scenario() -> None:
        await asyncio.gather(*(admit() for _ in range(10)))
        await admit()
        assert counters.spent("key:1:budget:USD:2024-05-17") == (5 * CENT, 11 * CENT)
        clock["now"] = NOW + dt.timedelta(days=1)
        await admit()
        assert counters.spent("key:1:budget:USD:2024-05-18") == (5 * CENT, CENT)

    asyncio.run(scenario())
    assert ledger.calls == [
        ("key:1", dt.datetime(2024, 5, 17, tzinfo=dt.UTC)),
        ("key:1", dt.datetime(2024, 5, 18, tzinfo=dt.UTC)),
    ]


def test_settle_moves_the_reservation_to_the_actual_cost_once() -> None:
    key = Subject("key:1", Limits(tokens_per_minute=1_000, budget=budget("1")))
    counters = MemoryCounters(lambda: 0.0)
    subject_limiter = limiter(counters)
    name = "key:1:budget:USD:2024-05"

    async def scenario() -> None:
        priced = await subject_limiter.admit([key], estimated_tokens=300, worst_costs=[usd(CENT)])
        unpriced = await subject_limiter.admit([key], estimated_tokens=100, worst_costs=())
        assert counters.spent(name) == (0, CENT)
        for _ in range(2):
            await subject_limiter.settle(priced, actual_tokens=120, actual_cost=usd(4_000))
            await subject_limiter.settle(unpriced, actual_tokens=100, actual_cost=None)
        assert counters.spent(name) == (4_000, 0)
        assert (counters.hit("key:1:tokens", 0, 1_000, 60.0)).used == 220

    asyncio.run(scenario())


RATES = CurrencyRates.model_validate(
    {"as_of": "2026-11-01", "base": "USD", "rates": {"EUR": "1.08", "CNY": "0.14"}}
)


def test_a_cost_in_another_currency_is_converted_at_the_dated_rate() -> None:
    key = Subject("key:1", Limits(budget=budget("1")))
    counters = MemoryCounters()
    subject_limiter = Limiter(counters, Ledger(), clock=lambda: NOW, rates=RATES)
    name = "key:1:budget:USD:2024-05"

    async def scenario() -> None:
        admission = await subject_limiter.admit(
            [key], estimated_tokens=1, worst_costs=[usd(CENT), Cost(CENT, "EUR")]
        )
        assert admission.reservations == (Reservation(name, 10_800_000, "USD"),)
        await subject_limiter.settle(admission, actual_tokens=1, actual_cost=Cost(4_000, "EUR"))
        assert counters.spent(name) == (4_320, 0)

    asyncio.run(scenario())


def test_cross_rates_go_through_the_base_currency() -> None:
    key = Subject("key:1", Limits(budget=Budget(amount=Decimal(1), currency="CNY")))
    counters = MemoryCounters()
    subject_limiter = Limiter(counters, Ledger(), clock=lambda: NOW, rates=RATES)

    async def scenario() -> None:
        admission = await subject_limiter.admit(
            [key], estimated_tokens=1, worst_costs=[Cost(7_000, "EUR")]
        )
        # 1 EUR = 1.08 USD = 1.08 / 0.14 CNY
        assert admission.reservations[0].amount == 54_000

    asyncio.run(scenario())


def test_a_cost_with_no_rate_is_refused_naming_the_rate_and_takes_nothing() -> None:
    key = Subject("key:1", Limits(requests_per_minute=5, budget=budget("1")))
    counters = MemoryCounters(lambda: 30.0)
    subject_limiter = limiter(counters)

    async def scenario() -> None:
        with pytest.raises(CurrencyRateMissingError) as caught:
            await subject_limiter.admit([key], estimated_tokens=1, worst_costs=[Cost(CENT, "EUR")])
        assert "EUR" in caught.value.message and "currency_rates" in caught.value.message
        assert caught.value.status_code == 500 and caught.value.code == "currency_rate_missing"
        assert counters.spent("key:1:budget:USD:2024-05") == (0, 0)
        assert (counters.hit("key:1:requests", 0, 5, 60.0)).used == 0

    asyncio.run(scenario())


def test_a_key_without_a_budget_needs_no_rate() -> None:
    key = Subject("key:1", Limits(requests_per_minute=5))
    admission = asyncio.run(
        limiter(MemoryCounters()).admit([key], estimated_tokens=1, worst_costs=[Cost(1, "EUR")])
    )
    assert admission.reservations == ()


async def spend_concurrently(rng: random.Random | None) -> tuple[int, int]:
    """64 requests, each reserving 1.5 and costing 1 against a budget of 10: returns (admitted,
    settled spend). Without `rng`, every admit happens before any settle; with it, requests start
    and finish at random moments, so admits and settles interleave."""
    key = Subject("key:1", Limits(budget=budget("0.01")))
    counters = MemoryCounters()
    subject_limiter = limiter(counters)
    attempts: list[bool] = []
    all_attempted = asyncio.Event()

    async def request() -> bool:
        if rng:
            await asyncio.sleep(rng.uniform(0, 0.005))
        try:
            admission: Admission | None = await subject_limiter.admit(
                [key], estimated_tokens=1, worst_costs=[usd(1_500_000)]
            )
        except BudgetExceededError:
            admission = None
        attempts.append(admission is not None)
        if len(attempts) == 64:
            all_attempted.set()
        if admission is None:
            return False
        if rng:
            await asyncio.sleep(rng.uniform(0, 0.005))
        else:
            await all_attempted.wait()
        await subject_limiter.settle(admission, actual_tokens=1, actual_cost=usd(1_000_000))
        return True

    results = await asyncio.gather(*(request() for _ in range(64)))
    spent, reserved = counters.spent("key:1:budget:USD:2024-05")
    assert reserved == 0
    return sum(results), spent


def test_all_admits_before_any_settle_admit_exactly_what_fits() -> None:
    # floor(10_000_000 / 1_500_000) = 6
    assert asyncio.run(spend_concurrently(None)) == (6, 6_000_000)


@pytest.mark.parametrize("seed", range(5))
def test_interleaved_requests_never_spend_past_the_budget(seed: int) -> None:
    admitted, spent = asyncio.run(spend_concurrently(random.Random(seed)))
    assert spent == admitted * 1_000_000 <= 10_000_000
    assert admitted >= 6


def test_reservations_are_held_for_the_longest_life_a_request_can_have() -> None:
    config = Config.model_validate(
        {
            "models": [
                {
                    "alias": "a",
                    "provider": "llama_cpp",
                    "target": "x",
                    "local": {"queue_timeout": 30},
                },
                {
                    "alias": "b",
                    "provider": "openai_compatible",
                    "target": "y",
                    "base_url": "http://127.0.0.1:9/v1",
                    "timeouts": {"total": 200},
                },
            ],
            "default_route": {"max_attempts": 2},
            "routes": {"b": {"max_attempts": 3}},
        }
    )
    # Three attempts, each queued up to 30 s and running up to 600 s (a's default), plus 30 s.
    assert hold_seconds(config) == 3 * (600 + 30) + 30
