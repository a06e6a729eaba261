"""The routing table: built once at config load, so resolving a model is one dict lookup."""

from __future__ import annotations

import time
from dataclasses import dataclass

from entrepot.config import Config, ModelConfig, Price
from entrepot.exceptions import ModelNotFoundError
from entrepot.ledger.pricing import price_for
from entrepot.providers.base import Provider
from entrepot.providers.registry import create_provider


@dataclass(frozen=True, slots=True)
class Deployment:
    config: ModelConfig
    provider: Provider
    price: Price | None

    @property
    def alias(self) -> str:
        return self.config.alias


class RoutingTable:
    def __init__(self, config: Config) -> None:
        self.created = int(time.time())
        self._by_alias = {
            model.alias: Deployment(model, create_provider(model), price_for(model))
            for model in config.models
        }

    @property
    def deployments(self) -> list[Deployment]:
        return list(self._by_alias.values())

    @property
    def aliases(self) -> list[str]:
        return list(self._by_alias)

    def resolve(self, alias: str) -> Deployment:
        deployment = self._by_alias.get(alias)
        if deployment is None:
            raise ModelNotFoundError(
                f"the model {alias[:200]!r} does not exist or is not configured", param="model"
            )
        return deployment

    async def start(self) -> None:
        for deployment in self._by_alias.values():
            await deployment.provider.start()

    async def close(self) -> None:
        for deployment in self._by_alias.values():
            await deployment.provider.close()
