"""`strategy: good_enough`: send a request to the cheapest candidate that published bench
evidence proves good enough for the request's task, else to the route's reference.

`decide` is the one place the choice is made: the request path calls it (through the routing
table, see `RoutingTable.choose`) and so does `entrepot route --explain`, which shows the
verdict it gives each candidate. A candidate qualifies only on evidence that is

- for this task and measured against this route's reference,
- fresh: published within `max_age_days`, and priced as the configuration prices the model
  today (the price fingerprint matches; a changed price may change which model is cheaper),
- clearing the bar by its interval's *lower* bound: `relative_low >= min_quality`,
- priced, and cheaper per item than the reference (where the reference's own evidence for the
  task is priced as today).

The evidence comes from the store through an `EvidenceBoard`, an in-memory copy refreshed in
the background every few seconds: no request waits on a query, and every replica reads the
same table, so a fleet agrees within one refresh.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Engine

from entrepot.config import Config, CurrencyRates, Price, RouteConfig
from entrepot.exceptions import CurrencyRateMissingError, InvalidRequestError
from entrepot.ledger.hardware import hourly_rate
from entrepot.ledger.pricing import price_for
from entrepot.store.evidence import Evidence, EvidenceKey, latest
from entrepot.types import ApiKey

TASK_HEADER = "x-entrepot-task"
_TASK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")
REFRESH_SECONDS = 5.0

log = logging.getLogger(__name__)

Board = Mapping[EvidenceKey, Evidence]
NO_EVIDENCE: Board = {}


def check_task(task: str, param: str) -> str:
    """A task name as routing and the ledger take it: a short token (letters, digits and
    `._:/-`, at most 64), so no client writes text of its own choosing into the ledger."""
    if not _TASK.fullmatch(task):
        raise InvalidRequestError(
            f"the task must be 1-64 letters, digits or ._:/- starting with a letter or digit,"
            f" got {task[:80]!r}",
            param=param,
        )
    return task


def request_task(header: str | None, key: ApiKey | None) -> str | None:
    """The task a request is routed for: its `x-entrepot-task` header, else its key's default."""
    if header is not None:
        return check_task(header, TASK_HEADER)
    return key.default_task if key is not None else None


def price_fingerprint(price: Price | None, hardware_cost_per_hour: Decimal | None) -> str:
    """Identifies how a model is priced (token prices with their date and currency, or a
    hardware cost per hour), so evidence priced otherwise than today can be told apart."""
    if price is not None:
        text = (
            f"tokens {price.input_per_1m.normalize()} {price.output_per_1m.normalize()}"
            f" {price.cached_input_per_1m} {price.currency} {price.as_of.isoformat()}"
        )
    elif hardware_cost_per_hour is not None:
        text = f"hardware {hardware_cost_per_hour.normalize()}"
    else:
        text = "unpriced"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def configured_fingerprints(config: Config) -> dict[str, str]:
    """Each alias's price fingerprint as the configuration prices it now (its first deployment,
    the one `entrepot bench` describes an alias by)."""
    fingerprints: dict[str, str] = {}
    for model in config.models:
        if model.alias not in fingerprints:
            price = price_for(model)
            rate = hourly_rate(model) if price is None else None
            per_hour = rate.per_hour if rate is not None else None
            fingerprints[model.alias] = price_fingerprint(price, per_hour)
    return fingerprints


@dataclass(frozen=True, slots=True)
class Verdict:
    """What `decide` made of one candidate, with the evidence it read (None: there was none)."""

    alias: str
    evidence: Evidence | None
    chosen: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    route: str
    task: str | None
    alias: str  # the chosen candidate, or the reference
    reference: str
    evidence_id: str | None  # the row the choice rests on; None when the reference serves
    verdicts: tuple[Verdict, ...]

    @property
    def aliases(self) -> tuple[str, ...]:
        """The aliases to try, in order: the choice, then the reference as its fallback."""
        return tuple(dict.fromkeys((self.alias, self.reference)))


@dataclass(frozen=True, slots=True)
class Inputs:
    """What a decision depends on besides the route and the task."""

    board: Board
    fingerprints: Mapping[str, str]
    rates: CurrencyRates
    now: dt.datetime


def decide(name: str, route: RouteConfig, task: str | None, inputs: Inputs) -> Decision:
    assert route.reference is not None, "validated with the configuration"
    reference = route.reference
    passed: list[tuple[int, str, Evidence]] = []
    reasons: dict[str, tuple[Evidence | None, str]] = {}
    for alias in dict.fromkeys(route.candidates):
        evidence = inputs.board.get((task, alias, reference)) if task is not None else None
        problem, cost = _judge(route, task, alias, evidence, inputs)
        reasons[alias] = (evidence, problem or "")
        if problem is None and evidence is not None and cost is not None:
            passed.append((cost, alias, evidence))
    passed.sort(key=lambda entry: entry[0])
    chosen = passed[0] if passed else None
    verdicts = []
    for alias, (evidence, reason) in reasons.items():
        is_chosen = chosen is not None and chosen[1] == alias
        if is_chosen:
            reason = f"chosen: the cheapest candidate clearing min_quality {route.min_quality}"
        elif not reason:
            assert chosen is not None
            reason = f"clears min_quality, but {chosen[1]} is cheaper"
        verdicts.append(Verdict(alias, evidence, is_chosen, reason))
    ref_evidence = inputs.board.get((task, reference, reference)) if task is not None else None
    verdicts.append(
        Verdict(
            reference,
            ref_evidence,
            chosen is None,
            "the reference: serves when no candidate qualifies, and is every choice's fallback",
        )
    )
    return Decision(
        name,
        task,
        chosen[1] if chosen else reference,
        reference,
        chosen[2].id if chosen else None,
        tuple(verdicts),
    )


def _judge(
    route: RouteConfig, task: str | None, alias: str, evidence: Evidence | None, inputs: Inputs
) -> tuple[str | None, int | None]:
    """Why `alias` does not qualify (None: it does), and its cost per item in the base
    currency when it does."""
    if task is None:
        return f"no task: no {TASK_HEADER} header and the key has no default task", None
    if evidence is None:
        return f"no published evidence for task {task!r} against {route.reference!r}", None
    age = inputs.now - evidence.published_at
    if age > dt.timedelta(days=route.max_age_days):
        return f"evidence is {age.days} days old (max_age_days {route.max_age_days})", None
    if evidence.price_fingerprint != inputs.fingerprints.get(alias):
        return "its price in the configuration changed since the evidence was published", None
    low = evidence.relative_low
    if low is None:
        return "the evidence has no paired comparison with the reference", None
    if low < route.min_quality:
        return f"lower bound {low:.3f} is below min_quality {route.min_quality}", None
    cost = _cost(evidence, inputs.rates)
    if cost is None:
        return "unpriced (or in a currency without a rate): cannot be shown cheaper", None
    reference = route.reference or ""
    ref = inputs.board.get((task, reference, reference))
    if ref is not None and ref.price_fingerprint == inputs.fingerprints.get(reference):
        ref_cost = _cost(ref, inputs.rates)
        if ref_cost is not None and cost >= ref_cost:
            return "not cheaper per item than the reference", None
    return None, cost


def _cost(evidence: Evidence, rates: CurrencyRates) -> int | None:
    if evidence.cost_per_item_nanos is None:
        return None
    try:
        return rates.convert(evidence.cost_per_item_nanos, evidence.currency or "USD", rates.base)
    except CurrencyRateMissingError:
        return None


class Decisions:
    """`decide`'s answers per (route, task), each kept while the board is the same copy and for
    at most `KEPT_SECONDS` (evidence ages): deciding costs a request a dict lookup. Bounded,
    since a task is the client's to name."""

    KEPT_SECONDS = 1.0
    MAX_KEPT = 1024

    def __init__(self, fingerprints: Mapping[str, str], rates: CurrencyRates) -> None:
        self._fingerprints = fingerprints
        self._rates = rates
        self._kept: dict[tuple[str, str | None], tuple[Board, float, Decision]] = {}

    def get(self, name: str, route: RouteConfig, task: str | None, board: Board) -> Decision:
        now = time.monotonic()
        kept = self._kept.get((name, task))
        if kept is not None and kept[0] is board and kept[1] > now:
            return kept[2]
        inputs = Inputs(board, self._fingerprints, self._rates, dt.datetime.now(dt.UTC))
        decision = decide(name, route, task, inputs)
        if len(self._kept) >= self.MAX_KEPT:
            self._kept.clear()
        self._kept[(name, task)] = (board, now + self.KEPT_SECONDS, decision)
        return decision


class EvidenceBoard:
    """The evidence routes decide by, held in memory. `snapshot` never waits: once the copy is
    older than `refresh_seconds` it starts one background reload and answers with the copy it
    has; a reload that fails keeps the copy and is tried again a period later."""

    def __init__(
        self, load: Callable[[], dict[EvidenceKey, Evidence]], refresh_seconds: float
    ) -> None:
        self._load = load
        self._refresh_seconds = refresh_seconds
        self._board: dict[EvidenceKey, Evidence] = {}
        self._loaded = float("-inf")
        self._reload: asyncio.Task[None] | None = None

    def load_now(self) -> None:
        """Read the store, in the caller's thread (start-up, and `route --explain`)."""
        self._board = self._load()
        self._loaded = time.monotonic()

    def snapshot(self) -> Board:
        """The copy held; past its period, a reload starts in the background (outside an event
        loop, as in `route --explain`, the copy `load_now` read is the answer)."""
        if time.monotonic() - self._loaded > self._refresh_seconds and self._reload is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return self._board
            self._loaded = time.monotonic()  # a failing store is asked once a period, not per call
            self._reload = loop.create_task(self._refresh())
        return self._board

    async def _refresh(self) -> None:
        try:
            self._board = await asyncio.to_thread(self._load)
            self._loaded = time.monotonic()
        except Exception:
            log.warning("bench evidence not reloaded; routing by the copy held", exc_info=True)
        finally:
            self._reload = None

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self.load_now)
        except Exception:
            log.warning("bench evidence not loaded; good_enough routes use their reference")

    async def stop(self) -> None:
        if self._reload is not None:
            self._reload.cancel()
            await asyncio.gather(self._reload, return_exceptions=True)


def board_for(config: Config, engine: Engine) -> EvidenceBoard | None:
    """The board a gateway's good_enough routes read, holding what the oldest evidence any of
    them accepts; None when the configuration has no such route."""
    ages = [r.max_age_days for r in config.routes.values() if r.strategy == "good_enough"]
    if not ages:
        return None
    horizon = dt.timedelta(days=max(ages))

    def load() -> dict[EvidenceKey, Evidence]:
        return latest(engine, dt.datetime.now(dt.UTC) - horizon)

    return EvidenceBoard(load, REFRESH_SECONDS)
