"""KeyStore: secrets shown once and stored only as SHA-256, listing, revoking, budgets."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from entrepot.config import StoreConfig
from entrepot.exceptions import InvalidRequestError, NotFoundError
from entrepot.store.db import open_engine
from entrepot.store.keys import KeyStore, hash_key
from entrepot.store.tables import api_keys
from entrepot.types import ApiKey


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return open_engine(StoreConfig(url=f"sqlite:///{tmp_path}/t.db"))


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
    reopened = KeyStore(open_engine(StoreConfig(url=f"sqlite:///{tmp_path}/t.db")))
    assert reopened.active_by_hash()[hash_key(secret)] == key


@pytest.mark.parametrize("amount", ["NaN", "Infinity"])
def test_non_finite_budget_rejected(store: KeyStore, amount: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        store.create("k", budget_amount=Decimal(amount))
    assert info.value.param == "budget"
