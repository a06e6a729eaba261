"""The configuration schema — the single source of truth for what `entrepot.yaml` may say.

One module per part of the file (`server`, `models`, `routing`, `policy`, `limits`, `store`),
`root` for the whole file and the checks across its sections, `loading` for reading it with
errors that name the line. Every name is importable from here, so no caller depends on which
module a section lives in.
"""

from __future__ import annotations

from entrepot.config.limits import Budget, CurrencyRates, Limits
from entrepot.config.loading import CheckedLoader, load_config
from entrepot.config.loopback import is_loopback
from entrepot.config.models import (
    BUNDLED_ALIAS,
    BUNDLED_TARGET,
    SHA256_PATTERN,
    Lineage,
    LocalOptions,
    ModelConfig,
    Price,
    ProviderName,
    Timeouts,
)
from entrepot.config.policy import (
    DETECTOR_KINDS,
    DetectorConfig,
    JurisdictionRule,
    PolicyConfig,
    TeamConfig,
)
from entrepot.config.root import Config
from entrepot.config.routing import (
    BreakerConfig,
    CacheConfig,
    ModelName,
    RouteConfig,
    ShadowConfig,
)
from entrepot.config.server import ServerConfig
from entrepot.config.store import ResponsesConfig, SharedConfig, StoreConfig

__all__ = [
    "BUNDLED_ALIAS",
    "BUNDLED_TARGET",
    "DETECTOR_KINDS",
    "SHA256_PATTERN",
    "BreakerConfig",
    "Budget",
    "CacheConfig",
    "CheckedLoader",
    "Config",
    "CurrencyRates",
    "DetectorConfig",
    "JurisdictionRule",
    "Limits",
    "Lineage",
    "LocalOptions",
    "ModelConfig",
    "ModelName",
    "PolicyConfig",
    "Price",
    "ProviderName",
    "ResponsesConfig",
    "RouteConfig",
    "ServerConfig",
    "ShadowConfig",
    "SharedConfig",
    "StoreConfig",
    "TeamConfig",
    "Timeouts",
    "is_loopback",
    "load_config",
]
