"""Who is calling. Keys live in memory (refreshed from the store) so authentication costs a hash
and a dict lookup, not a query; a key created or revoked by another process is seen within
`REFRESH_SECONDS` (within a second when a fleet shares Redis: `store.key_events` tells every
replica to reload at once), and an unknown key triggers an immediate reload: at most one per
`MISS_RELOAD_SECONDS`, shared by every request that misses meanwhile, so a burst of unknown keys
(a new client's first requests, or someone guessing) costs the database one query, not one each.

While the database is down, the keys already loaded keep working; failed refreshes are logged
with their reason, once and then as a reminder a minute (not every few seconds for the length of
an outage), and an unknown key is refused as unknown.

Client keys are found by their SHA-256, so lookup time depends on the digest, never on how much of
a guessed secret is right; the admin key, held in plain memory, is compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Mapping

from sqlalchemy import Engine
from starlette.requests import Request

from entrepot.exceptions import AuthenticationError, PermissionDeniedError
from entrepot.failure_log import FailureLog
from entrepot.store.key_events import KeyEvents
from entrepot.store.keys import KEY_PREFIX, KeyStore, hash_key
from entrepot.types import ApiKey

REFRESH_SECONDS = 5.0
MISS_RELOAD_SECONDS = 1.0

log = logging.getLogger("entrepot.auth")


class KeyRing:
    def __init__(
        self,
        engine: Engine,
        admin_key: str | None,
        require_keys: bool,
        events: KeyEvents | None = None,
    ) -> None:
        self.store = KeyStore(engine)
        self.events = events
        self.admin_key = admin_key
        self.require_keys = require_keys
        self._by_hash: dict[str, ApiKey] = {}
        self._loaded_at = 0.0
        self._missed_at = 0.0
        self._miss_reload: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self.refresh_log = FailureLog(log, "key refresh")

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._refresh_forever(), name="key-refresh")
        if self.events is not None:
            self._watch = asyncio.create_task(self.events.watch(self._refresh), name="key-events")

    async def stop(self) -> None:
        for task in (self._task, self._watch):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._miss_reload is not None:
            await asyncio.gather(self._miss_reload, return_exceptions=True)

    async def reload(self) -> None:
        """Load the keys afresh (after a key is created or revoked here: a load that began
        before the change is not enough, so this does not join one in flight)."""
        async with self._lock:
            self._by_hash = await asyncio.to_thread(self.store.active_by_hash)
            self._loaded_at = time.monotonic()

    async def changed(self) -> None:
        """A key was created or revoked here: load the keys afresh, then tell the fleet."""
        await self.reload()
        if self.events is not None:
            await self.events.announce()

    async def _refresh(self) -> None:
        try:
            await self.reload()
        except Exception as error:
            self.refresh_log.failed(error)
        else:
            self.refresh_log.succeeded()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            await self._refresh()

    async def _reload_for_miss(self) -> None:
        """Join the reload in flight, or start one unless the keys (or an attempt to load them)
        are fresher than `MISS_RELOAD_SECONDS`. The shared reload is shielded: one waiting
        client disconnecting does not cancel it for the others."""
        if self._miss_reload is None:
            now = time.monotonic()
            if now - max(self._loaded_at, self._missed_at) <= MISS_RELOAD_SECONDS:
                return
            self._missed_at = now
            self._miss_reload = asyncio.create_task(self._refresh(), name="key-reload")
            self._miss_reload.add_done_callback(self._miss_reload_done)
        await asyncio.shield(self._miss_reload)

    def _miss_reload_done(self, _task: asyncio.Task[None]) -> None:
        self._miss_reload = None

    def is_admin(self, secret: str) -> bool:
        return self.admin_key is not None and hmac.compare_digest(
            secret.encode(), self.admin_key.encode()
        )

    async def authenticate(self, headers: Mapping[str, str]) -> ApiKey | None:
        """The calling key, or None for an anonymous caller where keys are not required."""
        secret = bearer_token(headers)
        if secret is None:
            if self.require_keys:
                raise AuthenticationError(
                    "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
                )
            return None
        if self.is_admin(secret):
            return None
        if not self.require_keys and not secret.startswith(KEY_PREFIX):
            return None
        digest = hash_key(secret)
        key = self._by_hash.get(digest)
        if key is None:
            await self._reload_for_miss()
            key = self._by_hash.get(digest)
        if key is None:
            raise AuthenticationError("invalid or revoked API key")
        return key

    def loaded(self, key_id: int) -> ApiKey | None:
        """The active key `key_id` as last loaded, or None once it is revoked: an in-process
        caller (`entrepot bench --key NAME`) holds no secret to authenticate with, and sees a
        revocation or a change of its key when a client of this gateway would."""
        return next((key for key in self._by_hash.values() if key.id == key_id), None)

    def require_admin(self, request: Request) -> None:
        if self.admin_key is None:
            raise PermissionDeniedError(
                "the admin API is disabled: set the admin key environment variable",
                code="admin_disabled",
            )
        secret = bearer_token(request.headers)
        if secret is None or not self.is_admin(secret):
            raise AuthenticationError("the admin API needs the admin key")


def bearer_token(headers: Mapping[str, str]) -> str | None:
    header = headers.get("authorization")
    if not header:
        return headers.get("x-api-key") or None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
