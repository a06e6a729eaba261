"""The routing table: built once at config load, so resolving a model is one dict lookup.

An alias maps to one or more deployments; each keeps the live state the strategies read
(in-flight requests, a latency average, its circuit breaker). A `good_enough` route's name is
an alias too, whose deployments are chosen per request (`choose`) from published evidence."""

from __future__ import annotations

import fnmatch
import re
import time
from dataclasses import dataclass, field

from entrepot.config import Config, ModelConfig, Price
from entrepot.exceptions import ModelNotFoundError
from entrepot.ledger.pricing import price_for
from entrepot.providers.base import Provider
from entrepot.providers.registry import create_provider
from entrepot.routing.breaker import CircuitBreaker
from entrepot.routing.good_enough import (
    NO_EVIDENCE,
    Decision,
    Decisions,
    EvidenceBoard,
    configured_fingerprints,
)

LATENCY_SMOOTHING = 0.2


@dataclass(slots=True)
class Deployment:
    config: ModelConfig
    provider: Provider
    price: Price | None
    breaker: CircuitBreaker
    in_flight: int = 0
    latency_ewma: float | None = field(default=None)

    @property
    def alias(self) -> str:
        return self.config.alias

    @property
    def name(self) -> str:
        return self.config.deployment

    def observe_latency(self, seconds: float) -> None:
        if self.latency_ewma is None:
            self.latency_ewma = seconds
        else:
            self.latency_ewma += LATENCY_SMOOTHING * (seconds - self.latency_ewma)


class RoutingTable:
    def __init__(self, config: Config, evidence: EvidenceBoard | None = None) -> None:
        """`evidence` is what good_enough routes decide by; without it they find none, and
        their reference serves."""
        self.created = int(time.time())
        self._by_alias: dict[str, list[Deployment]] = {}
        for model in config.models:
            deployment = Deployment(
                model, create_provider(model), price_for(model), CircuitBreaker(config.breaker)
            )
            self._by_alias.setdefault(model.alias, []).append(deployment)
        self._names = [
            (re.compile(fnmatch.translate(rule.match)), rule.alias) for rule in config.model_names
        ]
        self._good_enough = {
            name: route for name, route in config.routes.items() if route.strategy == "good_enough"
        }
        fingerprints = configured_fingerprints(config) if self._good_enough else {}
        self._decisions = Decisions(fingerprints, config.currency_rates)
        self.evidence = evidence

    @property
    def deployments(self) -> list[Deployment]:
        return [d for group in self._by_alias.values() for d in group]

    @property
    def aliases(self) -> list[str]:
        """Every name a client may ask for: configured aliases, then good_enough routes."""
        return [*self._by_alias, *self._good_enough]

    def alias_for(self, name: str) -> str:
        """The alias serving a requested model name: the name itself when it is an alias (the
        very same object, so callers can tell), else the first `model_names` rule it matches;
        a name nothing matches is returned as it is, for `resolve` to refuse."""
        if name in self._by_alias or name in self._good_enough:
            return name
        for pattern, alias in self._names:
            if pattern.match(name):
                return alias
        return name

    def resolve(self, alias: str) -> list[Deployment]:
        """An alias's deployments; for a good_enough route, its reference's: what serves it when
        no evidence is fresh, for callers wanting one description of it (the model's entry,
        token counting). Routing a request asks `choose` first."""
        route = self._good_enough.get(alias)
        if route is not None and route.reference is not None:
            alias = route.reference
        deployments = self._by_alias.get(alias)
        if deployments is None:
            raise ModelNotFoundError(
                f"the model {alias[:200]!r} does not exist or is not configured", param="model"
            )
        return deployments

    def choose(self, alias: str, task: str | None) -> Decision | None:
        """For a good_enough route, which of its aliases serve this task's request, in order
        (see `good_enough.decide`); None for any other alias."""
        route = self._good_enough.get(alias)
        if route is None:
            return None
        board = self.evidence.snapshot() if self.evidence is not None else NO_EVIDENCE
        return self._decisions.get(alias, route, task, board)

    async def start(self) -> None:
        if self.evidence is not None:
            await self.evidence.start()
        for deployment in self.deployments:
            await deployment.provider.start()

    async def close(self) -> None:
        for deployment in self.deployments:
            await deployment.provider.close()
        if self.evidence is not None:
            await self.evidence.stop()
