"""The `entrepot` command, run in-process against a throwaway data directory."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner, Result

import entrepot.shadow.serve
from entrepot.cli import app, check_bind
from entrepot.config import BUNDLED_ALIAS, StoreConfig, load_config
from entrepot.exceptions import ConfigError
from entrepot.store.db import open_engine
from entrepot.store.keys import KeyStore
from entrepot.store.usage import insert_records
from entrepot.types import UsageRecord

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENTREPOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")  # rich tables must not wrap cells we look for
    for name in ("ENTREPOT_CONFIG", "ENTREPOT_DATABASE_URL", "ENTREPOT_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if `serve` gets as far as building a gateway or starting uvicorn."""

    def forbidden(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("serve went past the bind check")

    monkeypatch.setattr(uvicorn, "run", forbidden)
    monkeypatch.setattr(entrepot.shadow.serve, "gateway_app", forbidden)


def run(*args: str) -> Result:
    return runner.invoke(app, list(args))


def ok(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.output


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "entrepot.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def store() -> KeyStore:
    return KeyStore(open_engine(StoreConfig()))


def test_models_shows_the_bundled_model() -> None:
    out = ok("models")
    assert BUNDLED_ALIAS in out
    assert "llama_cpp" in out
    assert "Apache-2.0" in out
    assert "vCPU × 0.0504 (AWS EC2 on-demand m7i.large" in out  # priced by default, not free


def test_models_shows_prices_from_config(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """\
models:
  - {alias: echo, provider: openai_compatible, target: x, base_url: "http://h/v1",
     price: {input_per_1m: "2.00", output_per_1m: "8.00", as_of: 2026-01-15}}
  - {alias: ds, provider: openai_compatible, target: deepseek/deepseek-chat, base_url: "http://h"}
  - {alias: box, provider: llama_cpp, target: t, hardware_cost_per_hour: "0.36"}
""",
    )
    out = ok("models", "--config", str(config))
    assert "$2.00·$8.00 (2026-01-15)" in out
    assert "$0.280·$0.420 (2025-09-29)" in out
    assert "0.36 USD/hour of hardware" in out
    assert BUNDLED_ALIAS not in out


@pytest.mark.parametrize("given", ["X=abc", "X=-1", "X=nan", "=0.3", "X"])
def test_bench_says_what_is_wrong_with_a_hardware_cost(given: str) -> None:
    result = run("bench", "pack:arithmetic", "--models", "X", "--hardware-cost", given)
    assert result.exit_code == 2, result.output
    assert "--hardware-cost" in result.output and "MODEL=USD_PER_HOUR" in result.output
    assert isinstance(result.exception, SystemExit)


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


def test_usage_on_an_empty_ledger() -> None:
    out = ok("usage", "--by", "key")
    assert "requests" in out and "completion tokens" in out
    assert "(no key)" not in out


def test_usage_with_rows() -> None:
    def record(rid: str, key: str | None, cost: int | None, status: int = 200) -> UsageRecord:
        return UsageRecord(
            request_id=rid,
            endpoint="chat.completions",
            key_name=key,
            model_alias="fake/echo",
            prompt_tokens=1_000,
            completion_tokens=250,
            cost_nanos=cost,
            currency="USD" if cost is not None else None,
            status=status,
        )

    insert_records(
        open_engine(StoreConfig()),
        [
            record("1", "alice", 4_000_000),
            record("2", "alice", 2_500_000),
            record("3", None, None, 401),
        ],
    )
    out = ok("usage", "--by", "key")
    (alice,) = [line for line in out.splitlines() if "alice" in line]
    cells = [c.strip() for c in alice.strip("│ ").split("│")]
    assert cells == ["alice", "2", "0", "2,000", "500", "$0.00650"]
    (anonymous,) = [line for line in out.splitlines() if "(no key)" in line]
    cells = [c.strip() for c in anonymous.strip("│ ").split("│")]
    assert cells == ["(no key)", "1", "1", "1,000", "250", "—"]
    by_model = ok("usage")
    assert "fake/echo" in by_model


def test_usage_rejects_unknown_grouping() -> None:
    result = run("usage", "--by", "nonsense")
    assert result.exit_code == 2
    assert "--by must be key, model or day" in result.output


@pytest.mark.usefixtures("no_server")
def test_serve_refuses_public_bind_without_admin_key() -> None:
    result = run("serve", "--host", "0.0.0.0")
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "refusing to bind 0.0.0.0" in result.output
    assert "$ENTREPOT_ADMIN_KEY" in result.output
    assert "require_client_keys: true" in result.output


@pytest.mark.usefixtures("no_server")
def test_serve_refuses_public_bind_with_admin_key_but_open_access(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENTREPOT_ADMIN_KEY", "admin-secret")
    result = run("serve", "--host", "192.168.1.5")
    assert result.exit_code == 2, result.output
    assert "refusing to bind 192.168.1.5" in result.output


def test_serve_allowed_public_bind_reaches_uvicorn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENTREPOT_ADMIN_KEY", "admin-secret")
    config = write(tmp_path, "server:\n  require_client_keys: true\n")
    calls: dict[str, Any] = {}
    monkeypatch.setattr(entrepot.shadow.serve, "gateway_app", lambda config: ("app", config))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.update(app=app, **kw))
    ok("serve", "--config", str(config), "--host", "0.0.0.0", "--port", "8123")
    assert calls["host"] == "0.0.0.0"
    assert calls["port"] == 8123
    assert calls["app"][1].server.require_client_keys is True


def test_check_bind_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    open_config = load_config()
    locked = load_config(write(tmp_path, "server:\n  require_client_keys: true\n"))
    for host in ("127.0.0.1", "localhost", "::1"):
        check_bind(open_config, host)  # loopback needs nothing
    with pytest.raises(ConfigError, match=r"refusing to bind 0\.0\.0\.0"):
        check_bind(locked, "0.0.0.0")  # no admin key
    monkeypatch.setenv("ENTREPOT_ADMIN_KEY", "")
    with pytest.raises(ConfigError):
        check_bind(locked, "0.0.0.0")  # an empty admin key is no key
    monkeypatch.setenv("ENTREPOT_ADMIN_KEY", "admin-secret")
    with pytest.raises(ConfigError):
        check_bind(open_config, "0.0.0.0")  # admin key, but clients need no key
    check_bind(locked, "0.0.0.0")
    check_bind(locked, "::")


def test_check_bind_uses_the_configured_admin_key_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(
        write(tmp_path, "server:\n  require_client_keys: true\n  admin_key_env: MY_ADMIN\n")
    )
    monkeypatch.setenv("ENTREPOT_ADMIN_KEY", "ignored")
    with pytest.raises(ConfigError, match=r"\$MY_ADMIN"):
        check_bind(config, "10.0.0.1")
    monkeypatch.setenv("MY_ADMIN", "admin-secret")
    check_bind(config, "10.0.0.1")


@pytest.mark.usefixtures("no_server")
@pytest.mark.parametrize("command", [["models"], ["keys", "list"], ["usage"], ["serve"]])
def test_config_error_exits_2_with_the_line(tmp_path: Path, command: list[str]) -> None:
    config = write(tmp_path, "server:\n  port: 8000\n  hots: 0.0.0.0\n")
    result = run(*command, "--config", str(config))
    assert result.exit_code == 2, result.output
    assert "configuration error" in result.output
    assert "line 3: server.hots: Extra inputs are not permitted" in result.output


def test_config_error_from_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path, "models:\n  - alias: a\n    provider: llama_cpp\n    target: [x]\n")
    monkeypatch.setenv("ENTREPOT_CONFIG", str(config))
    result = run("models")
    assert result.exit_code == 2
    assert "line 4: models.0.target" in result.output


def test_route_explain_shows_each_candidate_and_why(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "policy:\n"
        "  reroute_alias: local/smollm2-135m-instruct\n"
        "models:\n"
        "  - alias: local/smollm2-135m-instruct\n"
        "    provider: llama_cpp\n"
        "    target: bundled:smollm2-135m-instruct\n"
        "  - {alias: ds, name: ds-api, provider: openai_compatible, target: deepseek-chat,\n"
        "     base_url: 'https://api.deepseek.com/v1', jurisdiction: CN}\n"
        "  - {alias: ds, name: ds-eu, provider: openai_compatible, target: deepseek-chat,\n"
        "     base_url: 'https://eu.example/v1', jurisdiction: EU}\n",
    )
    plain = ok("route", "--model", "ds", "--config", str(config))
    assert "data class internal" in plain and "ds-api" in plain and "ds-eu" in plain
    iban = "Pay GB82 WEST 1234 5698 7654 32"
    sensitive = ok("route", "--model", "ds", "--message", iban, "--config", str(config))
    assert "confidential" in sensitive and "iban×1" in sensitive
    assert "served as local/smollm2-135m-instruct" in sensitive
    offline = ok(
        "route", "--model", "ds", "--offline", "--config", str(config), "--data-class", "public"
    )
    assert "offline" in offline


def test_keys_carry_team_class_and_limits() -> None:
    ok("keys", "create", "analysts", "--team", "research", "--data-class", "confidential",
       "--rpm", "30", "--tpm", "9000", "--cache-ttl", "60")  # fmt: skip
    listed = ok("keys", "list")
    assert "research" in listed and "confidential" in listed and "30/9000" in listed
    refused = run("keys", "create", "bad-class", "--data-class", "top-secret")
    assert refused.exit_code == 2 and "unknown data class" in refused.output


def test_version() -> None:
    from entrepot import __version__

    assert ok("--version").strip() == f"entrepot {__version__}"
