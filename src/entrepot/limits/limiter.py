"""Admission control for every request: requests and tokens per minute, and spending budgets, for
each subject a request is charged to (its key, its team).

A request is admitted against all its subjects or none: a refusal takes back whatever this request
had already counted, so being refused costs nothing. Budgets reserve the worst-case cost before the
request runs and settle at the real cost after, which keeps concurrent requests from spending past
a limit together. The ledger is read once per subject and period, to seed the counter; after that
no request touches the database.

A budget is kept in its own currency. A cost in another is converted at the configured rate table
(`currency_rates`) when it is reserved and when it settles — and the ledger is converted the same
way when a counter is seeded — or, if no rate converts it, the request is refused
(`CurrencyRateMissingError`): never run unpriced.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from entrepot.config import Budget, CurrencyRates, Limits
from entrepot.exceptions import BudgetExceededError, RateLimitedError
from entrepot.ledger.pricing import NANOS, Cost, nanos_to_amount
from entrepot.limits.counters import Counters, WindowState

WINDOW_SECONDS = 60.0
# A budget counter outlives its period by this much, so requests admitted just before the period
# ended can still settle against it.
SETTLE_GRACE = dt.timedelta(days=1)
BEGINNING = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
PERIOD_WORDS = {"day": "daily", "month": "monthly", "total": "total"}

Kind = Literal["requests", "tokens"]
KINDS: tuple[Kind, ...] = ("requests", "tokens")


@dataclass(frozen=True, slots=True)
class Subject:
    """`name` is "kind:id" and keys the counters; `label` is what people call it, for messages.

    Counter names and the budget in nanos are derived once here, not on every admission."""

    name: str
    limits: Limits
    label: str | None = None
    requests_counter: str = field(init=False, repr=False, compare=False)
    tokens_counter: str = field(init=False, repr=False, compare=False)
    budget_nanos: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        budget = self.limits.budget
        object.__setattr__(self, "requests_counter", f"{self.name}:requests")
        object.__setattr__(self, "tokens_counter", f"{self.name}:tokens")
        object.__setattr__(self, "budget_nanos", int(budget.amount * NANOS) if budget else 0)

    @property
    def who(self) -> str:
        kind, _, ident = self.name.partition(":")
        return f"{kind} {(self.label or ident)!r}"


class Reservation(NamedTuple):
    """`amount` reserved on a budget `counter`, in the budget's `currency`."""

    counter: str
    amount: int
    currency: str


@dataclass(slots=True)
class Admission:
    headers: dict[str, str]
    estimated_tokens: int
    token_windows: tuple[str, ...] = ()
    reservations: tuple[Reservation, ...] = ()
    settled: bool = field(default=False, repr=False)


@dataclass(slots=True)
class _Hit:
    kind: Kind
    counter: str
    recorded: int
    state: WindowState


@dataclass(slots=True)
class _Taken:
    hits: list[_Hit] = field(default_factory=list)
    reservations: list[Reservation] = field(default_factory=list)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Limiter:
    def __init__(
        self,
        counters: Counters,
        load_spend: Callable[[Subject, dt.datetime], Awaitable[int]],
        clock: Callable[[], dt.datetime] = _utc_now,
        rates: CurrencyRates | None = None,
    ) -> None:
        """`load_spend(subject, start)` is the ledger's spend in the budget's currency since
        `start`, in nanos, converted at the same `rates`."""
        self._counters = counters
        self._rates = rates or CurrencyRates()
        self._load_spend = load_spend
        self._clock = clock
        self._seeded: dict[str, str] = {}
        self._seeding: dict[str, asyncio.Lock] = {}

    async def admit(
        self,
        subjects: Sequence[Subject],
        *,
        estimated_tokens: int,
        worst_costs: Sequence[Cost] = (),
    ) -> Admission:
        """`worst_costs` bounds the request's cost on each deployment that may serve it, each in
        its own currency; a budget reserves the largest, converted into its currency. Empty for
        an unpriced model: the request is admitted while the budget has room, and reserves
        nothing."""
        taken = _Taken()
        try:
            for subject in subjects:
                await self._hit_windows(subject, estimated_tokens, taken)
            now = self._clock().astimezone(dt.UTC)
            for subject in subjects:
                budget = subject.limits.budget
                if budget is not None:
                    worst = self._worst(worst_costs, budget.currency)
                    await self._reserve(subject, budget, now, worst, taken)
        except BaseException:
            await self._roll_back(taken)
            raise
        return Admission(
            headers=_rate_headers(taken.hits, rolled_back=False),
            estimated_tokens=estimated_tokens,
            token_windows=tuple(h.counter for h in taken.hits if h.kind == "tokens"),
            reservations=tuple(taken.reservations),
        )

    async def settle(
        self, admission: Admission, *, actual_tokens: int, actual_cost: Cost | None
    ) -> None:
        """Safe to call more than once: only the first call counts. `actual_cost`'s currency
        was among those admission converted, so it converts here too."""
        if admission.settled:
            return
        admission.settled = True
        for reservation in admission.reservations:
            actual = 0
            if actual_cost is not None:
                nanos, currency = actual_cost
                actual = self._rates.convert(nanos, currency, reservation.currency)
            if reservation.amount or actual:
                await self._counters.settle(reservation.counter, reservation.amount, actual)
        correction = actual_tokens - admission.estimated_tokens
        if correction:
            for counter in admission.token_windows:
                await self._counters.add(counter, correction, WINDOW_SECONDS)

    def _worst(self, costs: Sequence[Cost], currency: str) -> int | None:
        """The largest of `costs` in `currency`; None if there are none (unpriced)."""
        worst = None
        for nanos, source in costs:
            amount = nanos if source == currency else self._rates.convert(nanos, source, currency)
            if worst is None or amount > worst:
                worst = amount
        return worst

    async def _hit_windows(self, subject: Subject, estimated_tokens: int, taken: _Taken) -> None:
        limits = subject.limits
        if limits.requests_per_minute is not None:
            await self._hit(
                subject, "requests", subject.requests_counter, limits.requests_per_minute, 1, taken
            )
        if limits.tokens_per_minute is not None:
            await self._hit(
                subject,
                "tokens",
                subject.tokens_counter,
                limits.tokens_per_minute,
                estimated_tokens,
                taken,
            )

    async def _hit(
        self, subject: Subject, kind: Kind, counter: str, limit: int, amount: int, taken: _Taken
    ) -> None:
        state = await self._counters.hit(counter, amount, limit, WINDOW_SECONDS)
        if not state.admitted:
            refused = _Hit(kind, counter, 0, state)
            headers = _rate_headers([*taken.hits, refused], rolled_back=True)
            headers["retry-after"] = str(max(1, math.ceil(state.reset_seconds)))
            raise RateLimitedError(
                _rate_message(subject, kind, amount, limit), kind=kind, headers=headers
            )
        taken.hits.append(_Hit(kind, counter, amount, state))

    async def _reserve(
        self,
        subject: Subject,
        budget: Budget,
        now: dt.datetime,
        worst: int | None,
        taken: _Taken,
    ) -> None:
        period, start, end = _period(budget, now)
        counter = f"{subject.name}:budget:{budget.currency}:{period}"
        if self._seeded.get(subject.name) != counter:
            ttl = (end + SETTLE_GRACE - now).total_seconds() if end else None
            await self._seed(subject, counter, start, ttl)
        limit = subject.budget_nanos
        if worst is None:
            spent, reserved = await self._counters.spent(counter)
            admitted = spent + reserved < limit
        else:
            admitted = await self._counters.reserve(counter, worst, limit)
        if not admitted:
            spent, reserved = await self._counters.spent(counter)
            message = _budget_message(subject, budget, spent, reserved, worst)
            raise BudgetExceededError(message, headers=_rate_headers(taken.hits, rolled_back=True))
        if worst is not None:
            taken.reservations.append(Reservation(counter, worst, budget.currency))

    async def _seed(
        self, subject: Subject, counter: str, start: dt.datetime, ttl: float | None
    ) -> None:
        """Read the ledger once per subject and period, however many requests arrive at once
        (the caller skips this when the counter is already seeded)."""
        lock = self._seeding.setdefault(counter, asyncio.Lock())
        async with lock:
            if self._seeded.get(subject.name) != counter:
                spent = await self._load_spend(subject, start)
                await self._counters.seed(counter, spent, ttl_seconds=ttl)
                self._seeded[subject.name] = counter
        self._seeding.pop(counter, None)

    async def _roll_back(self, taken: _Taken) -> None:
        for reservation in taken.reservations:
            await self._counters.settle(reservation.counter, reservation.amount, 0)
        for hit in taken.hits:
            await self._counters.add(hit.counter, -hit.recorded, WINDOW_SECONDS)


def _period(budget: Budget, now: dt.datetime) -> tuple[str, dt.datetime, dt.datetime | None]:
    """The period's counter suffix, its start (UTC) and its end (None: it never ends)."""
    return _period_of(budget.period, now.date())


@functools.lru_cache(maxsize=64)
def _period_of(period: str, day: dt.date) -> tuple[str, dt.datetime, dt.datetime | None]:
    """Remembered, as every request with a budget asks and the answer changes once a day."""
    if period == "day":
        start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        return start.strftime("%Y-%m-%d"), start, start + dt.timedelta(days=1)
    if period == "month":
        start = dt.datetime(day.year, day.month, 1, tzinfo=dt.UTC)
        end = (start + dt.timedelta(days=32)).replace(day=1)
        return start.strftime("%Y-%m"), start, end
    return "total", BEGINNING, None


def _rate_headers(hits: Sequence[_Hit], *, rolled_back: bool) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers, per kind from the subject with the least room left (the
    later reset breaking a tie); when the request was refused, as they stand after its counts
    were taken back."""
    tightest: dict[Kind, tuple[int, float, int]] = {}
    for hit in hits:
        state = hit.state
        remaining = state.limit - state.used + (hit.recorded if rolled_back else 0)
        candidate = (remaining if remaining > 0 else 0, -state.reset_seconds, state.limit)
        best = tightest.get(hit.kind)
        if best is None or candidate < best:
            tightest[hit.kind] = candidate
    headers: dict[str, str] = {}
    for kind in KINDS:
        if kind in tightest:
            remaining, negative_reset, limit = tightest[kind]
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
            headers[f"x-ratelimit-reset-{kind}"] = _duration(-negative_reset)
    return headers


def _duration(seconds: float) -> str:
    """Rounded up, in OpenAI's style: "250ms", "12s", "1m0s"."""
    if 0 < seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def _rate_message(subject: Subject, kind: Kind, amount: int, limit: int) -> str:
    if amount > limit:
        return (
            f"{subject.who} allows {limit} {kind} per minute; this request alone is estimated "
            f"at {amount}"
        )
    return f"{subject.who} exceeded {limit} {kind} per minute"


def _budget_message(
    subject: Subject, budget: Budget, spent: int, reserved: int, worst: int | None
) -> str:
    amount = nanos_to_amount(int(budget.amount * NANOS))
    message = (
        f"{subject.who} has used {nanos_to_amount(spent):.6f} of its {amount:.6f} "
        f"{budget.currency} {PERIOD_WORDS[budget.period]} budget"
    )
    if reserved:
        message += f", with {nanos_to_amount(reserved):.6f} reserved by requests in flight"
    if worst is not None:
        message += f"; this request may cost up to {nanos_to_amount(worst):.6f}"
    return message
