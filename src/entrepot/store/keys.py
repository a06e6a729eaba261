"""Client API keys. Only a SHA-256 of each key is stored: keys are 256-bit random strings, so a
fast unsalted hash is enough to make a stolen database useless, and lookups stay one index probe.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from entrepot.exceptions import InvalidRequestError, NotFoundError
from entrepot.store.tables import api_keys
from entrepot.types import ApiKey

KEY_PREFIX = "ek-"
BUDGET_PERIODS = ("day", "month", "total")


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self,
        name: str,
        allowed_models: list[str] | None = None,
        budget_amount: Decimal | None = None,
        budget_currency: str = "USD",
        budget_period: str = "month",
        *,
        team: str | None = None,
        data_class: str | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        cache_ttl_seconds: int | None = None,
        default_task: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Returns the key record and the secret, which is shown once and never stored."""
        name = name.strip()
        if not name or len(name) > 200 or not name.isprintable():
            raise InvalidRequestError("key name must be 1-200 printable characters", param="name")
        if budget_period not in BUDGET_PERIODS:
            raise InvalidRequestError(
                f"budget period must be one of {', '.join(BUDGET_PERIODS)}", param="budget_period"
            )
        if budget_amount is not None and (not budget_amount.is_finite() or budget_amount < 0):
            raise InvalidRequestError(
                "budget must be a finite number, not negative", param="budget"
            )
        if allowed_models is not None and not allowed_models:
            raise InvalidRequestError(
                "allowed_models must name at least one model; omit it to allow every model",
                param="allowed_models",
            )
        for param, value in (
            ("requests_per_minute", requests_per_minute),
            ("tokens_per_minute", tokens_per_minute),
            ("cache_ttl_seconds", cache_ttl_seconds),
        ):
            if value is not None and value < 1:
                raise InvalidRequestError(f"{param} must be at least 1", param=param)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        values = {
            "name": name,
            "key_hash": hash_key(secret),
            "key_prefix": secret[:10],
            "allowed_models": sorted(set(allowed_models)) if allowed_models is not None else None,
            "budget_amount": budget_amount,
            "budget_currency": budget_currency if budget_amount is not None else None,
            "budget_period": budget_period if budget_amount is not None else None,
            "created_at": dt.datetime.now(dt.UTC),
            "team": team,
            "data_class": data_class,
            "requests_per_minute": requests_per_minute,
            "tokens_per_minute": tokens_per_minute,
            "cache_ttl_seconds": cache_ttl_seconds,
            "default_task": default_task,
        }
        try:
            with self.engine.begin() as conn:
                inserted = conn.execute(insert(api_keys).values(**values).returning(api_keys.c.id))
                key_id = inserted.scalar_one()
        except IntegrityError:
            raise InvalidRequestError(
                f"a key named {name!r} already exists", param="name"
            ) from None
        return self.get(int(key_id)), secret

    def get(self, key_id: int) -> ApiKey:
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"no key with id {key_id}")
        return _from_row(row)

    def list(self, include_revoked: bool = False) -> list[ApiKey]:
        query = select(api_keys).order_by(api_keys.c.id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            return [_from_row(row) for row in conn.execute(query).mappings()]

    def active_by_hash(self) -> dict[str, ApiKey]:
        """Every usable key by hash: the gateway holds this in memory so auth costs no query."""
        query = select(api_keys).where(api_keys.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            return {row["key_hash"]: _from_row(row) for row in conn.execute(query).mappings()}

    def revoke(self, ref: str) -> ApiKey:
        """Revoke by id or by name."""
        column = api_keys.c.id if ref.isdigit() else api_keys.c.name
        value: int | str = int(ref) if ref.isdigit() else ref
        with self.engine.begin() as conn:
            result = conn.execute(
                update(api_keys)
                .where(column == value, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=dt.datetime.now(dt.UTC))
                .returning(api_keys.c.id)
            ).first()
        if result is None:
            raise NotFoundError(f"no active key {ref!r}")
        return self.get(int(result[0]))


def _from_row(row: Any) -> ApiKey:
    allowed = row["allowed_models"]
    return ApiKey(
        id=row["id"],
        name=row["name"],
        key_prefix=row["key_prefix"],
        allowed_models=tuple(allowed) if allowed else None,
        budget_amount=Decimal(str(row["budget_amount"]))
        if row["budget_amount"] is not None
        else None,
        budget_currency=row["budget_currency"],
        budget_period=row["budget_period"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        team=row["team"],
        data_class=row["data_class"],
        requests_per_minute=row["requests_per_minute"],
        tokens_per_minute=row["tokens_per_minute"],
        cache_ttl_seconds=row["cache_ttl_seconds"],
        default_task=row["default_task"],
    )
