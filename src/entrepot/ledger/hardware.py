"""What an hour of a local deployment costs, so local and remote models are compared on one axis.

A local model is not free: it occupies cores (or a GPU) that could be rented out or turned off.
Its price per hour is, in order: the operator's `hardware_cost_per_hour`; else the shipped,
dated reference (`hardware_prices.yaml`: on-demand cloud list prices) for the hardware it uses —
a named GPU kind (`hardware: nvidia-l4`), or CPU cores (`hardware: cpu`, the default for
in-process llama.cpp: the threads it generates with); else nothing, when the operator says
`hardware: unpriced`. A deployment behind a URL (a vLLM or Ollama server) is priced only when
its hardware is named: the gateway cannot see what serves it.

The ledger bills the busy seconds of each request at this rate (`billing.py`); the bench and
`entrepot models` show it with its source and date.
"""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import NamedTuple

import yaml

from entrepot.config import Config, ModelConfig
from entrepot.exceptions import ConfigError

CPU, UNPRICED = "cpu", "unpriced"


class ReferencePrice(NamedTuple):
    """One figure of the reference: the price of one `unit` (vCPU or GPU) for an hour."""

    unit: str
    per_hour: Decimal
    instance: str
    provider: str
    region: str
    as_of: dt.date

    @property
    def source(self) -> str:
        return f"{self.provider} {self.instance}, {self.region}"


class HardwareRate(NamedTuple):
    """A deployment's price per hour in USD; `reference` is None when the operator set it."""

    per_hour: Decimal
    units: int
    reference: ReferencePrice | None

    @property
    def as_of(self) -> dt.date | None:
        return self.reference.as_of if self.reference else None

    def describe(self) -> str:
        """E.g. `0.0504 USD/hour: 1 vCPU × 0.0504 (AWS EC2 on-demand m7i.large, us-east-1,
        2026-06-17)`."""
        shown = f"{self.per_hour.normalize():f} USD/hour"
        if self.reference is None:
            return f"{shown} of hardware (configured)"
        ref = self.reference
        return (
            f"{shown}: {self.units} {ref.unit} × {ref.per_hour.normalize():f}"
            f" ({ref.source}, {ref.as_of.isoformat()})"
        )


class Reference(NamedTuple):
    cpu: ReferencePrice
    gpus: dict[str, ReferencePrice]


def _figure(raw: dict[str, object]) -> ReferencePrice:
    as_of = raw["as_of"]
    assert isinstance(as_of, dt.date)
    return ReferencePrice(
        unit=str(raw["unit"]),
        per_hour=Decimal(str(raw["per_hour"])),
        instance=str(raw["instance"]),
        provider=str(raw["provider"]),
        region=str(raw["region"]),
        as_of=as_of,
    )


@lru_cache(maxsize=1)
def reference() -> Reference:
    """The shipped reference prices."""
    text = resources.files("entrepot.ledger").joinpath("hardware_prices.yaml").read_text("utf-8")
    raw = yaml.safe_load(text)
    return Reference(
        cpu=_figure(raw["cpu"]),
        gpus={kind: _figure(entry) for kind, entry in raw["gpus"].items()},
    )


def cores_used(model: ModelConfig) -> int:
    """The cores a deployment priced by CPU occupies while it answers: `local.n_threads`, else
    what llama.cpp uses by default (half the machine's logical cores) for in-process models,
    and the whole machine for a local server."""
    if model.local.n_threads is not None:
        return model.local.n_threads
    logical = os.cpu_count() or 1
    return max(logical // 2, 1) if model.provider == "llama_cpp" else logical


def _from_reference(model: ModelConfig) -> HardwareRate | None:
    kind = model.hardware or (CPU if model.provider == "llama_cpp" else UNPRICED)
    if kind == UNPRICED:
        return None
    table = reference()
    if kind == CPU:
        cores = cores_used(model)
        return HardwareRate(cores * table.cpu.per_hour, cores, table.cpu)
    gpu = table.gpus.get(kind)
    if gpu is None:
        known = ", ".join([CPU, *table.gpus, UNPRICED])
        raise ConfigError(
            f"model {model.alias!r}: field hardware: unknown kind {kind!r}; known: {known}"
        )
    return HardwareRate(gpu.per_hour, 1, gpu)


# Rates per model config (kept beside it, so a reused id is noticed): billing asks on every
# request, and a config is frozen for the life of the process.
_RATES: dict[int, tuple[ModelConfig, HardwareRate | None]] = {}
_RATES_KEPT = 1024


def hourly_rate(model: ModelConfig) -> HardwareRate | None:
    """What an hour of `model`'s hardware costs, in USD; None when it has none (a remote or
    unnamed server, or `hardware: unpriced`). A token price, where there is one, comes first."""
    entry = _RATES.get(id(model))
    if entry is None or entry[0] is not model:
        if len(_RATES) >= _RATES_KEPT:
            _RATES.clear()
        if model.hardware_cost_per_hour is not None:
            rate: HardwareRate | None = HardwareRate(model.hardware_cost_per_hour, 1, None)
        else:
            rate = _from_reference(model)
        entry = _RATES[id(model)] = (model, rate)
    return entry[1]


def check(config: Config) -> None:
    """Every model's `hardware` names a known kind: said at start, not on the first request."""
    for model in config.models:
        hourly_rate(model)
