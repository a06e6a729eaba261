"""The gateway's long-lived state, built once from the config and torn down in order.

Start-up order follows the request path backwards (store, ledger, keys, deployments) so nothing
serves before what it depends on is ready; shutdown flushes the ledger last.
"""

from __future__ import annotations

from sqlalchemy import Engine

from entrepot.api.auth import KeyRing
from entrepot.config import Config
from entrepot.ledger.metrics import GatewayMetrics
from entrepot.ledger.writer import LedgerWriter
from entrepot.routing.table import RoutingTable
from entrepot.store.db import open_engine


class Gateway:
    def __init__(self, config: Config, engine: Engine | None = None) -> None:
        self.config = config
        self.engine = engine or open_engine(config.store)
        self.metrics = GatewayMetrics()
        self.ledger = LedgerWriter(self.engine, config.store, self.metrics)
        self.keys = KeyRing(
            self.engine, config.server.admin_key(), config.server.require_client_keys
        )
        self.routing = RoutingTable(config)

    async def start(self) -> None:
        await self.ledger.start()
        await self.keys.start()
        await self.routing.start()

    async def stop(self) -> None:
        await self.routing.close()
        await self.keys.stop()
        await self.ledger.stop()
        self.engine.dispose()
