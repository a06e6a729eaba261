"""In-process `bench` and `audit` runs call their models through the gateway's own pipeline, as
a client of it: the same egress rules and offline mode, the same detector raising a request's data
class, the same key (allow-list, rate limits, budget) and the same ledger, where every call is
recorded with the command that made it (endpoint `bench:chat`, `audit:chat`, ...). Nothing here
creates a provider: the gateway built from the configuration is the only way to a model.

A run is made under a client key named with `--key NAME`, or else under the principal
`cli:bench` / `cli:audit`: an anonymous client (no key limits, the policy's default data class),
named so in the ledger — and refused, as an anonymous client would be, where the configuration
requires client keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from types import TracebackType

from entrepot.api.endpoints.chat import CHAT
from entrepot.api.endpoints.completions import COMPLETIONS
from entrepot.api.endpoints.embeddings import EMBEDDINGS
from entrepot.api.gateway import Gateway
from entrepot.api.pipeline import Endpoint, call
from entrepot.bench.runner import BenchModel
from entrepot.config import Config, ModelConfig
from entrepot.exceptions import AuthenticationError, ConfigError, InvalidRequestError
from entrepot.ledger.pricing import price_for
from entrepot.types import JSON, ApiKey


def default_principal(command: str) -> str:
    return f"cli:{command}"


class InProcessGateway:
    """The gateway a run calls through: built from the configuration like the server's, with
    only the deployments the run can reach (its models and the policy's reroute target), so a
    run loads no local model it does not use. Enter it (async) inside the run's event loop."""

    def __init__(
        self, config: Config, aliases: list[str], command: str, key_name: str | None
    ) -> None:
        known = {m.alias for m in config.models}
        unknown = [alias for alias in aliases if alias not in known]
        if unknown:
            raise ConfigError(
                f"model {unknown[0]!r} is not configured (configured: {', '.join(sorted(known))})"
            )
        reachable = {*aliases, config.policy.reroute_alias}
        serving = config.model_copy(
            update={"models": [m for m in config.models if m.alias in reachable]}
        )
        self.config = config
        self.command = command
        self.principal = key_name or default_principal(command)
        self.gateway = Gateway(serving)
        self.key = self._key(key_name)

    def _key(self, name: str | None) -> ApiKey | None:
        if name is None:
            if self.config.server.require_client_keys:
                raise AuthenticationError(
                    f"this configuration requires client keys: run {self.command} with "
                    "--key NAME (see `entrepot keys list`)",
                    code="missing_api_key",
                )
            return None
        for key in self.gateway.keys.store.list():
            if key.name == name:
                return key
        raise AuthenticationError(f"no active key named {name!r} (see `entrepot keys list`)")

    async def __aenter__(self) -> InProcessGateway:
        await self.gateway.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stopping flushes the ledger: every call of the run is recorded before it returns."""
        await self.gateway.stop()

    async def call(self, endpoint: Endpoint, body: JSON) -> JSON:
        return await call(
            self.gateway,
            endpoint,
            body,
            key=self.key,
            principal=self.principal,
            record_as=f"{self.command}:{endpoint.name}",
        )

    def models(
        self, aliases: list[str], hardware_costs: dict[str, Decimal] | None = None
    ) -> list[BenchModel]:
        """The run's view of each alias: its configuration (for the report: price, host), and
        the gateway to call it through."""
        models = []
        for alias in aliases:
            configured = self.config.model(alias)
            assert configured is not None, "checked when the gateway was built"
            rate = (hardware_costs or {}).get(alias, configured.hardware_cost_per_hour)
            provider = GatewayAlias(self, alias, configured)
            models.append(BenchModel(alias, configured, provider, price_for(configured), rate))
        return models


class GatewayAlias:
    """One alias of the in-process gateway in the shape of a provider, which is what the
    runner and the judges call: each call asks the pipeline for the alias, whatever model the
    body names, and the pipeline picks the deployment."""

    def __init__(self, gateway: InProcessGateway, alias: str, config: ModelConfig) -> None:
        self._gateway = gateway
        self._alias = alias
        self.config = config

    async def start(self) -> None:
        """The gateway's lifetime is the run's (`InProcessGateway`), not one model's."""

    async def close(self) -> None:
        """See `start`."""

    async def chat(self, body: JSON) -> JSON:
        return await self._gateway.call(CHAT, {**body, "model": self._alias})

    async def complete(self, body: JSON) -> JSON:
        return await self._gateway.call(COMPLETIONS, {**body, "model": self._alias})

    async def embed(self, body: JSON) -> JSON:
        return await self._gateway.call(EMBEDDINGS, {**body, "model": self._alias})

    def stream_chat(self, body: JSON) -> AsyncIterator[JSON]:
        raise InvalidRequestError("in-process runs do not stream", param="stream")

    def stream_complete(self, body: JSON) -> AsyncIterator[JSON]:
        raise InvalidRequestError("in-process runs do not stream", param="stream")

    async def health(self) -> bool:
        return True
