"""Admission control for every request: requests and tokens per minute, and spending budgets, for
each subject a request is charged to (its key, its team).

A request is admitted against all its subjects or none: a refusal takes back whatever this request
had already counted, so being refused costs nothing. Budgets reserve the worst-case cost before the
request runs and settle at the real cost after, which keeps concurrent requests from spending past
a limit together. All of a request's windows and budgets are asked of the counters at once (one
round trip when they are in Redis). The ledger is read only when the counters lack a budget — a
new period, a restarted gateway, a Redis that lost its data — to seed it; otherwise no request
touches the database.

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
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, NoReturn

from entrepot.config import Budget, Config, CurrencyRates, Limits
from entrepot.exceptions import BudgetExceededError, LimitsUnavailableError, RateLimitedError
from entrepot.ledger.pricing import NANOS, Cost, nanos_to_amount
from entrepot.limits.counters import (
    Ask,
    BudgetAsk,
    BudgetSettlement,
    Counters,
    Settlement,
    Verdict,
    WindowAsk,
    WindowState,
)

WINDOW_SECONDS = 60.0
# A budget counter outlives its period by this much, so requests admitted just before the period
# ended can still settle against it.
SETTLE_GRACE = dt.timedelta(days=1)
BEGINNING = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Beyond its requests' longest life, how long a reservation is held before it lapses.
HOLD_MARGIN_SECONDS = 60.0
# How many times a request asks the counters again after seeding budgets they did not have.
SEED_ATTEMPTS = 3
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
    """`degraded`: counted by this process alone, the shared counters being unreachable."""

    headers: dict[str, str]
    estimated_tokens: int
    token_windows: tuple[str, ...] = ()
    reservations: tuple[Reservation, ...] = ()
    request_id: str = ""
    admitted_at: int = 0
    degraded: bool = False
    settled: bool = field(default=False, repr=False)


@dataclass(slots=True)
class _Hit:
    kind: Kind
    counter: str
    recorded: int
    state: WindowState


class _Seeding(NamedTuple):
    subject: Subject
    start: dt.datetime
    ttl: float | None


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def hold_seconds(config: Config) -> float:
    """The longest a request can live, so the longest its reservations are held: every attempt
    `max_attempts` allows, each waiting its longest in a local queue and running until the
    longest `timeouts.total`, plus a margin for the rest of the pipeline."""
    models = config.models
    longest_run = max((m.timeouts.total for m in models), default=0.0)
    longest_wait = max((m.local.queue_timeout for m in models if m.is_local), default=0.0)
    attempts = max(
        (route.max_attempts for route in (config.default_route, *config.routes.values())),
    )
    return attempts * (longest_run + longest_wait) + HOLD_MARGIN_SECONDS


class Limiter:
    def __init__(
        self,
        counters: Counters,
        load_spend: Callable[[Subject, dt.datetime], Awaitable[int]],
        clock: Callable[[], dt.datetime] = _utc_now,
        rates: CurrencyRates | None = None,
        hold: float = 3600.0,
    ) -> None:
        """`load_spend(subject, start)` is the ledger's spend in the budget's currency since
        `start`, in nanos, converted at the same `rates`. `hold` is how long, in seconds, a
        reservation is held for a request that never settles (see `hold_seconds`)."""
        self._counters = counters
        self._rates = rates or CurrencyRates()
        self._load_spend = load_spend
        self._clock = clock
        self._hold = hold
        self._seeding: dict[str, asyncio.Task[None]] = {}

    async def admit(
        self,
        subjects: Sequence[Subject],
        *,
        estimated_tokens: int,
        worst_costs: Sequence[Cost] = (),
        request_id: str = "",
    ) -> Admission:
        """`worst_costs` bounds the request's cost on each deployment that may serve it, each in
        its own currency; a budget reserves the largest, converted into its currency. Empty for
        an unpriced model: the request is admitted while the budget has room, and reserves
        nothing. Everything is asked of the counters at once, and counted all or nothing."""
        windows: list[WindowAsk] = []
        kinds: list[tuple[Kind, Subject]] = []
        for subject in subjects:
            limits = subject.limits
            if limits.requests_per_minute is not None:
                limit = limits.requests_per_minute
                windows.append(WindowAsk(subject.requests_counter, 1, limit, WINDOW_SECONDS))
                kinds.append(("requests", subject))
            if limits.tokens_per_minute is not None:
                limit = limits.tokens_per_minute
                windows.append(
                    WindowAsk(subject.tokens_counter, estimated_tokens, limit, WINDOW_SECONDS)
                )
                kinds.append(("tokens", subject))
        budgets, owners, seedings = self._budgets(subjects, worst_costs)
        if not windows and not budgets:
            return Admission({}, estimated_tokens)
        ask = Ask(request_id or _request_id(), tuple(windows), tuple(budgets), self._hold)
        verdict = await self._decide(ask, seedings)
        hits = [
            _Hit(kind, ask.windows[i].name, ask.windows[i].amount, state)
            for i, ((kind, _), state) in enumerate(zip(kinds, verdict.windows, strict=False))
        ]
        if verdict.refused_window is not None:
            self._refuse_rate(ask, hits, kinds[verdict.refused_window][1])
        if verdict.refused_budget is not None:
            self._refuse_budget(ask, verdict, verdict.refused_budget, hits, owners)
        reservations = tuple(
            Reservation(b.name, b.amount, owner[1].currency)
            for b, owner in zip(budgets, owners, strict=True)
            if b.amount is not None
        )
        return Admission(
            headers=_rate_headers(hits, rolled_back=False),
            estimated_tokens=estimated_tokens,
            token_windows=tuple(h.counter for h in hits if h.kind == "tokens"),
            reservations=reservations,
            request_id=ask.request_id,
            admitted_at=verdict.admitted_at,
            degraded=verdict.degraded,
        )

    async def settle(
        self, admission: Admission, *, actual_tokens: int, actual_cost: Cost | None
    ) -> None:
        """Safe to call more than once: only the first call counts. `actual_cost`'s currency
        was among those admission converted, so it converts here too."""
        if admission.settled:
            return
        admission.settled = True
        budgets: list[BudgetSettlement] = []
        for reservation in admission.reservations:
            actual = 0
            if actual_cost is not None:
                nanos, currency = actual_cost
                actual = self._rates.convert(nanos, currency, reservation.currency)
            budgets.append(BudgetSettlement(reservation.counter, reservation.amount, actual))
        correction = actual_tokens - admission.estimated_tokens
        token_windows = admission.token_windows if correction else ()
        if budgets or token_windows:
            await self._counters.settle(
                Settlement(
                    admission.request_id,
                    tuple(budgets),
                    token_windows,
                    correction,
                    WINDOW_SECONDS,
                    admission.admitted_at,
                    admission.degraded,
                )
            )

    def _budgets(
        self, subjects: Sequence[Subject], worst_costs: Sequence[Cost]
    ) -> tuple[list[BudgetAsk], list[tuple[Subject, Budget]], dict[str, _Seeding]]:
        """What each budget asks: the counter for this period, the worst case in its currency
        (a missing rate is refused here, before anything is counted), and how to seed it."""
        asks: list[BudgetAsk] = []
        owners: list[tuple[Subject, Budget]] = []
        seedings: dict[str, _Seeding] = {}
        now: dt.datetime | None = None
        for subject in subjects:
            budget = subject.limits.budget
            if budget is None:
                continue
            now = now or self._clock().astimezone(dt.UTC)
            counter, start, end = budget_counter(subject.name, budget, now)
            ttl = (end + SETTLE_GRACE - now).total_seconds() if end else None
            asks.append(
                BudgetAsk(counter, self._worst(worst_costs, budget.currency), subject.budget_nanos)
            )
            owners.append((subject, budget))
            seedings[counter] = _Seeding(subject, start, ttl)
        return asks, owners, seedings

    async def _decide(self, ask: Ask, seedings: dict[str, _Seeding]) -> Verdict:
        """Ask the counters; budgets they do not have yet are seeded from the ledger, and the
        question asked again (a budget may vanish in between, say Redis restarting)."""
        for _ in range(SEED_ATTEMPTS):
            verdict = await self._counters.admit(ask)
            if not verdict.unseeded:
                return verdict
            await asyncio.gather(*(self._seed(name, seedings[name]) for name in verdict.unseeded))
        raise LimitsUnavailableError(
            f"budget counters vanished {SEED_ATTEMPTS} times while being seeded; retry shortly"
        )

    async def _seed(self, counter: str, seeding: _Seeding) -> None:
        """Read the ledger once per counter, however many requests find it missing at once:
        they all wait for the same seeding."""
        task = self._seeding.get(counter)
        if task is None:
            task = asyncio.ensure_future(self._load_and_seed(counter, seeding))
            self._seeding[counter] = task
            task.add_done_callback(lambda _: self._seeding.pop(counter, None))
        await asyncio.shield(task)

    async def _load_and_seed(self, counter: str, seeding: _Seeding) -> None:
        spent = await self._load_spend(seeding.subject, seeding.start)
        await self._counters.seed(counter, spent, ttl_seconds=seeding.ttl)

    def _worst(self, costs: Sequence[Cost], currency: str) -> int | None:
        """The largest of `costs` in `currency`; None if there are none (unpriced)."""
        worst = None
        for nanos, source in costs:
            amount = nanos if source == currency else self._rates.convert(nanos, source, currency)
            if worst is None or amount > worst:
                worst = amount
        return worst

    @staticmethod
    def _refuse_rate(ask: Ask, hits: list[_Hit], subject: Subject) -> NoReturn:
        refused = hits[-1]
        refused.recorded = 0
        headers = _rate_headers(hits, rolled_back=True)
        headers["retry-after"] = str(max(1, math.ceil(refused.state.reset_seconds)))
        asked = ask.windows[len(hits) - 1]
        raise RateLimitedError(
            _rate_message(subject, refused.kind, asked.amount, asked.limit),
            kind=refused.kind,
            headers=headers,
        )

    @staticmethod
    def _refuse_budget(
        ask: Ask,
        verdict: Verdict,
        index: int,
        hits: list[_Hit],
        owners: list[tuple[Subject, Budget]],
    ) -> NoReturn:
        subject, budget = owners[index]
        worst = ask.budgets[index].amount
        message = _budget_message(subject, budget, verdict.spent, verdict.reserved, worst)
        raise BudgetExceededError(message, headers=_rate_headers(hits, rolled_back=True))


def budget_counter(
    subject_name: str, budget: Budget, now: dt.datetime
) -> tuple[str, dt.datetime, dt.datetime | None]:
    """The counter of a subject's budget for the period `now` is in, the period's start (UTC)
    and its end (None: it never ends). Keyed by the period's start, so a new period starts a
    new counter and old ones expire."""
    period, start, end = _period(budget, now)
    return f"{subject_name}:budget:{budget.currency}:{period}", start, end


def _request_id() -> str:
    return f"lim_{time.time_ns():016x}{random.getrandbits(64):016x}"


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
