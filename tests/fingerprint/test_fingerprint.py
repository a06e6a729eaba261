"""`entrepot fingerprint` against a fake host whose models answer in their own words: a host that
swaps its model (between take and check, or halfway through the check) is flagged, one that does
not is not, nor one whose answers vary a little; every canary goes through the gateway's
pipeline (ledger, key budget, egress policy)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from typer.testing import CliRunner

from entrepot.cli import app
from entrepot.config import Config
from entrepot.exceptions import BudgetExceededError, EgressDeniedError
from entrepot.fingerprint import canaries
from entrepot.fingerprint.session import SAMPLES, FingerprintRequest, check, take
from entrepot.store.db import open_engine
from entrepot.store.keys import KeyStore
from tests.conftest import Server, create_key, start_fake

CANARIES = len(canaries.load().canaries)
RUN = SAMPLES * CANARIES  # requests per take or check
DEPLOYMENT = "openai_compatible:remote"
PRICE = {"input_per_1m": "2", "output_per_1m": "8", "as_of": "2026-11-01"}


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_fake(tmp_path_factory.mktemp("swapping"), "swapping_upstream", "/received/x")
    yield server
    server.stop()


def _settings(host: Server, tmp: Path, target: str, **extra: Any) -> dict[str, Any]:
    return {
        "store": {"url": f"sqlite:///{tmp / 'ledger.db'}", "ledger_flush_seconds": 0.05},
        "models": [
            {
                "alias": "remote",
                "provider": "openai_compatible",
                "target": target,
                "base_url": host.url + "/v1",
                "jurisdiction": "CN",
                "price": PRICE,
            }
        ],
        **extra,
    }


def _config(host: Server, tmp: Path, target: str, **extra: Any) -> Config:
    return Config.model_validate(_settings(host, tmp, target, **extra))


def _received(host: Server, target: str) -> int:
    return int(httpx.get(f"{host.url}/received/{target}").json())


def _rows(tmp: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tmp / "ledger.db") as db:
        return db.execute(query).fetchall()


def test_a_host_that_swaps_its_model_after_the_take_is_flagged(
    host: Server, tmp_path: Path
) -> None:
    target = f"swap-after-{RUN}-between"
    config = _config(host, tmp_path, target)
    taken = take(config, FingerprintRequest("remote"))
    result = check(config, FingerprintRequest("remote"))

    found = result.agreement
    assert taken.noise == (1.0, 1.0)
    assert found.substituted and "below the noise floor" in found.reason
    assert found.floor == 1.0 and found.floor_spread == 0.0
    assert found.exact_share == 0.0 and found.similarity < 0.7
    assert result.take.id == taken.run.id and result.run.fingerprint_id == taken.run.id
    assert _received(host, target) == 2 * RUN
    # Kept with their date: both runs, every answer, and every call in the ledger as ours.
    runs = _rows(tmp_path, "SELECT kind, substituted, deployment FROM fingerprint_runs")
    assert sorted(runs) == [("check", 1, DEPLOYMENT), ("take", None, DEPLOYMENT)]
    assert _rows(tmp_path, "SELECT count(*) FROM fingerprint_answers") == [(2 * RUN,)]
    ledger = _rows(tmp_path, "SELECT endpoint, key_name, status FROM usage_records")
    assert ledger == [("fingerprint:chat", "cli:fingerprint", 200)] * (2 * RUN)


def test_a_swap_halfway_through_the_check_is_flagged(host: Server, tmp_path: Path) -> None:
    config = _config(host, tmp_path, f"swap-after-{RUN + CANARIES}-midcheck")
    take(config, FingerprintRequest("remote"))
    found = check(config, FingerprintRequest("remote")).agreement
    assert found.per_sample[0] == 1.0 and found.per_sample[1] < 0.7
    assert found.substituted and "check sample 2" in found.reason


def test_a_host_that_keeps_its_model_is_not_flagged(host: Server, tmp_path: Path) -> None:
    config = _config(host, tmp_path, "persona-alpha")
    take(config, FingerprintRequest("remote"))
    found = check(config, FingerprintRequest("remote")).agreement
    assert not found.substituted and found.reason == "within the noise floor"
    assert found.exact_share == 1.0 and found.similarity == 1.0


def test_inherent_sampling_noise_stays_within_the_noise_floor(host: Server, tmp_path: Path) -> None:
    config = _config(host, tmp_path, "noisy-host")
    take(config, FingerprintRequest("remote"))
    found = check(config, FingerprintRequest("remote")).agreement
    assert found.floor < 0.95 and found.floor_spread > 0  # the answers do vary
    assert found.exact_share < 0.5
    assert not found.substituted, found.reason
    assert found.shortfall <= found.margin


def test_a_new_tokenizer_behind_the_same_words_is_flagged(host: Server, tmp_path: Path) -> None:
    config = _config(host, tmp_path, f"retokenized-after-{RUN}-t")
    take(config, FingerprintRequest("remote"))
    found = check(config, FingerprintRequest("remote")).agreement
    assert found.exact_share == 1.0
    assert found.substituted and found.tokens_changed == CANARIES
    assert "prompt token counts differ" in found.reason


def _cli(tmp: Path, settings: dict[str, Any], *args: str) -> Any:
    path = tmp / "entrepot.yaml"
    path.write_text(yaml.safe_dump(settings))
    return CliRunner().invoke(
        app, ["fingerprint", *args, "--config", str(path)], env={"COLUMNS": "80"}
    )


def test_the_commands_print_80_columns_json_and_exit_1_on_a_substitution(
    host: Server, tmp_path: Path
) -> None:
    settings = _settings(host, tmp_path, f"swap-after-{RUN}-cli")
    taken = _cli(tmp_path, settings, "take", "remote")
    assert taken.exit_code == 0, taken.output
    assert "fingerprint of remote taken" in taken.output
    checked = _cli(tmp_path, settings, "check", "remote")
    assert checked.exit_code == 1, checked.output
    assert "PROBABLE SUBSTITUTION" in checked.output
    assert max(len(line) for line in checked.output.splitlines()) <= 80
    again = _cli(tmp_path, settings, "check", "remote", "--json")
    assert again.exit_code == 1
    document = orjson.loads(again.output)
    assert document["agreement"]["substituted"] is True
    assert document["check"]["canary_set"] == "v1"
    history = _cli(tmp_path, settings, "history", "remote")
    lines = history.output.splitlines()
    assert [line.split()[3] for line in lines] == ["take", "check", "check"]
    assert all(len(line) <= 80 for line in lines)


def test_a_check_without_a_take_says_what_to_run(host: Server, tmp_path: Path) -> None:
    result = _cli(tmp_path, _settings(host, tmp_path, "persona-alpha"), "check", "remote")
    assert result.exit_code == 2
    assert "entrepot fingerprint take remote" in result.output


def test_a_key_without_budget_left_is_refused_clearly(host: Server, tmp_path: Path) -> None:
    target = "persona-budget"
    settings = _settings(host, tmp_path, target)
    engine = open_engine(Config.model_validate(settings).store)
    KeyStore(engine).create("spent", budget_amount=Decimal("0"))
    engine.dispose()
    with pytest.raises(BudgetExceededError):
        take(Config.model_validate(settings), FingerprintRequest("remote", key_name="spent"))
    result = _cli(tmp_path, settings, "take", "remote", "--key", "spent")
    assert result.exit_code == 2
    assert "fingerprint stopped, nothing stored" in result.output
    assert "budget" in result.output
    assert _received(host, target) == 0
    assert _rows(tmp_path, "SELECT count(*) FROM fingerprint_runs") == [(0,)]
    ledger = _rows(tmp_path, "SELECT DISTINCT endpoint, key_name, status FROM usage_records")
    assert ledger == [("fingerprint:chat", "spent", 402)]


def test_the_egress_policy_applies_to_the_canaries(host: Server, tmp_path: Path) -> None:
    target = "persona-egress"
    policy = {"default_class": "confidential", "rules": {"confidential": {"deny": ["CN"]}}}
    config = _config(host, tmp_path, target, policy=policy)
    with pytest.raises(EgressDeniedError):
        take(config, FingerprintRequest("remote"))
    assert _received(host, target) == 0


def test_through_a_gateway_by_url_every_canary_is_the_gateways(
    gateway: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINGERPRINT_URL_KEY", create_key(gateway, "fingerprint-by-url"))
    config = Config.model_validate({"store": {"url": f"sqlite:///{tmp_path / 'local.db'}"}})
    request = FingerprintRequest(
        "fake/echo", gateway_url=gateway.url, api_key_env="FINGERPRINT_URL_KEY"
    )
    taken = take(config, request)
    result = check(config, request)
    assert taken.run.deployment is None  # a gateway by URL keeps its deployments to itself
    assert not result.agreement.substituted and result.agreement.exact_share == 1.0

    assert gateway.data_dir is not None
    query = "SELECT endpoint FROM usage_records WHERE key_name = 'fingerprint-by-url'"
    deadline, rows = time.monotonic() + 10, []
    while len(rows) < 2 * RUN and time.monotonic() < deadline:
        time.sleep(0.05)
        with sqlite3.connect(gateway.data_dir / "entrepot.db") as db:
            rows = db.execute(query).fetchall()
    assert rows == [("fingerprint:chat",)] * (2 * RUN)
