"""`routes:`, `default_route:`, `model_names:`, `breaker:` and `cache:` — how an alias's requests
are spread over its deployments, retried, shadowed and cached."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from entrepot.config.limits import Budget
from entrepot.config.strict import Strict


class ShadowConfig(Strict):
    """A share of a route's requests copied, after the client has its answer, to a `candidate`
    model; both answers are graded (by the task's grader, or pairwise by the `judge` model) and
    a sequential test says whether the candidate is non-inferior within `margin`. The copies
    are billed to their own budget line, which `max_spend` caps; their answers are kept
    `retention_days`, their grades for good. `tasks` are bench task files whose tasks' graders
    (those needing no expected answer) grade requests of those tasks instead of the judge."""

    candidate: str
    share: float = Field(gt=0, le=1)
    judge: str | None = None
    max_spend: Budget
    margin: float = Field(default=0.03, gt=0, lt=1)
    retention_days: int = Field(default=7, ge=1)
    tasks: list[str] = Field(default_factory=list)


class RouteConfig(Strict):
    """How an alias's requests are routed. `good_enough` makes the route's name an alias of its
    own, served by the cheapest of `candidates` whose published bench evidence for the
    request's task clears `min_quality` relative to `reference` (judged by the interval's lower
    bound), and by `reference` when no evidence is fresh. `on_refusal: fallback` answers a
    refusal by the model with the next allowed deployment; a stream holds back its first
    `refusal_holdback_tokens` tokens to catch it before anything reaches the client."""

    strategy: Literal["fallback", "weighted", "least_busy", "lowest_latency", "good_enough"] = (
        "fallback"
    )
    max_attempts: int = Field(default=3, ge=1, le=10)
    backoff_seconds: float = Field(default=0.05, ge=0)
    candidates: list[str] = Field(default_factory=list)
    reference: str | None = None
    min_quality: float = Field(default=0.95, gt=0)
    max_age_days: int = Field(default=30, ge=1)
    shadow: ShadowConfig | None = None
    on_refusal: Literal["answer", "fallback"] = "answer"
    refusal_holdback_tokens: int = Field(default=32, ge=0)

    @model_validator(mode="after")
    def _good_enough_complete(self) -> RouteConfig:
        if self.strategy == "good_enough" and (not self.candidates or self.reference is None):
            raise ValueError("strategy good_enough needs `candidates` and a `reference` alias")
        if self.strategy != "good_enough" and (self.candidates or self.reference):
            raise ValueError("`candidates` and `reference` apply only to strategy good_enough")
        return self


class ModelName(Strict):
    """Clients of another vendor's protocol send that vendor's model names (an Anthropic SDK
    sends `claude-haiku-4-5`): a name no alias matches is served by the first rule whose
    shell-style pattern (`claude-*haiku*`, `*`) matches it."""

    match: str = Field(min_length=1)
    alias: str


class BreakerConfig(Strict):
    failure_threshold: int = Field(default=3, ge=1)
    cooldown_seconds: float = Field(default=30.0, gt=0)


class CacheConfig(Strict):
    ttl_seconds: float = Field(default=300.0, gt=0)
    max_entries: int = Field(default=10_000, ge=1)


def check_route(alias: str, route: RouteConfig, aliases: set[str]) -> None:
    """A route names a configured alias, or — with `good_enough` — is a new alias of its own over
    configured ones; a shadow's candidate and judge are configured aliases."""
    if route.strategy == "good_enough":
        if alias in aliases:
            raise ValueError(
                f"routes: {alias!r} is a configured model; a good_enough route is a new name"
                " that clients ask for (say `support-auto`)"
            )
        for name in (*route.candidates, route.reference):
            if name not in aliases:
                raise ValueError(f"routes.{alias}: {name!r} is not a configured alias")
    elif alias not in aliases:
        raise ValueError(f"routes: {alias!r} is not a configured alias")
    shadow = route.shadow
    if shadow is not None:
        for name in (shadow.candidate, shadow.judge):
            if name is not None and name not in aliases:
                raise ValueError(f"routes.{alias}.shadow: {name!r} is not a configured alias")
