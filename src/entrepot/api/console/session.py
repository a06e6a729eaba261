"""Console sessions: a signed cookie that says "the admin key was shown here, until then".

Signed with a secret derived from the admin key, so every worker and replica that has the key
accepts the sessions of the others without sharing state, and changing the admin key ends every
session at once. A session's CSRF token is derived from it the same way. Logging out forgets the
cookie in the browser and refuses it here until it expires; in a fleet (`shared.backend: redis`)
every replica refuses it too (`store/console_sessions.py`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

COOKIE = "entrepot_console"
LOGIN_COOKIE = "entrepot_console_login"
LIFETIME_SECONDS = 8 * 3600
LOGIN_FORM_SECONDS = 15 * 60


@dataclass(frozen=True)
class Session:
    nonce: str
    expires: int
    csrf: str


def _secret(admin_key: str, purpose: str) -> bytes:
    return hmac.new(admin_key.encode(), f"entrepot console {purpose}".encode(), "sha256").digest()


def _sign(admin_key: str, purpose: str, payload: str) -> str:
    return hmac.new(_secret(admin_key, purpose), payload.encode(), hashlib.sha256).hexdigest()


class Sessions:
    def __init__(self) -> None:
        self._ended: dict[str, int] = {}  # nonce → expiry, of sessions logged out

    def issue(self, admin_key: str) -> tuple[str, Session]:
        """A new session: the cookie's value, and the session it stands for."""
        nonce = secrets.token_urlsafe(18)
        expires = int(time.time()) + LIFETIME_SECONDS
        payload = f"{expires}.{nonce}"
        value = f"{payload}.{_sign(admin_key, 'session', payload)}"
        return value, self._session(admin_key, nonce, expires)

    def read(self, admin_key: str, value: str | None) -> Session | None:
        """The session a cookie stands for, or None: missing, forged, expired or logged out."""
        parts = (value or "").split(".")
        if len(parts) != 3 or not parts[0].isdigit():
            return None
        expires, nonce, signature = int(parts[0]), parts[1], parts[2]
        expected = _sign(admin_key, "session", f"{expires}.{nonce}")
        if not hmac.compare_digest(signature, expected):
            return None
        if expires <= time.time() or nonce in self._ended:
            return None
        return self._session(admin_key, nonce, expires)

    def end(self, session: Session) -> None:
        now = time.time()
        self._ended = {n: e for n, e in self._ended.items() if e > now}
        self._ended[session.nonce] = session.expires

    @staticmethod
    def _session(admin_key: str, nonce: str, expires: int) -> Session:
        return Session(nonce, expires, _sign(admin_key, "csrf", nonce))


def login_token() -> str:
    """The login form's CSRF token, sent both as a cookie and in the form (double submit): a
    page elsewhere can make a browser post a form, not read or set this site's cookie."""
    return secrets.token_urlsafe(18)


def same_token(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))
