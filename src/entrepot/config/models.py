"""`models:` — the models clients can ask for, each with the deployment that serves it, its
price and where its weights came from. Secrets are never in the file: a deployment names the
environment variable that holds its key."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from entrepot.config.loopback import is_loopback
from entrepot.config.strict import Strict

BUNDLED_ALIAS = "local/smollm2-135m-instruct"
BUNDLED_TARGET = "bundled:smollm2-135m-instruct"
# The providers a model may name; `providers/registry.py` maps each to its implementation. Checked
# here, with the file's line, so every command (`models` as much as `serve`) refuses a typo.
ProviderName = Literal["openai_compatible", "anthropic", "llama_cpp"]


class Price(Strict):
    """Price per million tokens, with the date it was read so every cost can say how fresh it is."""

    input_per_1m: Decimal = Field(ge=0)
    output_per_1m: Decimal = Field(ge=0)
    cached_input_per_1m: Decimal | None = Field(default=None, ge=0)
    currency: str = "USD"
    as_of: dt.date


class Timeouts(Strict):
    connect: float = Field(default=10.0, gt=0)
    first_token: float = Field(default=120.0, gt=0)
    total: float = Field(default=600.0, gt=0)


class LocalOptions(Strict):
    """Knobs for in-process llama.cpp; `parallel` model instances share `max_queue` waiters."""

    n_ctx: int = Field(default=2048, ge=256)
    n_threads: int | None = Field(default=None, ge=1)
    parallel: int = Field(default=1, ge=1, le=16)
    max_queue: int = Field(default=32, ge=0)
    queue_timeout: float = Field(default=120.0, gt=0)
    embedding: bool = False
    seed: int | None = None  # seed for requests that give none; unset: a fresh one per request


class Lineage(Strict):
    """Where a model's weights came from: the configured alias they were derived from, how,
    and on what data. `entrepot models lineage` draws the tree; the usage records carry the
    digests of the very files that answered (`providers/weights.py`)."""

    base: str | None = None
    derivation: Literal["quantised", "fine-tuned", "lora", "merged"] | None = None
    dataset: str | None = None
    notes: str | None = None


SHA256_PATTERN = r"^[0-9a-f]{64}$"


class ModelConfig(Strict):
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


def check_lineage(models: list[ModelConfig]) -> None:
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
