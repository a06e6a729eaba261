"""The connection to Redis, for the state a fleet of replicas shares (`shared.backend: redis`):
one client per process, built from the configured URL, made here so that every layer above
(limits, routing, api) uses the same pool of connections and the same timeouts."""

from __future__ import annotations

from redis.asyncio import Redis

from entrepot.config import SharedConfig

# Short, so that a Redis that stops answering fails requests fast (and they are refused or
# counted locally, as configured) rather than hanging them.
SOCKET_TIMEOUT_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 1.0


def connect(config: SharedConfig) -> Redis:
    """A client for the configured Redis; connections open lazily, on first use."""
    client: Redis = Redis.from_url(
        config.redis_url(),
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        health_check_interval=30,
    )
    return client
