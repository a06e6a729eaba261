"""A route's `on_refusal: fallback`: an answer the refusal classifier (`routing/refusal.py`) calls a
refusal is not given to the client while another allowed deployment may answer instead.

A complete answer is classified before it is answered. A stream is held back for its first
`refusal_holdback_tokens` pieces of output (`api/holdback.py`): a refusal there closes the
upstream and routing moves on; otherwise what was held back is relayed as it came, and the
stream continues. A refusal after the hold-back window reaches the client as it is. A
content-filter error is a refusal too.

The refusal is replaced only once another deployment is called: if none is left (`max_attempts`,
every other one skipped or unavailable), the refusal is the answer, as it would have been without
the setting. If the deployment called after it fails, the client gets that failure.

Every refused generation is billed — from the upstream's usage report, or from the gateway's own
count of what it read when a stream was closed early — and added to the request's record
(`api/spent.py`), whose attempts say which deployment refused; the record is flagged
`refused_by_model`. Budgets reserve a generation for each of the route's `max_attempts`, so
refusals cannot overspend them. A route whose deployments bill in currencies `currency_rates`
cannot convert into one another does not fall back (one record carries one currency).

Nothing here runs unless the route asks for it: the pipeline makes no guard otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import NoReturn, TypeVar

from entrepot.api.holdback import Held
from entrepot.api.spent import Spent
from entrepot.api.streaming import OpenedStream
from entrepot.config import Config, CurrencyRates, RouteConfig
from entrepot.exceptions import CurrencyRateMissingError, GatewayError, ModelRefusedError
from entrepot.ledger.billing import HARDWARE_CURRENCY, generates, settle, settle_answer
from entrepot.ledger.hardware import hourly_rate
from entrepot.policy.eligibility import Eligibility
from entrepot.routing.refusal import completion_refusal, host_filtered
from entrepot.routing.router import Router
from entrepot.routing.table import Deployment
from entrepot.types import JSON, Attempt, UsageRecord

T = TypeVar("T")
U = TypeVar("U")

log = logging.getLogger("entrepot.api")
_unconvertible: set[str] = set()  # aliases already warned about


@dataclass(slots=True)
class _Refusal:
    """The latest refusal, kept as the answer in case nothing better comes. Exactly one of
    `answer` (a complete answer), `held` (a stream's held-back start, its upstream still open)
    and `error` (a content-filter error: nothing generated, nothing billed) is set."""

    deployment: Deployment
    began: float
    answer: JSON | None = None
    held: Held | None = None
    error: GatewayError | None = None


class RefusalGuard:
    """One request's refusals: wraps the routed operation, keeps the latest refusal, and bills
    the ones that were replaced into `spent`, which adds them to the request's record."""

    __slots__ = ("body", "holdback", "pending", "record", "spent")

    def __init__(self, record: UsageRecord, body: JSON, holdback: int, spent: Spent):
        self.record = record
        self.body = body
        self.holdback = holdback
        self.spent = spent
        self.pending: _Refusal | None = None

    async def route_answer(
        self,
        router: Router,
        alias: str,
        deployments: list[Deployment],
        ask: Callable[[Deployment], Awaitable[JSON]],
        attempts: list[Attempt],
    ) -> tuple[JSON, Deployment]:
        """`Router.call` for a complete answer, falling back on refusals."""
        try:
            result, deployment = await router.call(alias, deployments, self.answers(ask), attempts)
        except GatewayError as failure:
            return self._settled(self.answer, failure)
        router.finished(deployment)
        return result, deployment

    async def route_stream(
        self,
        router: Router,
        alias: str,
        deployments: list[Deployment],
        start: Callable[[Deployment], Awaitable[OpenedStream]],
        attempts: list[Attempt],
    ) -> tuple[OpenedStream, Deployment]:
        """`Router.call` for a stream, falling back on refusals caught in its first window."""
        operation = self.streams(start)
        try:
            return await router.call(alias, deployments, operation, attempts, streaming=True)
        except GatewayError as failure:
            return self._settled(self.stream, failure)

    def _settled(self, latest: Callable[[GatewayError], U], failure: GatewayError) -> U:
        """The latest refusal as the answer; or, failing with no refusal to answer, the refused
        attempts billed onto the failed request's record first."""
        try:
            return latest(failure)
        except GatewayError:
            self.spent.charge()
            raise

    def answers(
        self, ask: Callable[[Deployment], Awaitable[JSON]]
    ) -> Callable[[Deployment], Awaitable[JSON]]:
        """`ask`, raising `ModelRefusedError` for an answer that is a refusal."""

        async def guarded(deployment: Deployment) -> JSON:
            await self._replace()
            began = time.perf_counter()
            result = await self._filtered(deployment, began, ask(deployment))
            why = completion_refusal(result)
            if why is not None:
                self._refused(_Refusal(deployment, began, answer=result), why)
            return result

        return guarded

    def streams(
        self, start: Callable[[Deployment], Awaitable[OpenedStream]]
    ) -> Callable[[Deployment], Awaitable[OpenedStream]]:
        """`start`, holding the stream back until its first window of output is classified."""

        async def guarded(deployment: Deployment) -> OpenedStream:
            await self._replace()
            began = time.perf_counter()
            opened = await self._filtered(deployment, began, start(deployment))
            held = Held(opened)
            try:
                await held.fill(self.holdback)
            except asyncio.CancelledError:  # closed while held back: what it read is billed
                self.spent.records.append(_held_usage(deployment, held, began))
                raise
            why = held.refusal()
            if why is not None:
                self._refused(_Refusal(deployment, began, held=held), why)
            return held.release()

        return guarded

    def answer(self, failure: GatewayError) -> tuple[JSON, Deployment]:
        """After routing failed with `failure`: the refused answer, if it is the latest word."""
        refusal = self._latest(failure)
        assert refusal.answer is not None
        return refusal.answer, refusal.deployment

    def stream(self, failure: GatewayError) -> tuple[OpenedStream, Deployment]:
        """After routing failed with `failure`: the refused stream, relayed as it came (its
        deployment counted busy again until the stream ends, as routing would have left it)."""
        refusal = self._latest(failure)
        assert refusal.held is not None
        refusal.deployment.in_flight += 1
        return refusal.held.release(), refusal.deployment

    def _latest(self, failure: GatewayError) -> _Refusal:
        refusal, self.pending = self.pending, None
        if refusal is None:
            raise failure
        if refusal.error is not None:
            raise refusal.error
        return refusal

    async def _filtered(self, deployment: Deployment, began: float, call: Awaitable[T]) -> T:
        """The call's result; a content-filter error raised as a refusal."""
        try:
            return await call
        except GatewayError as exc:
            if not host_filtered(exc.message):
                raise
            self._refused(_Refusal(deployment, began, error=exc), f"host filter: {exc.message}")

    def _refused(self, refusal: _Refusal, why: str) -> NoReturn:
        self.pending = refusal
        self.record.refused_by_model = True
        raise ModelRefusedError(refusal.deployment.name, why[:200])

    async def drop(self) -> None:
        """The request is cancelled: a refusal kept as its answer in case nothing better came is
        closed and billed, as a replaced one is."""
        await self._replace()

    async def _replace(self) -> None:
        """Another deployment is about to be called: close the refused stream, if one is open,
        and bill the refusal it replaces."""
        refusal, self.pending = self.pending, None
        if refusal is None or refusal.error is not None:
            return
        if refusal.answer is not None:
            scratch = UsageRecord(request_id="", endpoint="")
            settle_answer(scratch, refusal.deployment, self.body, refusal.answer, refusal.began)
            self.spent.records.append(scratch)
        elif refusal.held is not None:
            await refusal.held.close()
            self.spent.records.append(_held_usage(refusal.deployment, refusal.held, refusal.began))


def _held_usage(deployment: Deployment, held: Held, began: float) -> UsageRecord:
    """A held-back stream, closed, billed on a record of its own: from its usage report, else
    from the gateway's count of what was read."""
    scratch = UsageRecord(request_id="", endpoint="")
    estimate = partial(held.tally.estimate, held.opened.body)
    settle(scratch, deployment, held.opened.body, held.tally.usage, estimate, began)
    return scratch


def guard(
    record: UsageRecord,
    route: RouteConfig,
    eligible: Eligibility,
    body: JSON,
    config: Config,
    spent: Spent,
) -> RefusalGuard | None:
    """The guard of a request on a route with `on_refusal: fallback`, if it asks for generated
    text and its deployments' costs add up on one record; None (and nothing done) otherwise.
    Replaced refusals are billed into `spent`, the request's calls that gave no answer."""
    if not generates(body) or not one_currency(eligible, config.currency_rates):
        return None
    return RefusalGuard(record, body, route.refusal_holdback_tokens, spent)


def one_currency(eligible: Eligibility, rates: CurrencyRates) -> bool:
    """Whether what the deployments bill can be added up on one record: every currency they
    bill in converts into every other. Warned about once per alias when not."""
    alias = eligible.alias
    billed = {_currency(d) for d in eligible.deployments} - {None}
    try:
        for source in billed:
            for target in billed:
                rates.convert(1, str(source), str(target))
    except CurrencyRateMissingError as exc:
        if alias not in _unconvertible:
            _unconvertible.add(alias)
            log.warning("on_refusal fallback is off for %r: %s", alias, exc.message)
        return False
    return True


def _currency(deployment: Deployment) -> str | None:
    if deployment.price is not None:
        return deployment.price.currency
    return HARDWARE_CURRENCY if hourly_rate(deployment.config) is not None else None
