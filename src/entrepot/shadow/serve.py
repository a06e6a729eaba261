"""The served application with its shadow copies: what `entrepot serve` runs, in one process
or in each worker of `--workers N` (see `api/factory.py`, which `api` cannot extend with this
package)."""

from __future__ import annotations

import os

from starlette.types import ASGIApp

from entrepot.api.app import create_app
from entrepot.api.factory import OFFLINE_ENV, configured
from entrepot.api.gateway import Gateway
from entrepot.config import Config, load_config
from entrepot.shadow.traffic import ShadowTraffic

WORKER_APP = "entrepot.shadow.serve:worker_app"


def gateway_app(config: Config) -> ASGIApp:
    gateway = Gateway(config)
    ShadowTraffic.attach(gateway)
    return create_app(gateway)


def worker_app() -> ASGIApp:
    """uvicorn's factory for one worker: the configuration from the environment."""
    return gateway_app(configured(load_config(), os.environ.get(OFFLINE_ENV) == "1"))
