"""The gateway's long-lived state, built once from the config and torn down in order.

Start-up order follows the request path backwards (store, ledger, keys, deployments) so nothing
serves before what it depends on is ready; shutdown flushes the ledger last.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from sqlalchemy import Engine

from entrepot.api.auth import KeyRing
from entrepot.api.streaming import finish_drains
from entrepot.config import Config
from entrepot.ledger.metrics import GatewayMetrics
from entrepot.ledger.writer import LedgerWriter
from entrepot.limits.counters import Counters, MemoryCounters
from entrepot.limits.limiter import Limiter, Subject, hold_seconds
from entrepot.limits.redis_counters import RedisCounters
from entrepot.limits.shared import SharedCounters
from entrepot.policy.detector import PiiDetector
from entrepot.policy.egress import EgressPolicy
from entrepot.routing.cache import Cache, ResponseCache
from entrepot.routing.good_enough import board_for
from entrepot.routing.router import Router
from entrepot.routing.shared_breaker import BreakerFleet
from entrepot.routing.shared_cache import SharedCache
from entrepot.routing.table import RoutingTable
from entrepot.store.console_sessions import EndedSessions
from entrepot.store.db import open_engine
from entrepot.store.key_events import KeyEvents
from entrepot.store.redis import connect
from entrepot.store.usage import spend_since
from entrepot.types import JSON, ApiKey, UsageRecord


@dataclass(frozen=True, slots=True)
class Answered:
    """A request answered in full, as an observer is told of it once it is over: the alias that
    served it, the body as validated, who asked (and the class header they sent), and the text
    of the answer."""

    record: UsageRecord
    alias: str
    body: JSON
    key: ApiKey | None
    class_header: str | None
    content: str


class AnswerObserver(Protocol):
    """Told of answered requests after their client has the answer (the shadow copies of
    `entrepot.shadow`, given to the gateway by `entrepot serve`, as `api` may not import it).
    `wants` is asked before the answer is kept for it, so the text of other requests is never
    collected; neither method may block or raise."""

    def wants(self, alias: str, endpoint: str) -> bool: ...

    def answered(self, answered: Answered) -> None: ...

    async def stop(self) -> None: ...


class Gateway:
    def __init__(self, config: Config, engine: Engine | None = None) -> None:
        self.config = config
        self.offline = config.policy.offline
        self.engine = engine or open_engine(config.store)
        # The state replicas share (`shared.backend: redis`); None when one process keeps it.
        shared = config.shared
        self.redis: Redis | None = connect(shared) if shared.backend == "redis" else None
        self.metrics = GatewayMetrics()
        self.ledger = LedgerWriter(self.engine, config.store, self.metrics)
        redis = self.redis
        self.keys = KeyRing(
            self.engine,
            config.server.admin_key(),
            config.server.require_client_keys,
            KeyEvents(redis) if redis is not None else None,
        )
        self.detector = PiiDetector(config.policy.detector)
        self.egress = EgressPolicy(config.policy, config.teams)
        self.routing = RoutingTable(config, board_for(config, self.engine))
        self.router = Router(config)
        self.circuits: BreakerFleet | None = None
        self.cache: Cache
        if redis is None:
            self.cache = ResponseCache(config.cache)
        else:
            self.cache = SharedCache(config.cache, redis)
            self.circuits = BreakerFleet(redis, config.breaker)
            self.circuits.share(self.routing.deployments)
        # Console logouts told to every replica (a session cookie is valid on all of them).
        self.ended_sessions = EndedSessions(redis) if redis is not None else None
        # Limits and budgets: in Redis for a fleet, with the configured answer to its absence.
        self.shared_limits: SharedCounters | None = None
        counters: Counters = MemoryCounters()
        if redis is not None:
            counters = self.shared_limits = SharedCounters(
                RedisCounters(redis), shared.on_unavailable
            )
        self.counters = counters
        self.limiter = Limiter(
            counters, self._spend_since, rates=config.currency_rates, hold=hold_seconds(config)
        )
        self.observer: AnswerObserver | None = None
        self._subjects: dict[int, tuple[ApiKey, list[Subject]]] = {}

    def subjects(self, key: ApiKey | None) -> list[Subject]:
        """Whose limits a request counts against: its key, and the key's team. Remembered per
        loaded key object, so a reloaded (possibly changed) key gets fresh subjects."""
        if key is None:
            return []
        cached = self._subjects.get(key.id)
        if cached is not None and cached[0] is key:
            return cached[1]
        subjects = [Subject(f"key:{key.id}", key.limits, key.name)]
        team = self.config.teams.get(key.team) if key.team else None
        if team is not None:
            subjects.append(Subject(f"team:{key.team}", team.limits, key.team))
        self._subjects[key.id] = (key, subjects)
        return subjects

    async def _spend_since(self, subject: Subject, since: dt.datetime) -> int:
        budget = subject.limits.budget
        if budget is None:
            return 0
        kind, _, ident = subject.name.partition(":")
        key_id, team = (int(ident), None) if kind == "key" else (None, ident)
        rates = self.config.currency_rates
        # What the store does not have yet first (see `pending_spend`): a restart with records
        # still spooled must not seed a budget below what was spent.
        pending = await self.ledger.pending_spend(
            since=since, currency=budget.currency, rates=rates, key_id=key_id, team=team
        )
        stored = await asyncio.to_thread(
            spend_since,
            self.engine,
            since=since,
            currency=budget.currency,
            rates=rates,
            key_id=key_id,
            team=team,
        )
        return pending + stored

    async def limits_problems(self) -> list[str]:
        """For `/health`: "limits" while the Redis that limits and budgets are kept in does not
        answer (asked now, at most once a second while it is failing)."""
        if self.shared_limits is None or await self.shared_limits.check():
            return []
        return ["limits"]

    async def start(self) -> None:
        await self.ledger.start()
        await self.keys.start()
        await self.routing.start()
        if self.circuits is not None:
            await self.circuits.start()

    async def stop(self) -> None:
        await finish_drains()
        if self.observer is not None:
            await self.observer.stop()
        if self.circuits is not None:
            await self.circuits.stop()
        await self.cache.drain()
        await self.routing.close()
        await self.keys.stop()
        await self.ledger.stop()
        if self.shared_limits is not None:
            await self.shared_limits.close()
        if self.redis is not None:
            await self.redis.aclose()
        self.engine.dispose()
