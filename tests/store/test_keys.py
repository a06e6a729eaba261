"""KeyStore: secrets shown once and stored only as SHA-256, listing, revoking, budgets; and the
gateway's in-memory key ring over it: one reload for a burst of unknown keys, logged failures."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError

import entrepot.api.auth as auth
from entrepot.api.auth import KeyRing
from entrepot.config import StoreConfig
from entrepot.exceptions import AuthenticationError, InvalidRequestError, NotFoundError
from entrepot.failure_log import FailureLog
from entrepot.store.db import open_engine
from entrepot.store.keys import KeyStore, hash_key
from entrepot.store.tables import api_keys
from entrepot.types import ApiKey


@pytest.fixture
def store(engine: Engine) -> KeyStore:
    return KeyStore(engine)


def database_bytes(tmp_path: Path) -> bytes:
    """The database file and its WAL/shared-memory companions, where fresh writes live."""
    return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("t.db*")))


def test_secret_is_returned_once_and_only_its_hash_is_stored(
    store: KeyStore, engine: Engine, tmp_path: Path
) -> None:
    key, secret = store.create("team-a")
    assert secret.startswith("ek-")
    assert len(secret) == 3 + 43  # 32 random bytes, URL-safe base64 without padding
    assert key.key_prefix == secret[:10]
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert hash_key(secret) == digest
    with engine.connect() as conn:
        row = conn.execute(select(api_keys)).mappings().one()
    assert row["key_hash"] == digest
    assert secret not in {str(v) for v in row.values()}
    if engine.dialect.name != "sqlite":
        return  # the file-level check below reads SQLite's files
    raw = database_bytes(tmp_path)
    assert digest.encode() in raw  # the bytes read really hold the table...
    assert secret.encode() not in raw  # ...and the secret is nowhere in them
    assert secret[10:].encode() not in raw


def test_secrets_are_distinct(store: KeyStore) -> None:
    secrets = {store.create(f"k{i}")[1] for i in range(5)}
    assert len(secrets) == 5


def test_name_is_stripped_and_validated(store: KeyStore) -> None:
    key, _ = store.create("  padded  ")
    assert key.name == "padded"
    for bad in ["", "   ", "x" * 201, "tab\there"]:
        with pytest.raises(InvalidRequestError) as info:
            store.create(bad)
        assert info.value.param == "name"


def test_duplicate_name_rejected(store: KeyStore) -> None:
    store.create("dup")
    with pytest.raises(InvalidRequestError, match="a key named 'dup' already exists") as info:
        store.create("dup")
    assert info.value.status_code == 400
    assert [k.name for k in store.list(include_revoked=True)] == ["dup"]


def test_bad_budget_period_rejected(store: KeyStore) -> None:
    with pytest.raises(InvalidRequestError, match="day, month, total") as info:
        store.create("k", budget_amount=Decimal(5), budget_period="week")
    assert info.value.param == "budget_period"
    assert store.list(include_revoked=True) == []


def test_negative_budget_rejected(store: KeyStore) -> None:
    with pytest.raises(InvalidRequestError, match="not negative") as info:
        store.create("k", budget_amount=Decimal("-0.01"))
    assert info.value.param == "budget"
    assert store.list(include_revoked=True) == []


def test_budget_fields_stored(store: KeyStore) -> None:
    key, _ = store.create(
        "budgeted", budget_amount=Decimal("12.345678"), budget_currency="EUR", budget_period="day"
    )
    fetched = store.get(key.id)
    assert fetched == key
    assert fetched.budget_amount == Decimal("12.345678")
    assert fetched.budget_currency == "EUR"
    assert fetched.budget_period == "day"
    assert fetched.public()["budget"] == {"amount": "12.345678", "currency": "EUR", "period": "day"}


def test_zero_budget_is_a_budget(store: KeyStore) -> None:
    key, _ = store.create("frozen", budget_amount=Decimal(0), budget_period="total")
    assert key.budget_amount == 0
    assert key.budget_period == "total"
    assert key.budget_currency == "USD"


def test_no_budget_stores_no_currency_or_period(store: KeyStore) -> None:
    key, _ = store.create("free", budget_currency="EUR", budget_period="day")
    assert (key.budget_amount, key.budget_currency, key.budget_period) == (None, None, None)
    assert key.public()["budget"] is None


def test_allowed_models_round_trip(store: KeyStore) -> None:
    key, _ = store.create("scoped", allowed_models=["fake/echo", "local/a", "fake/echo"])
    fetched = store.get(key.id)
    assert fetched.allowed_models == ("fake/echo", "local/a")
    assert fetched.may_use("local/a")
    assert fetched.may_use("fake/echo")
    assert not fetched.may_use("fake/other")
    assert not fetched.may_use("local")
    assert fetched.public()["allowed_models"] == ["fake/echo", "local/a"]


def test_empty_allowed_models_is_refused_not_read_as_any(store: KeyStore) -> None:
    with pytest.raises(InvalidRequestError) as info:
        store.create("nothing", allowed_models=[])
    assert info.value.param == "allowed_models"


def test_no_allowed_models_means_any(store: KeyStore) -> None:
    key, _ = store.create("open")
    assert key.allowed_models is None
    assert key.may_use("anything/at-all")
    assert key.public()["allowed_models"] is None


def test_list_excludes_revoked_unless_asked(store: KeyStore) -> None:
    a, _ = store.create("a")
    b, _ = store.create("b")
    c, _ = store.create("c")
    store.revoke("b")
    assert [k.name for k in store.list()] == ["a", "c"]
    everything = store.list(include_revoked=True)
    assert [k.name for k in everything] == ["a", "b", "c"]
    assert [k.id for k in everything] == [a.id, b.id, c.id]
    assert [k.revoked_at is not None for k in everything] == [False, True, False]


def test_revoke_by_id(store: KeyStore) -> None:
    store.create("first")
    key, _ = store.create("second")
    revoked = store.revoke(str(key.id))
    assert revoked.id == key.id
    assert revoked.name == "second"
    assert revoked.revoked_at is not None
    assert [k.name for k in store.list()] == ["first"]


def test_revoke_by_name(store: KeyStore) -> None:
    key, _ = store.create("by-name")
    revoked = store.revoke("by-name")
    assert revoked.id == key.id
    assert revoked.revoked_at is not None
    assert store.get(key.id).revoked_at == revoked.revoked_at


def test_revoke_twice_is_not_found(store: KeyStore) -> None:
    key, _ = store.create("once")
    store.revoke("once")
    with pytest.raises(NotFoundError, match="no active key 'once'"):
        store.revoke("once")
    with pytest.raises(NotFoundError):
        store.revoke(str(key.id))


def test_revoke_unknown_is_not_found(store: KeyStore) -> None:
    with pytest.raises(NotFoundError) as info:
        store.revoke("ghost")
    assert info.value.status_code == 404
    with pytest.raises(NotFoundError):
        store.revoke("999")


def test_get_unknown_is_not_found(store: KeyStore) -> None:
    with pytest.raises(NotFoundError, match="no key with id 42"):
        store.get(42)


def test_active_by_hash(store: KeyStore) -> None:
    alpha, alpha_secret = store.create("alpha", allowed_models=["m"])
    beta, beta_secret = store.create("beta")
    _, gamma_secret = store.create("gamma")
    store.revoke("gamma")
    active = store.active_by_hash()
    assert set(active) == {hash_key(alpha_secret), hash_key(beta_secret)}
    assert active[hash_key(alpha_secret)] == alpha
    assert active[hash_key(beta_secret)] == beta
    assert hash_key(gamma_secret) not in active
    found: ApiKey = active[hash_key(alpha_secret)]
    assert found.may_use("m") and not found.may_use("n")


def test_keys_survive_a_new_engine(store: KeyStore, tmp_path: Path) -> None:
    key, secret = store.create("durable", allowed_models=["x"], budget_amount=Decimal("1.5"))
    url = store.engine.url.render_as_string(hide_password=False)
    reopened = KeyStore(open_engine(StoreConfig(url=url)))
    assert reopened.active_by_hash()[hash_key(secret)] == key


@pytest.mark.parametrize("amount", ["NaN", "Infinity"])
def test_non_finite_budget_rejected(store: KeyStore, amount: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        store.create("k", budget_amount=Decimal(amount))
    assert info.value.param == "budget"


# The gateway's view of the keys (api/auth.py): loaded into memory, refreshed from this store.


def _outage() -> OperationalError:
    return OperationalError("SELECT", {}, sqlite3.OperationalError("unable to open database file"))


async def _until(condition: Callable[[], bool], attempts: int = 4_000) -> None:
    """Let the event loop run until `condition` holds (a bound on hangs, not a timing check)."""
    for _ in range(attempts):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never became true")


class CountingLoads:
    """Stands in for `KeyStore.active_by_hash`: counts loads, and fails them while told to."""

    def __init__(self, store: KeyStore) -> None:
        self.real = store.active_by_hash
        self.calls = 0
        self.failing = False

    def __call__(self) -> dict[str, ApiKey]:
        self.calls += 1
        if self.failing:
            raise _outage()
        return self.real()


def test_fifty_concurrent_unknown_keys_cost_one_reload(
    store: KeyStore, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Single flight: every request that misses while a reload is in flight waits for that one.
    (Every miss may start a reload here, so only the sharing can keep the count at one.) The
    request that started it giving up does not cancel it for the others."""
    monkeypatch.setattr(auth, "MISS_RELOAD_SECONDS", -1.0)
    loads = CountingLoads(store)

    async def main() -> list[ApiKey | BaseException | None]:
        ring = KeyRing(engine, admin_key=None, require_keys=True)
        await ring.start()
        _, secret = store.create("created-after-the-load")
        monkeypatch.setattr(ring.store, "active_by_hash", loads)
        headers = [{"authorization": f"Bearer {secret}"}] * 25
        headers += [{"authorization": f"Bearer ek-guess-{i}"} for i in range(25)]
        tasks = [asyncio.create_task(ring.authenticate(h)) for h in headers]
        await asyncio.sleep(0)  # every request has missed and is waiting
        tasks[0].cancel()  # the client whose miss started the reload disconnects
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await ring.stop()
        return results

    results = asyncio.run(main())
    assert loads.calls == 1
    assert isinstance(results[0], asyncio.CancelledError)
    assert all(isinstance(r, ApiKey) and r.name == "created-after-the-load" for r in results[1:25])
    assert all(isinstance(r, AuthenticationError) for r in results[25:])


def test_refresh_failures_are_logged_with_their_reason_and_rate_limited(
    store: KeyStore,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(auth, "REFRESH_SECONDS", 0.0)
    loads = CountingLoads(store)
    now = [1_000.0]

    def messages() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "entrepot.auth"]

    async def main() -> None:
        ring = KeyRing(engine, admin_key=None, require_keys=True)
        ring.refresh_log = FailureLog(
            logging.getLogger("entrepot.auth"), "key refresh", clock=lambda: now[0]
        )
        monkeypatch.setattr(ring.store, "active_by_hash", loads)
        loads.failing = True
        with pytest.raises(OperationalError):
            await ring.start()  # a gateway does not start on a database it cannot read
        loads.failing = False
        await ring.start()
        loads.failing = True
        await _until(lambda: loads.calls >= 30)
        assert len(messages()) == 1  # thirty failures, one line
        assert "key refresh failed" in messages()[0]
        assert "unable to open database file" in messages()[0]
        now[0] += 61  # a minute on: one reminder, counting what it stands for
        seen = loads.calls
        await _until(lambda: loads.calls > seen + 5)
        assert len(messages()) == 2
        assert "still failing" in messages()[1] and "unable to open" in messages()[1]
        loads.failing = False
        await _until(lambda: len(messages()) == 3)
        assert "works again" in messages()[2]
        await ring.stop()

    with caplog.at_level(logging.INFO, logger="entrepot.auth"):
        asyncio.run(main())


def test_an_unknown_key_during_an_outage_is_refused_and_known_keys_still_work(
    store: KeyStore,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(auth, "MISS_RELOAD_SECONDS", -1.0)
    _, secret = store.create("known")
    loads = CountingLoads(store)

    async def main() -> None:
        ring = KeyRing(engine, admin_key=None, require_keys=True)
        await ring.start()
        monkeypatch.setattr(ring.store, "active_by_hash", loads)
        loads.failing = True
        with pytest.raises(AuthenticationError, match="invalid or revoked"):
            await ring.authenticate({"authorization": "Bearer ek-not-a-key"})
        key = await ring.authenticate({"authorization": f"Bearer {secret}"})
        assert key is not None and key.name == "known"
        await ring.stop()

    with caplog.at_level(logging.WARNING, logger="entrepot.auth"):
        asyncio.run(main())
    assert loads.calls == 1
    assert any("unable to open database file" in r.getMessage() for r in caplog.records)
