"""The application as each worker process of `entrepot serve --workers N` builds it.

Worker processes are started by uvicorn's supervisor, which can hand them only an import string:
so the configuration travels as the environment (`ENTREPOT_CONFIG`, and `ENTREPOT_OFFLINE` for
`--offline`), which every worker reads here for itself. Several workers keep their limits,
budgets, cache, circuits and keys in the shared backend (`shared.backend: redis`), so a fleet of
workers answers exactly as one process would.
"""

from __future__ import annotations

import os

from starlette.types import ASGIApp

from entrepot.api.app import create_app
from entrepot.api.gateway import Gateway
from entrepot.config import Config, load_config

OFFLINE_ENV = "ENTREPOT_OFFLINE"


def configured(config: Config, offline: bool) -> Config:
    """The configuration as served: `--offline` turns the policy's offline mode on."""
    if not offline:
        return config
    policy = config.policy.model_copy(update={"offline": True})
    return config.model_copy(update={"policy": policy})


def worker_app() -> ASGIApp:
    """uvicorn's factory for one worker: the configuration from the environment."""
    config = configured(load_config(), os.environ.get(OFFLINE_ENV) == "1")
    return create_app(Gateway(config))
