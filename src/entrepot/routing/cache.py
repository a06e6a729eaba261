"""An opt-in exact-match response cache.

Keyed on the caller, the alias and the request with delivery-only fields removed, so a hit is
the same question from the same key; it is scoped per key so one tenant's answers never reach
another. Only complete (non-streamed) answers are stored. A hit costs nothing upstream.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass

import orjson

from entrepot.config import CacheConfig
from entrepot.exceptions import InvalidRequestError
from entrepot.types import JSON

HEADER = "x-entrepot-cache"
DELIVERY_FIELDS = frozenset({"stream", "stream_options", "user"})


@dataclass(slots=True)
class CachedResponse:
    body: bytes
    expires_at: float


class Cache(ABC):
    """What a request asks of the cache, wherever the answers are kept: this process's memory
    (`ResponseCache`) or Redis for a fleet (`routing.shared_cache`). `get` is a coroutine
    because a shared cache is a network call away; `put` returns at once, since keeping an
    answer must never delay it."""

    def __init__(self, config: CacheConfig) -> None:
        self._config = config

    def ttl_for(self, header: str | None, key_ttl: int | None) -> float | None:
        """The TTL this request asked for: header `on`, `off` or `ttl=SECONDS`, else the key's."""
        if header is None:
            return float(key_ttl) if key_ttl else None
        value = header.strip().lower()
        if value == "off":
            return None
        if value == "on":
            return float(key_ttl or self._config.ttl_seconds)
        if value.startswith("ttl="):
            seconds = value[4:]
            if seconds.isdigit() and int(seconds) > 0:
                return float(seconds)
        raise InvalidRequestError(
            f"{HEADER} must be on, off or ttl=SECONDS", param=HEADER, code="invalid_header"
        )

    @staticmethod
    def fingerprint(scope: str, endpoint: str, body: JSON) -> str:
        kept = {k: v for k, v in body.items() if k not in DELIVERY_FIELDS}
        material = orjson.dumps([scope, endpoint, kept], option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(material).hexdigest()

    @abstractmethod
    async def get(self, fingerprint: str) -> bytes | None:
        """The answer kept under `fingerprint`, or None: never kept, expired, or unreachable."""

    @abstractmethod
    def put(self, fingerprint: str, body: bytes, ttl: float) -> None:
        """Keep `body` for `ttl` seconds, evicting the least recently used past `max_entries`."""

    @abstractmethod
    async def drain(self) -> None:
        """Wait until the answers being kept are kept (at shutdown)."""


class ResponseCache(Cache):
    """One process's cache, in its memory."""

    def __init__(self, config: CacheConfig) -> None:
        super().__init__(config)
        self._entries: OrderedDict[str, CachedResponse] = OrderedDict()

    async def get(self, fingerprint: str) -> bytes | None:
        entry = self._entries.get(fingerprint)
        if entry is None:
            return None
        if entry.expires_at < time.monotonic():
            del self._entries[fingerprint]
            return None
        self._entries.move_to_end(fingerprint)
        return entry.body

    async def drain(self) -> None:
        """Nothing to wait for: `put` keeps an answer before it returns."""

    def put(self, fingerprint: str, body: bytes, ttl: float) -> None:
        self._entries[fingerprint] = CachedResponse(body, time.monotonic() + ttl)
        self._entries.move_to_end(fingerprint)
        while len(self._entries) > self._config.max_entries:
            self._entries.popitem(last=False)
