"""The connection to Redis, for the state a fleet of replicas shares (`shared.backend: redis`):
one client per process, built from the configured URL, made here so that every layer above
(limits, routing, api) uses the same pool of connections and the same timeouts."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from entrepot.config import SharedConfig

# Short, so that a Redis that stops answering fails requests fast (and they are refused or
# counted locally, as configured) rather than hanging them.
SOCKET_TIMEOUT_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 1.0


# Connections per process. Beyond them a command waits (at most `POOL_WAIT_SECONDS`) for one
# to come free: redis-py's default pool raises at its bound instead, which under a burst of
# concurrent requests read as "Redis unreachable" and refused requests Redis could have served.
MAX_CONNECTIONS = 64
POOL_WAIT_SECONDS = 1.0


def connect(config: SharedConfig) -> Redis:
    """A client for the configured Redis; connections open lazily, on first use."""
    pool = BlockingConnectionPool.from_url(
        config.redis_url(),
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        health_check_interval=30,
    )
    return Redis.from_pool(pool)  # closed with the client
