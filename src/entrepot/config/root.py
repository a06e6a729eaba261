"""The whole of `entrepot.yaml`: its sections, with their defaults (the bundled local model and
nothing else), and the checks that span sections — an alias named anywhere must be configured."""

from __future__ import annotations

from pydantic import Field, model_validator

from entrepot.config.limits import CurrencyRates
from entrepot.config.models import BUNDLED_ALIAS, BUNDLED_TARGET, ModelConfig, check_lineage
from entrepot.config.policy import PolicyConfig, TeamConfig
from entrepot.config.routing import (
    BreakerConfig,
    CacheConfig,
    ModelName,
    RouteConfig,
    check_route,
)
from entrepot.config.server import ServerConfig
from entrepot.config.store import ResponsesConfig, SharedConfig, StoreConfig
from entrepot.config.strict import Strict


class Config(Strict):
    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    models: list[ModelConfig] = Field(
        default_factory=lambda: [
            ModelConfig(
                alias=BUNDLED_ALIAS,
                provider="llama_cpp",
                target=BUNDLED_TARGET,
                jurisdiction="local",
                licence="Apache-2.0",
            )
        ]
    )
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    model_names: list[ModelName] = Field(default_factory=list)
    default_route: RouteConfig = RouteConfig()
    breaker: BreakerConfig = BreakerConfig()
    policy: PolicyConfig = PolicyConfig()
    teams: dict[str, TeamConfig] = Field(default_factory=dict)
    cache: CacheConfig = CacheConfig()
    currency_rates: CurrencyRates = CurrencyRates()
    responses: ResponsesConfig = ResponsesConfig()
    shared: SharedConfig = SharedConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        """Several entries may share an alias (one per deployment); deployment names are unique."""
        seen: set[str] = set()
        for model in self.models:
            if model.deployment in seen:
                raise ValueError(
                    f"deployment {model.deployment!r} is configured twice; give each a `name`"
                )
            seen.add(model.deployment)
        aliases = {m.alias for m in self.models}
        check_lineage(self.models)
        for alias, route in self.routes.items():
            check_route(alias, route, aliases)
        for i, rule in enumerate(self.model_names):
            if rule.alias not in aliases:
                raise ValueError(f"model_names[{i}].alias {rule.alias!r} is not a configured alias")
        if self.policy.reroute_alias and self.policy.reroute_alias not in aliases:
            raise ValueError(
                f"policy.reroute_alias {self.policy.reroute_alias!r} is not configured"
            )
        classes = set(self.policy.classes)
        for name, team in self.teams.items():
            if team.data_class is not None and team.data_class not in classes:
                raise ValueError(f"teams.{name}.data_class {team.data_class!r} is not declared")
        return self

    def model(self, alias: str) -> ModelConfig | None:
        return next((m for m in self.models if m.alias == alias), None)

    def servable(self) -> set[str]:
        """The names a key may be allowed: each model's alias, and each route's (a good_enough
        route is a name of its own)."""
        return {m.alias for m in self.models} | set(self.routes)

    def route(self, alias: str) -> RouteConfig:
        return self.routes.get(alias) or self.default_route
