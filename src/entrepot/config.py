"""The configuration schema — the single source of truth for what `entrepot.yaml` may say.

Validation happens once, at start-up; a mistake is reported with the YAML line and the dotted
field path so it can be fixed without guessing. Secrets are never in the file: a deployment names
the environment variable that holds its key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import socket
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from entrepot.exceptions import ConfigError, CurrencyRateMissingError

BUNDLED_ALIAS = "local/smollm2-135m-instruct"
BUNDLED_TARGET = "bundled:smollm2-135m-instruct"
# The providers a model may name; `providers/registry.py` maps each to its implementation. Checked
# here, with the file's line, so every command (`models` as much as `serve`) refuses a typo.
ProviderName = Literal["openai_compatible", "anthropic", "llama_cpp"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Strict):
    """Price per million tokens, with the date it was read so every cost can say how fresh it is."""

    input_per_1m: Decimal = Field(ge=0)
    output_per_1m: Decimal = Field(ge=0)
    cached_input_per_1m: Decimal | None = Field(default=None, ge=0)
    currency: str = "USD"
    as_of: dt.date


class Timeouts(_Strict):
    connect: float = Field(default=10.0, gt=0)
    first_token: float = Field(default=120.0, gt=0)
    total: float = Field(default=600.0, gt=0)


class LocalOptions(_Strict):
    """Knobs for in-process llama.cpp; `parallel` model instances share `max_queue` waiters."""

    n_ctx: int = Field(default=2048, ge=256)
    n_threads: int | None = Field(default=None, ge=1)
    parallel: int = Field(default=1, ge=1, le=16)
    max_queue: int = Field(default=32, ge=0)
    queue_timeout: float = Field(default=120.0, gt=0)
    embedding: bool = False
    seed: int | None = None  # seed for requests that give none; unset: a fresh one per request


class Lineage(_Strict):
    """Where a model's weights came from: the configured alias they were derived from, how,
    and on what data. `entrepot models lineage` draws the tree; the usage records carry the
    digests of the very files that answered (`providers/weights.py`)."""

    base: str | None = None
    derivation: Literal["quantised", "fine-tuned", "lora", "merged"] | None = None
    dataset: str | None = None
    notes: str | None = None


SHA256_PATTERN = r"^[0-9a-f]{64}$"


class ModelConfig(_Strict):
    """One model clients can ask for, and the deployment that serves it."""

    alias: str = Field(min_length=1, max_length=256)
    provider: ProviderName
    target: str = Field(min_length=1)
    name: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    jurisdiction: str = "local"
    licence: str | None = None
    # A local model's files are checked against these digests before they are loaded. A LoRA
    # `adapter` (a GGUF adapter file) is applied by llama_cpp on top of `target`, its base's
    # weights, and is its own alias; its lineage names that base.
    weights_sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)
    adapter: str | None = Field(default=None, min_length=1)
    adapter_sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)
    lineage: Lineage | None = None
    price: Price | None = None
    hardware_cost_per_hour: Decimal | None = Field(default=None, ge=0)
    # What a local deployment without `hardware_cost_per_hour` is priced as, from the shipped
    # hardware price reference (`ledger/hardware.py`): `cpu` (the default for llama_cpp: the
    # threads it runs on), a GPU kind such as `nvidia-l4`, or `unpriced` to opt out.
    hardware: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]*$")
    timeouts: Timeouts = Timeouts()
    local: LocalOptions = LocalOptions()
    headers: dict[str, str] = Field(default_factory=dict)
    max_concurrency: int = Field(default=256, ge=1)
    weight: float = Field(default=1.0, gt=0)
    max_output_tokens: int = Field(default=4096, ge=1)
    # The body field an OpenAI-compatible upstream honours as the output cap. Many servers know
    # only `max_tokens` and ignore `max_completion_tokens`; OpenAI's reasoning models accept
    # only `max_completion_tokens`. The gateway always sends the cap it reserved for, in this field.
    output_cap_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"

    @property
    def is_local(self) -> bool:
        """Processed on this machine: in-process, or an upstream on a loopback address."""
        if self.provider == "llama_cpp":
            return True
        host = urlsplit(self.base_url or "").hostname or ""
        return is_loopback(host)

    @field_validator("alias")
    @classmethod
    def _printable_alias(cls, value: str) -> str:
        if not value.isprintable() or any(c.isspace() for c in value):
            raise ValueError("alias must be printable and contain no whitespace")
        return value

    @model_validator(mode="after")
    def _one_hardware_price(self) -> ModelConfig:
        if self.hardware is not None and self.hardware_cost_per_hour is not None:
            raise ValueError("give hardware_cost_per_hour or hardware, not both")
        return self

    @model_validator(mode="after")
    def _adapter_is_lora(self) -> ModelConfig:
        if self.adapter is None:
            if self.adapter_sha256 is not None:
                raise ValueError("adapter_sha256 is the digest of an `adapter`, and none is given")
            return self
        if self.provider != "llama_cpp":
            raise ValueError("an `adapter` is applied by the llama_cpp provider only")
        lineage = self.lineage
        if lineage is None or lineage.base is None or lineage.derivation != "lora":
            raise ValueError(
                "a model with an `adapter` says what it adapts:"
                " lineage: {base: BASE_ALIAS, derivation: lora}"
            )
        return self

    @model_validator(mode="after")
    def _remote_needs_url(self) -> ModelConfig:
        if self.provider in {"openai_compatible", "anthropic"} and not self.base_url:
            if self.provider == "anthropic":
                object.__setattr__(self, "base_url", "https://api.anthropic.com")
            else:
                raise ValueError(f"provider {self.provider!r} needs base_url")
        return self

    @property
    def deployment(self) -> str:
        return self.name or f"{self.provider}:{self.alias}"

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class CurrencyRates(_Strict):
    """What one unit of each currency is worth in `base`, as read on `as_of`: a budget is kept in
    one currency, and a cost in another is converted at these rates — or, with no rate, the
    request is refused (`CurrencyRateMissingError`) rather than left out of the budget."""

    as_of: dt.date | None = None
    base: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    rates: dict[str, Decimal] = Field(default_factory=dict)

    @field_validator("rates")
    @classmethod
    def _positive_rates(cls, rates: dict[str, Decimal]) -> dict[str, Decimal]:
        for currency, rate in rates.items():
            if len(currency) != 3 or not currency.isascii() or not currency.isupper():
                raise ValueError(f"{currency!r} is not a three-letter currency code like EUR")
            if not rate.is_finite() or rate <= 0:
                raise ValueError(f"the rate for {currency} must be a positive number")
        return rates

    @model_validator(mode="after")
    def _dated(self) -> CurrencyRates:
        if self.rates and self.as_of is None:
            raise ValueError("currency rates need the date they were read (`as_of`)")
        if self.rates.get(self.base, 1) != 1:
            raise ValueError(f"the base currency {self.base} is worth 1 {self.base} by definition")
        return self

    def convert(self, nanos: int, source: str, target: str) -> int:
        """`nanos` of `source` in `target`, rounded half to even: the same rounding wherever a
        cost is converted, so a budget counter and the ledger it is seeded from agree."""
        if source == target:
            return nanos
        missing = [c for c in (source, target) if c != self.base and c not in self.rates]
        if missing:
            needed = ", ".join(missing)
            raise CurrencyRateMissingError(
                f"a cost in {source} cannot be charged to a budget in {target}: the gateway's"
                f" currency_rates (base {self.base}) have no rate for {needed}; an administrator"
                f" must add it, or price the model in {target}"
            )
        worth = Fraction(self.rates.get(source, 1)) / Fraction(self.rates.get(target, 1))
        return round(nanos * worth)


class Budget(_Strict):
    amount: Decimal = Field(ge=0, allow_inf_nan=False)
    currency: str = "USD"
    period: Literal["day", "month", "total"] = "month"


class Limits(_Strict):
    """Per key or per team; every limit is optional."""

    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    budget: Budget | None = None


class JurisdictionRule(_Strict):
    """Where data of one class (or one team's data) may be processed. `allow: null` = anywhere."""

    allow: list[str] | None = None
    deny: list[str] = Field(default_factory=list)


class TeamConfig(_Strict):
    data_class: str | None = None
    rule: JurisdictionRule = JurisdictionRule()
    limits: Limits = Limits()


DETECTOR_KINDS = ("email", "phone", "iban", "card", "national_id", "api_key", "private_key")


class DetectorConfig(_Strict):
    enabled: bool = True
    kinds: list[str] = Field(default_factory=lambda: list(DETECTOR_KINDS))
    custom: dict[str, str] = Field(default_factory=dict)
    raises_to: str = "confidential"

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        unknown = sorted(set(kinds) - set(DETECTOR_KINDS))
        if unknown:
            raise ValueError(f"unknown detector kinds {unknown}; known: {list(DETECTOR_KINDS)}")
        return kinds


class PolicyConfig(_Strict):
    """Data classes in ascending sensitivity, and where each may go."""

    classes: list[str] = Field(default_factory=lambda: ["public", "internal", "confidential"])
    default_class: str = "internal"
    rules: dict[str, JurisdictionRule] = Field(
        default_factory=lambda: {"confidential": JurisdictionRule(allow=["local"])}
    )
    detector: DetectorConfig = DetectorConfig()
    reroute_alias: str | None = None
    offline: bool = False

    @model_validator(mode="after")
    def _known_classes(self) -> PolicyConfig:
        named = [self.default_class, self.detector.raises_to, *self.rules]
        unknown = sorted({c for c in named if c not in self.classes})
        if unknown:
            raise ValueError(f"unknown data classes {unknown}; declared: {self.classes}")
        return self


class ShadowConfig(_Strict):
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


class RouteConfig(_Strict):
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


class ModelName(_Strict):
    """Clients of another vendor's protocol send that vendor's model names (an Anthropic SDK
    sends `claude-haiku-4-5`): a name no alias matches is served by the first rule whose
    shell-style pattern (`claude-*haiku*`, `*`) matches it."""

    match: str = Field(min_length=1)
    alias: str


class BreakerConfig(_Strict):
    failure_threshold: int = Field(default=3, ge=1)
    cooldown_seconds: float = Field(default=30.0, gt=0)


class CacheConfig(_Strict):
    ttl_seconds: float = Field(default=300.0, gt=0)
    max_entries: int = Field(default=10_000, ge=1)


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    require_client_keys: bool = False
    admin_key_env: str = "ENTREPOT_ADMIN_KEY"
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    cors_origins: list[str] = Field(default_factory=list)
    # A folder of bench, audit and shadow runs (each a folder with report.json and report.html)
    # that the console's Evaluations page lists beside the runs published to the store.
    reports_dir: str | None = None

    def admin_key(self) -> str | None:
        return os.environ.get(self.admin_key_env) or None


class StoreConfig(_Strict):
    url: str | None = None
    ledger_flush_seconds: float = Field(default=0.25, gt=0)
    ledger_batch_size: int = Field(default=500, ge=1)
    # Where usage records wait while the store is unreachable; default: beside the SQLite file,
    # or in the data directory.
    spool_dir: str | None = None
    # PostgreSQL: the longest wait for a new connection (libpq counts whole seconds, at least 2)
    # and for one statement, so a database that stops answering fails calls instead of hanging.
    connect_timeout_seconds: int = Field(default=5, ge=2)
    statement_timeout_seconds: float = Field(default=30, gt=0)


class SharedConfig(_Strict):
    """Where the state every replica must agree on lives: rate and budget counters, the response
    cache, circuit state and key revocations. `memory` (the default) serves one process; a fleet
    (several workers or machines) needs `redis`, at the URL in the environment variable
    `redis_url_env`. When Redis cannot be reached, `on_unavailable: closed` refuses requests of
    keys with limits (503 `limits_unavailable`) while others are served; `open` counts them in
    the process's own memory and flags their usage records."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url_env: str = "ENTREPOT_REDIS_URL"
    on_unavailable: Literal["closed", "open"] = "closed"

    def redis_url(self) -> str:
        url = os.environ.get(self.redis_url_env)
        if not url:
            raise ConfigError(
                f"shared.backend is redis but ${self.redis_url_env} is not set:"
                f" export {self.redis_url_env}=redis://HOST:6379/0"
            )
        return url


class ResponsesConfig(_Strict):
    """Responses API answers kept for `GET /v1/responses/{id}` and `previous_response_id`. They
    hold conversation content, so they are kept no longer than `retention_days`."""

    retention_days: int = Field(default=30, ge=1)


class Config(_Strict):
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
        _check_lineage(self.models)
        for alias, route in self.routes.items():
            _check_route(alias, route, aliases)
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


def _check_route(alias: str, route: RouteConfig, aliases: set[str]) -> None:
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


def _check_lineage(models: list[ModelConfig]) -> None:
    """A lineage's base is a configured alias, no model descends from itself, and a LoRA
    adapter is applied to its base's own weights."""
    by_alias = {m.alias: m for m in models}
    for i, model in enumerate(models):
        base = model.lineage.base if model.lineage else None
        if base is None:
            continue
        if base not in by_alias:
            raise ValueError(f"models[{i}].lineage.base {base!r} is not a configured alias")
        if model.adapter is not None and by_alias[base].target != model.target:
            raise ValueError(
                f"models[{i}]: an adapter is served on its base's weights, so its target is"
                f" {by_alias[base].target!r}, as {base!r} has it"
            )
        seen = {model.alias}
        while base is not None:
            if base in seen:
                raise ValueError(f"models[{i}].lineage: {model.alias!r} descends from itself")
            seen.add(base)
            parent = by_alias.get(base)
            base = parent.lineage.base if parent is not None and parent.lineage else None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load `path`, else `$ENTREPOT_CONFIG`, else the embedded default (the bundled model)."""
    chosen = path or os.environ.get("ENTREPOT_CONFIG")
    if not chosen:
        return Config()
    file = Path(chosen)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {file}: {exc.strerror}") from exc
    try:
        node = yaml.compose(text)
        data = yaml.load(text, Loader=CheckedLoader)
    except yaml.MarkedYAMLError as exc:
        where = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark else ""
        raise ConfigError(f"{file}: {where}not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be a mapping")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            where = ".".join(str(p) for p in loc) or "(top level)"
            line = _line_of(node, loc)
            at = f"line {line}: " if line else ""
            lines.append(f"{file}: {at}{where}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None


class CheckedLoader(yaml.SafeLoader):
    """A safe loader whose impossible dates (`2025-13-01`) are YAML errors with their line, as
    every other mistake in the file is, rather than a ValueError from deep inside the parser."""

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"{node.value!r} is not a date ({exc}); write YYYY-MM-DD",
                node.start_mark,
            ) from None


CheckedLoader.add_constructor("tag:yaml.org,2002:timestamp", CheckedLoader.construct_yaml_timestamp)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Follow a pydantic error location through the YAML node tree to a 1-based line."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                return line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
        else:
            return line
        line = node.start_mark.line + 1
    return line


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine's loopback: `localhost`, or an address literal in any
    spelling the system's resolver reads as a loopback address — `127.0.0.2`, `::1`, `[::1]`,
    `::ffff:127.0.0.1`, and the classic IPv4 short forms (`127.1`, `0x7f.1`, `2130706433`),
    which connecting to `http://127.1/` reaches as 127.0.0.1.

    Any other name is not, even one that starts with "127.": DNS decides where such a name
    points, and this check guards both the bind address and which upstreams count as local."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not _IPV4_NUMBERS.fullmatch(host):
            return False
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


# One to four dot-separated numbers, decimal, octal or hexadecimal: what `inet_aton` (and so the
# resolver) reads as an IPv4 address. Matched first because `inet_aton` itself ignores anything
# after a space, which the resolver does not.
_IPV4_NUMBERS = re.compile(r"(?:0[xX][0-9a-fA-F]+|[0-9]+)(?:\.(?:0[xX][0-9a-fA-F]+|[0-9]+)){0,3}")
