"""`bench` and `audit` call their models only through a gateway, so a run obeys the same policy,
limits and ledger as any client. Nothing here creates a provider for a configured deployment.

In-process (`InProcessGateway`), a run is a client of the pipeline of a gateway built from the
configuration: the same egress rules and offline mode, the same detector raising a request's data
class, the same key (allow-list, rate limits, budget) and the same ledger, where every call is
recorded with the command that made it (endpoint `bench:chat`, `audit:chat`, ...). A run is made
under a client key named with `--key NAME`, or else under the principal `cli:bench` /
`cli:audit`: an anonymous client (no key limits, the policy's default data class), named so in
the ledger — and refused, as an anonymous client would be, where the configuration requires
client keys.

By URL (`GatewayByUrl`), a run is an HTTP client of a running gateway, under the key whose
secret is in `--api-key-env`; that gateway applies its own configuration, and records the calls
under the command's name too (the `x-entrepot-client` header). Its refusals are read as its own
(`GatewayErrors`): one by its policy is reported as refused by policy, as in-process.

Either way the gateway's response cache is off for a run's calls: a run measures the model, not
a stored answer (the run's own cache, which lets a run resume, is the runner's business).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from types import TracebackType

import orjson

from entrepot.api.endpoints.chat import CHAT
from entrepot.api.endpoints.completions import COMPLETIONS
from entrepot.api.endpoints.embeddings import EMBEDDINGS
from entrepot.api.gateway import Gateway
from entrepot.api.in_process import answer_in_process, in_process_exchange
from entrepot.api.pipeline import CLIENT_HEADER, Endpoint, Exchange, recorded_endpoint
from entrepot.bench.runner import BenchModel
from entrepot.config import Config, ModelConfig
from entrepot.exceptions import (
    AuthenticationError,
    BudgetExceededError,
    ConfigError,
    EgressDeniedError,
    GatewayError,
    InvalidRequestError,
    PermissionDeniedError,
)
from entrepot.ledger.hardware import HardwareRate, hourly_rate
from entrepot.ledger.pricing import price_for
from entrepot.providers.base import Provider
from entrepot.providers.connection import Response
from entrepot.providers.http import HttpUpstream, clean_message
from entrepot.providers.openai_compatible import OpenAICompatibleProvider
from entrepot.routing import cache
from entrepot.types import JSON, ApiKey

# Commands that answer with the model's own refusal even on a route that would send it
# elsewhere: an audit measures refusals, and a fingerprint is one model's answers.
MEASURES_REFUSALS = ("audit", "fingerprint")
KEY_WITH_GATEWAY = (
    "--key names a client key for in-process runs; through a gateway, the key is the secret in "
    "--api-key-env"
)


def open_gateway(
    config: Config,
    command: str,
    aliases: list[str],
    *,
    url: str | None,
    api_key_env: str | None,
    key_name: str | None,
) -> InProcessGateway | GatewayByUrl:
    """The gateway a run of `command` calls `aliases` (its models and their helpers) through:
    the running one at `url`, else one built in-process from `config`. Enter it (async) inside
    the run's event loop, around the run."""
    if url is None:
        return InProcessGateway(config, aliases, command, key_name)
    if key_name is not None:
        raise ConfigError(KEY_WITH_GATEWAY)
    return GatewayByUrl(config, url, api_key_env, command)


def _described(
    alias: str,
    configured: ModelConfig | None,
    client: ModelConfig,
    provider: Provider,
    hardware_costs: dict[str, Decimal] | None,
    parallel: int | None = None,
) -> BenchModel:
    """The run's view of one alias: called through `provider`, and described for the report
    (price, hardware cost) by its configuration where that names it."""
    given = (hardware_costs or {}).get(alias)
    if given is not None:
        rate: HardwareRate | None = HardwareRate(given, 1, None)
    else:
        rate = hourly_rate(configured) if configured is not None else None
    price = price_for(configured) if configured is not None else None
    return BenchModel(alias, client, provider, price, rate, parallel)


class GatewayErrors(HttpUpstream):
    """The HTTP client of a gateway by URL. The gateway's refusals come in its own error format
    (status, code, message), so a policy's, a budget's and a key's are raised as the errors the
    in-process pipeline raises, with the gateway's words, instead of being read as an upstream
    rejecting credentials: a call the policy refuses is reported as refused by policy either
    way."""

    def status_error(self, response: Response, raw: bytes) -> GatewayError:
        code, message = _gateway_error(raw)
        if code == EgressDeniedError.code:
            return EgressDeniedError(message)
        if code == BudgetExceededError.code:
            return BudgetExceededError(message, headers={})
        if response.status == PermissionDeniedError.status_code and code is not None:
            return PermissionDeniedError(message, code=code)
        return super().status_error(response, raw)


def _gateway_error(raw: bytes) -> tuple[str | None, str]:
    """The code and message of an error in OpenAI's format; (None, "") in any other shape."""
    try:
        error = orjson.loads(raw).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None, ""
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return None, ""
    return error["code"], clean_message(str(error.get("message") or error["code"]))


class GatewayClient(OpenAICompatibleProvider):
    """An OpenAI-format client of a gateway by URL that reads its refusals as the gateway's
    (`GatewayErrors`)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        key = config.api_key()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = GatewayErrors(config, headers)


class GatewayByUrl:
    """A running gateway, of which a run is an HTTP client under the key whose secret is in
    `api_key_env`."""

    def __init__(self, config: Config, url: str, api_key_env: str | None, command: str) -> None:
        self.config = config
        self.base_url = url.rstrip("/") + "/v1"
        self.api_key_env = api_key_env
        self.command = command

    async def __aenter__(self) -> GatewayByUrl:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Nothing to stop: the runner starts and closes each model's client."""

    def models(
        self, aliases: list[str], hardware_costs: dict[str, Decimal] | None = None
    ) -> list[BenchModel]:
        """Each alias as a client of the gateway sees it: the gateway picks the deployment and
        applies its policy, limits and ledger. The only model this makes is an OpenAI-format
        HTTP client of the gateway, whatever the alias's deployment is; the local
        configuration, where it names the alias, only describes it for the report (price,
        hardware cost, how many requests a local model serves at once)."""
        models = []
        for alias in aliases:
            configured = self.config.model(alias)
            client = ModelConfig(
                alias=alias,
                provider="openai_compatible",
                target=alias,
                base_url=self.base_url,
                api_key_env=self.api_key_env,
                price=configured.price if configured else None,
                headers={CLIENT_HEADER: self.command, cache.HEADER: "off"},
            )
            parallel = None
            if configured is not None:  # what the gateway sends it at once, for `slots`
                local = configured.provider == "llama_cpp"
                parallel = configured.local.parallel if local else configured.max_concurrency
            provider = GatewayClient(client)
            models.append(_described(alias, configured, client, provider, hardware_costs, parallel))
        return models


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
        # Without a key, the run is the anonymous client `cli:<command>` in the ledger.
        self.principal = key_name or f"cli:{command}"
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
        named = [
            key for key in self.gateway.keys.store.list(include_revoked=True) if key.name == name
        ]
        for key in named:
            if key.revoked_at is None:
                return key
        if named:
            when = max(key.revoked_at for key in named if key.revoked_at is not None)
            raise AuthenticationError(
                f"key {name!r} was revoked on {when:%Y-%m-%d %H:%M} UTC (see `entrepot keys list`)"
            )
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
        answer, _exchange = await self.exchange(endpoint, body)
        return answer

    async def exchange(self, endpoint: Endpoint, body: JSON) -> tuple[JSON, Exchange]:
        """One call of the run, with its exchange, whose record says which deployment answered
        (`fingerprint` keeps it). The key is the gateway's current copy, as a server's client
        would be checked against: a key revoked during the run is refused (and recorded) from
        the gateway's next reload of its keys on, and a changed allow-list or budget applies."""
        key = self.key
        current = self.gateway.keys.loaded(key.id) if key is not None else None
        exchange = in_process_exchange(
            self.gateway,
            endpoint,
            key=current or key,
            principal=self.principal,
            record_as=recorded_endpoint(self.command, endpoint),
            fall_back_on_refusal=self.command not in MEASURES_REFUSALS,
        )
        if key is not None and current is None:
            revoked = AuthenticationError(f"key {key.name!r} was revoked during the run")
            exchange.failed(revoked)
            await exchange.finish()
            raise revoked
        return await answer_in_process(exchange, body, cache_header="off"), exchange

    def models(
        self, aliases: list[str], hardware_costs: dict[str, Decimal] | None = None
    ) -> list[BenchModel]:
        """The run's view of each alias: its configuration (for the report: price, host), and
        the gateway to call it through."""
        models = []
        for alias in aliases:
            configured = self.config.model(alias)
            assert configured is not None, "checked when the gateway was built"
            provider = GatewayAlias(self, alias, configured)
            models.append(_described(alias, configured, configured, provider, hardware_costs))
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
