"""Shadow copies of live traffic: a share of a route's requests is sent again, to the route's
`shadow.candidate`, once the client has its answer; both answers are graded and kept as a pair
(`shadow/pairs.py`) for the route's verdict (`shadow/report.py`).

The gateway tells this observer of each answered request when the request is over (`Exchange.
finish`: after a complete answer is written, after a stream's end), so a copy never delays or
changes an answer. Doors: chat completions, Responses and Anthropic Messages — all three carry
the internal chat body, which is what the copy sends.

A copy goes through the same pipeline as any request, as the client that sent the original: the
key's model list, its team's rules, and the original's data class (which already counts the
class header and what the detector found) decide where it may go. If the candidate may not
receive it — or a PII reroute would send it elsewhere — there is no copy, and the pair says
`ineligible`. The judge's calls carry both answers and the request, so they obey the same rules.

Money: copies and judge calls are charged neither to the key nor to its team but to the route's
shadow line (the ledger's `key_name` "shadow:<route>", with `shadow_of` naming the original), a
budget subject of its own with `max_spend` as its budget: each call reserves its worst case
before it is sent and settles after, as every request does, so the line never spends past it.

A few copies at a time (`WORKERS`), a bounded number waiting (`QUEUE_LIMIT`): more are dropped
and counted. When the gateway stops, copies not started are dropped; those under way get a few
seconds, then are cut off and recorded as such (their reservations settle like any request's).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from dataclasses import dataclass, field

from entrepot.api.endpoints.chat import CHAT
from entrepot.api.errors import log_unexpected
from entrepot.api.gateway import Answered, Gateway
from entrepot.api.in_process import answer_in_process
from entrepot.api.observed import answer_text
from entrepot.api.pipeline import Exchange
from entrepot.bench.schema import GraderSpec
from entrepot.config import Limits, ShadowConfig
from entrepot.exceptions import (
    BudgetExceededError,
    CurrencyRateMissingError,
    GatewayError,
)
from entrepot.limits.limiter import Limiter, Subject, hold_seconds
from entrepot.policy.eligibility import eligible_deployments
from entrepot.shadow import grading, judge, pairs
from entrepot.types import JSON, UsageRecord

log = logging.getLogger(__name__)

DOORS = frozenset({"chat", "responses", "messages"})
WORKERS = 4  # copies under way at once
QUEUE_LIMIT = 256  # copies waiting or under way; more are dropped
STOP_WAIT_SECONDS = 5.0
PURGE_EVERY_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Line:
    """One route's shadow: its config, the budget subject its copies are charged to, and the
    graders of the tasks it grades without the judge."""

    route: str
    config: ShadowConfig
    subject: Subject
    graders: dict[str, GraderSpec] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.subject.name


class ShadowTraffic:
    """The gateway's `AnswerObserver` for the routes with a `shadow`."""

    def __init__(self, gateway: Gateway, lines: dict[str, Line]) -> None:
        self.gateway = gateway
        self.lines = lines
        config = gateway.config
        self.limiter = Limiter(
            gateway.counters,
            self._line_spend,
            rates=config.currency_rates,
            hold=hold_seconds(config),
        )
        # The model each deployment serves: a good_enough route's incumbent is the model that
        # answered, not the route's name.
        self.models = {d.name: d.alias for d in gateway.routing.deployments}
        self.running = asyncio.Semaphore(WORKERS)
        self.pending: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.dropped = 0
        self.purged_at = 0.0

    @classmethod
    def attach(cls, gateway: Gateway) -> None:
        """Make the gateway shadow the routes configured to; nothing if none is. A task file
        that cannot grade live traffic raises `ConfigError` (see `grading.live_graders`)."""
        lines = {
            alias: Line(
                alias,
                route.shadow,
                Subject(f"shadow:{alias}", Limits(budget=route.shadow.max_spend), alias),
                grading.live_graders(alias, route.shadow.tasks) if route.shadow.tasks else {},
            )
            for alias, route in gateway.config.routes.items()
            if route.shadow is not None
        }
        if lines:
            gateway.observer = cls(gateway, lines)

    def wants(self, alias: str, endpoint: str) -> bool:
        line = self.lines.get(alias)
        return (
            line is not None
            and endpoint in DOORS
            and alias != line.config.candidate
            and random.random() < line.config.share
        )

    def answered(self, answered: Answered) -> None:
        if self.stopping or len(self.pending) >= QUEUE_LIMIT:
            self.dropped += 1
            return
        task = asyncio.create_task(self._when_free(answered))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def stop(self) -> None:
        """Drop the copies not started; give those under way `STOP_WAIT_SECONDS` to end, then
        cancel them (each is still recorded, as cut off: see `_ask`)."""
        self.stopping = True
        if self.pending:
            _, late = await asyncio.wait(self.pending, timeout=STOP_WAIT_SECONDS)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self.dropped:
            log.info("shadow: %d copies dropped (too many waiting, or stopping)", self.dropped)

    async def _when_free(self, answered: Answered) -> None:
        async with self.running:
            if self.stopping:
                self.dropped += 1
                return
            try:
                await self._shadow(answered)
            except Exception as exc:
                log_unexpected(exc)

    async def _shadow(self, answered: Answered) -> None:
        line = self.lines[answered.alias]
        shadow, original = line.config, answered.record
        pair = pairs.Pair(
            request_id=original.request_id,
            created_at=original.created_at,
            route=line.route,
            task=original.task,
            incumbent=self.models.get(original.deployment or "", answered.alias),
            candidate=shadow.candidate,
            status="ineligible",
            incumbent_answer=answered.content,
        )
        body = {k: v for k, v in answered.body.items() if k not in ("stream", "stream_options")}
        body["model"] = shadow.candidate
        if self._may_send(answered, body):
            await self._copy(line, answered, body, pair)
        await asyncio.to_thread(pairs.save, self.gateway.engine, pair)
        await self._purge()

    def _may_send(self, answered: Answered, body: JSON) -> bool:
        """Whether the original's sender could have sent `body` where its model says, with the
        original's data class, and without being rerouted."""
        gateway = self.gateway
        try:
            eligible_deployments(
                table=gateway.routing,
                detector=gateway.detector,
                egress=gateway.egress,
                key=answered.key,
                alias=gateway.routing.alias_for(body["model"]),
                body=body,
                class_header=answered.record.data_class,
                offline=gateway.offline,
                reroute_alias=None,
            )
        except GatewayError:
            return False
        return True

    async def _copy(self, line: Line, answered: Answered, body: JSON, pair: pairs.Pair) -> None:
        try:
            result, copy = await self._ask(line, answered, body, "shadow:chat")
        except BudgetExceededError:
            pair.status = "over_budget"
            return
        except GatewayError:
            pair.status = "failed"
            return
        pair.copy_id, pair.candidate_answer = copy.request_id, answer_text(result)
        pair.status = "ungraded"
        original = answered.record
        pair.currency = original.currency or copy.currency
        pair.price_date = max(filter(None, (original.price_date, copy.price_date)), default=None)
        pair.incumbent_cost_nanos = self._in_currency(original, pair.currency)
        pair.candidate_cost_nanos = self._in_currency(copy, pair.currency)
        spec = line.graders.get(original.task) if original.task else None
        if spec is not None:
            await self._grade(spec, answered, pair)
        elif line.config.judge is not None:
            await self._judge(line, answered, pair)

    @staticmethod
    async def _grade(spec: GraderSpec, answered: Answered, pair: pairs.Pair) -> None:
        """By the task's own grader: nothing is sent anywhere, nothing is spent."""
        assert pair.candidate_answer is not None
        try:
            found = await grading.difference(
                spec, answered.body, pair.candidate_answer, answered.content
            )
        except GatewayError:
            return
        pair.difference, pair.grading_cost_nanos = found, 0
        pair.graded_by, pair.status = f"grader:{spec.kind}", "graded"

    async def _judge(self, line: Line, answered: Answered, pair: pairs.Pair) -> None:
        """Ask the judge twice, the candidate's answer first and then second."""
        assert line.config.judge is not None and pair.candidate_answer is not None
        request = judge.request_text(answered.body)
        candidate, incumbent = pair.candidate_answer, answered.content
        orders = ((candidate, incumbent), (incumbent, candidate))
        bodies = [judge.judge_body(line.config.judge, request, a, b) for a, b in orders]
        if not self._may_send(answered, bodies[0]):
            return
        preferences: list[judge.Preference] = []
        spent = 0
        for body in bodies:
            try:
                result, call = await self._ask(line, answered, body, "shadow:judge")
            except GatewayError:
                break
            spent += self._in_currency(call, pair.currency) or 0
            found = judge.preference(answer_text(result))
            if found is None:
                break
            preferences.append(found)
        pair.grading_cost_nanos = spent
        if len(preferences) == 2:
            pair.difference = judge.difference(preferences[0], preferences[1])
            pair.graded_by, pair.status = f"judge:{line.config.judge}", "graded"

    async def _ask(
        self, line: Line, answered: Answered, body: JSON, record_as: str
    ) -> tuple[JSON, UsageRecord]:
        """One call through the pipeline, with the original sender's rules and data class,
        charged to the shadow line; a refusal or failure is raised as a client would get it."""
        exchange = Exchange(self.gateway, CHAT, record_as)
        exchange.key = answered.key  # its rules apply; its budget is not charged
        exchange.subjects, exchange.limiter = (line.subject,), self.limiter
        record, original = exchange.record, answered.record
        record.key_name, record.shadow_of = line.name, original.request_id
        result = await answer_in_process(
            exchange,
            body,
            class_header=original.data_class,
            cache_header="off",
            task_header=original.task,
        )
        return result, record

    def _in_currency(self, record: UsageRecord, currency: str | None) -> int | None:
        nanos, source = record.cost_nanos, record.currency
        if nanos is None or source is None or currency is None:
            return nanos if source == currency else None
        try:
            return self.gateway.config.currency_rates.convert(nanos, source, currency)
        except CurrencyRateMissingError:
            return None

    async def _line_spend(self, subject: Subject, since: dt.datetime) -> int:
        """The seed of a shadow line's budget counter: its spend in the ledger, after writing
        what is queued for the store."""
        budget = subject.limits.budget
        assert budget is not None
        gateway = self.gateway
        await gateway.ledger.flush()
        return await asyncio.to_thread(
            pairs.line_spend,
            gateway.engine,
            subject.name,
            since,
            budget.currency,
            gateway.config.currency_rates,
        )

    async def _purge(self) -> None:
        """Forget answers past their route's retention, at most once an hour."""
        now = time.monotonic()
        if now - self.purged_at < PURGE_EVERY_SECONDS:
            return
        self.purged_at = now
        moment = dt.datetime.now(dt.UTC)
        for line in self.lines.values():
            retention = line.config.retention_days
            await asyncio.to_thread(pairs.purge, self.gateway.engine, line.route, retention, moment)
