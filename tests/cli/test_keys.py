"""`entrepot keys`: a secret printed once and stored as a hash, listings without secrets,
revocation, and the errors of `create`."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path

import pytest

from tests.cli.invoke import ok, run, store, write

pytestmark = pytest.mark.usefixtures("cli_env")


TWO_MODELS = """\
models:
  - {alias: a, provider: openai_compatible, target: a, base_url: "http://127.0.0.1:9/v1"}
  - {alias: b, provider: openai_compatible, target: b, base_url: "http://127.0.0.1:9/v1"}
"""


def test_keys_create_prints_the_secret_once(tmp_path: Path) -> None:
    config = str(write(tmp_path, TWO_MODELS))
    out = ok("keys", "create", "team-a", "--models", "b, a,", "--budget", "5", "-c", config)
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("ek-")
    assert len(secret) == 46
    assert "created key team-a (id 1)" in out
    (key,) = store().list()
    assert key.name == "team-a"
    assert key.allowed_models == ("a", "b")
    assert key.budget_amount == Decimal(5)
    assert (key.budget_currency, key.budget_period) == ("USD", "month")
    assert store().active_by_hash()[hashlib.sha256(secret.encode()).hexdigest()] == key


def test_keys_list_shows_names_never_secrets(tmp_path: Path) -> None:
    config = str(write(tmp_path, TWO_MODELS))
    created = ok("keys", "create", "team-a", "--models", "a,b", "--budget", "5", "-c", config)
    secret = created.splitlines()[-1]
    ok("keys", "create", "team-b", "--budget", "1.5", "--currency", "EUR", "--period", "day")
    out = ok("keys", "list")
    assert "team-a" in out and "team-b" in out
    assert secret not in out
    assert secret[10:20] not in out
    assert secret[:10] in out
    assert "a, b" in out
    assert "$5.00/month" in out and "€1.50/day" in out


def test_keys_revoke_hides_the_key_from_list() -> None:
    ok("keys", "create", "keep")
    ok("keys", "create", "drop")
    assert "revoked key drop (id 2)" in ok("keys", "revoke", "drop")
    listed = ok("keys", "list")
    assert "keep" in listed
    assert "drop" not in listed
    assert "drop" in ok("keys", "list", "--all")
    assert [k.name for k in store().list()] == ["keep"]


def test_keys_revoke_by_id_and_twice() -> None:
    ok("keys", "create", "once")
    assert "revoked key once (id 1)" in ok("keys", "revoke", "1")
    again = run("keys", "revoke", "1")
    assert again.exit_code == 1
    assert "no active key '1'" in again.output


def test_keys_create_refuses_an_unknown_model(tmp_path: Path) -> None:
    config = str(write(tmp_path, TWO_MODELS))
    result = run("keys", "create", "typo", "--models", "a,gpt-4o", "-c", config)
    assert result.exit_code == 2
    assert "--models: 'gpt-4o' not configured; known: a, b" in result.output
    assert store().list() == []


def test_keys_create_errors_exit_1() -> None:
    ok("keys", "create", "dup")
    duplicate = run("keys", "create", "dup")
    assert duplicate.exit_code == 1
    assert "a key named 'dup' already exists" in duplicate.output
    bad_period = run("keys", "create", "p", "--budget", "1", "--period", "week")
    assert bad_period.exit_code == 1
    assert "budget period must be one of day, month, total" in bad_period.output
    assert [k.name for k in store().list()] == ["dup"]


def test_keys_carry_team_class_and_limits() -> None:
    ok("keys", "create", "analysts", "--team", "research", "--data-class", "confidential",
       "--rpm", "30", "--tpm", "9000", "--cache-ttl", "60")  # fmt: skip
    listed = ok("keys", "list")
    assert "research" in listed and "confidential" in listed and "30/9000" in listed
    refused = run("keys", "create", "bad-class", "--data-class", "top-secret")
    assert refused.exit_code == 2 and "unknown data class" in refused.output
