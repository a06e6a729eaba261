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
from entrepot.limits.periods import period_counter

WINDOW_SECONDS = 60.0
# A budget counter outlives its period by this much, so requests admitted just before the period
# ended can still settle against it.
SETTLE_GRACE = dt.timedelta(days=1)
# Beyond its requests' longest life, how long a reservation is held before it lapses.
HOLD_MARGIN_SECONDS = 30.0
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
    budget_currency: str = field(init=False, repr=False, compare=False)
    requests_ask: WindowAsk | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        limits = self.limits
        budget, rpm = limits.budget, limits.requests_per_minute
        requests = f"{self.name}:requests"
        object.__setattr__(self, "requests_counter", requests)
        object.__setattr__(self, "tokens_counter", f"{self.name}:tokens")
        object.__setattr__(self, "budget_nanos", int(budget.amount * NANOS) if budget else 0)
        object.__setattr__(self, "budget_currency", budget.currency if budget else "")
        ask = WindowAsk(requests, 1, rpm, WINDOW_SECONDS) if rpm is not None else None
        object.__setattr__(self, "requests_ask", ask)

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


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def hold_seconds(config: Config) -> float:
    """The longest a request can live, so the longest its reservations are held: every attempt
    `max_attempts` allows, each waiting its longest in a local queue and running until the
    longest `timeouts.total`, plus a margin for the rest of the pipeline."""
    models = config.models
    longest_run = max((m.timeouts.total for m in models), default=0.0)
    in_process = [m for m in models if m.provider == "llama_cpp"]
    longest_wait = max((m.local.queue_timeout for m in in_process), default=0.0)
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
        kinds: list[Kind] = []
        limited: list[Subject] = []  # whose window each is
        token_windows: list[str] = []
        budgets: list[BudgetAsk] = []
        owners: list[Subject] = []  # whose budget each is
        held: list[Reservation] = []
        now: dt.datetime | None = None
        for subject in subjects:
            limits = subject.limits
            requests = subject.requests_ask
            if requests is not None:
                windows.append(requests)
                kinds.append("requests")
                limited.append(subject)
            if limits.tokens_per_minute is not None:
                tokens = subject.tokens_counter
                windows.append(
                    WindowAsk(tokens, estimated_tokens, limits.tokens_per_minute, WINDOW_SECONDS)
                )
                kinds.append("tokens")
                limited.append(subject)
                token_windows.append(tokens)
            budget = limits.budget
            if budget is not None:
                now = now or self._clock().astimezone(dt.UTC)
                counter = period_counter(subject.name, budget.currency, budget.period, now.date())[
                    0
                ]
                worst = self._worst(worst_costs, budget.currency)
                budgets.append(BudgetAsk(counter, worst, subject.budget_nanos))
                owners.append(subject)
                if worst is not None:
                    held.append(Reservation(counter, worst, budget.currency))
        if not windows and not budgets:
            return Admission({}, estimated_tokens)
        ask = Ask(request_id or _request_id(), tuple(windows), tuple(budgets), self._hold)
        verdict = await self._counters.admit(ask)
        if verdict.unseeded:
            verdict = await self._seed_and_ask(ask, verdict, owners)
        hits = [
            _Hit(kind, window.name, window.amount, state)
            for kind, window, state in zip(kinds, windows, verdict.windows, strict=False)
        ]
        if verdict.refused_window is not None:
            self._refuse_rate(ask, hits, limited[verdict.refused_window])
        if verdict.refused_budget is not None:
            self._refuse_budget(ask, verdict, verdict.refused_budget, hits, owners)
        return Admission(
            _rate_headers(hits, rolled_back=False) if hits else {},
            estimated_tokens,
            tuple(token_windows) if token_windows else (),
            tuple(held) if held else (),
            ask.request_id,
            verdict.admitted_at,
            verdict.degraded,
        )

    async def settle(
        self, admission: Admission, *, actual_tokens: int, actual_cost: Cost | None
    ) -> None:
        """Safe to call more than once: only the first call counts. `actual_cost`'s currency
        was among those admission converted, so it converts here too."""
        if admission.settled:
            return
        admission.settled = True
        budgets: tuple[BudgetSettlement, ...] = ()
        if admission.reservations:
            nanos, source = actual_cost or (0, "")
            convert = self._rates.convert
            budgets = tuple(
                [
                    BudgetSettlement(
                        counter,
                        amount,
                        nanos if source in ("", currency) else convert(nanos, source, currency),
                    )
                    for counter, amount, currency in admission.reservations
                ]
            )
        correction = actual_tokens - admission.estimated_tokens
        token_windows = admission.token_windows if correction else ()
        if budgets or token_windows:
            await self._counters.settle(
                Settlement(
                    admission.request_id,
                    budgets,
                    token_windows,
                    correction,
                    WINDOW_SECONDS,
                    admission.admitted_at,
                    admission.degraded,
                )
            )

    async def _seed_and_ask(self, ask: Ask, verdict: Verdict, owners: list[Subject]) -> Verdict:
        """Budgets the counters do not have yet are seeded from the ledger, and the question
        asked again (a budget may vanish in between, say Redis restarting)."""
        by_counter = {b.name: subject for b, subject in zip(ask.budgets, owners, strict=True)}
        for _ in range(SEED_ATTEMPTS):
            await asyncio.gather(*(self._seed(name, by_counter[name]) for name in verdict.unseeded))
            verdict = await self._counters.admit(ask)
            if not verdict.unseeded:
                return verdict
        raise LimitsUnavailableError(
            f"budget counters vanished {SEED_ATTEMPTS} times while being seeded; retry shortly"
        )

    async def _seed(self, counter: str, subject: Subject) -> None:
        """Read the ledger once per counter, however many requests find it missing at once:
        they all wait for the same seeding."""
        task = self._seeding.get(counter)
        if task is None:
            task = asyncio.ensure_future(self._load_and_seed(counter, subject))
            self._seeding[counter] = task
            task.add_done_callback(lambda _: self._seeding.pop(counter, None))
        await asyncio.shield(task)

    async def _load_and_seed(self, counter: str, subject: Subject) -> None:
        budget = subject.limits.budget
        assert budget is not None
        now = self._clock().astimezone(dt.UTC)
        _, start, end = period_counter(subject.name, budget.currency, budget.period, now.date())
        ttl = (end + SETTLE_GRACE - now).total_seconds() if end else None
        spent = await self._load_spend(subject, start)
        await self._counters.seed(counter, spent, ttl_seconds=ttl)

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
        ask: Ask, verdict: Verdict, index: int, hits: list[_Hit], owners: list[Subject]
    ) -> NoReturn:
        subject = owners[index]
        budget = subject.limits.budget
        assert budget is not None
        worst = ask.budgets[index].amount
        message = _budget_message(subject, budget, verdict.spent, verdict.reserved, worst)
        raise BudgetExceededError(message, headers=_rate_headers(hits, rolled_back=True))


def _request_id() -> str:
    return f"lim_{time.time_ns():016x}{random.getrandbits(64):016x}"


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
