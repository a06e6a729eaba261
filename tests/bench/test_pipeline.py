"""`entrepot bench` in-process calls its models through the gateway's pipeline: the detector and
the egress rules decide where an item may go (a refusal is reported as such, and nothing reaches
the upstream), every call is in the ledger with the command named, and a key's budget stops the
run with 402s. With `--gateway URL` it is a client of that gateway, under the key it is given."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from entrepot.bench.runner import RunOptions
from entrepot.bench.schema import BenchReport
from entrepot.bench.session import BenchRequest, run_bench
from entrepot.bench.through_gateway import InProcessGateway
from entrepot.cli import app
from entrepot.config import Config
from entrepot.exceptions import AuthenticationError, ConfigError
from entrepot.store.db import open_engine
from entrepot.store.keys import KeyStore
from tests.conftest import Server, create_key

# 2,000 nanos per prompt word and 8,000 per answer word on the fake (which counts words).
PRICE = {"input_per_1m": "2", "output_per_1m": "8", "as_of": "2026-11-01"}
PERSONAL = "Summarise: please refund Jane at jane.doe@example.com, IBAN DE89370400440532013000."


def _config(fake: Server, tmp: Path, target: str, **extra: Any) -> Config:
    """One model on the fake, hosted in CN; personal data may not go to CN."""
    return Config.model_validate(
        {
            "store": {"url": f"sqlite:///{tmp / 'ledger.db'}", "ledger_flush_seconds": 0.05},
            "policy": {"rules": {"confidential": {"deny": ["CN"]}}},
            "models": [
                {
                    "alias": "cn-model",
                    "provider": "openai_compatible",
                    "target": target,
                    "base_url": fake.url + "/v1",
                    "api_key_env": "FAKE_UPSTREAM_KEY",
                    "jurisdiction": "CN",
                    "price": PRICE,
                }
            ],
            **extra,
        }
    )


def _tasks(tmp: Path, *items: dict[str, Any]) -> str:
    path = tmp / "tickets.yaml"
    path.write_text(yaml.safe_dump(list(items)))
    return str(path)


def _bench(
    config: Config,
    tasks: str,
    out: Path,
    key: str | None = None,
    console: Console | None = None,
    concurrency: int = 1,
) -> BenchReport:
    request = BenchRequest(
        tasks=[tasks],
        models=["cn-model"],
        reference="cn-model",
        options=RunOptions(out=out, concurrency=concurrency, max_tokens=16),
        key_name=key,
    )
    return run_bench(config, request, console or Console(file=io.StringIO(), width=200))


def _received(fake: Server, target: str) -> int:
    return int(httpx.get(f"{fake.url}/received/{target}").json())


def _ledger(tmp: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(tmp / "ledger.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM usage_records ORDER BY id")]


def test_personal_data_is_refused_by_policy_and_never_sent(
    fake_openai: Server, tmp_path: Path
) -> None:
    target = "bench-policy-cn"
    tasks = _tasks(
        tmp_path,
        {"id": "personal", "prompt": PERSONAL, "expected": "x", "grader": {"kind": "contains"}},
        {"id": "plain", "prompt": "hello", "expected": "echo: hello", "grader": {"kind": "exact"}},
    )
    report = _bench(_config(fake_openai, tmp_path, target), tasks, tmp_path / "out")

    by_id = {r.item_id: r for r in report.results}
    refused = by_id["personal"]
    assert refused.refused_by_policy is not None
    assert "confidential" in refused.refused_by_policy and "CN" in refused.refused_by_policy
    assert refused.error is None and refused.score is None and refused.answer is None
    assert by_id["plain"].score == 1.0
    (summary,) = report.models
    assert (summary.refused_by_policy, summary.errors, summary.graded) == (1, 0, 1)
    assert summary.score is not None and summary.score.estimate == 1.0

    assert _received(fake_openai, target) == 1  # the plain item only

    rows = {row["status"]: row for row in _ledger(tmp_path)}
    assert set(rows) == {403, 200}
    denied, served = rows[403], rows[200]
    assert denied["error_type"] == "egress_denied"
    assert denied["deployment"] is None and denied["cost_nanos"] is None
    assert denied["data_class"] == "confidential"
    assert json.loads(denied["findings"]) == {"email": 1, "iban": 1}
    assert served["data_class"] == "internal" and served["cost_nanos"] > 0
    for row in (denied, served):
        assert (row["endpoint"], row["key_name"], row["key_id"]) == (
            "bench:chat",
            "cli:bench",
            None,
        )


def test_offline_a_run_reaches_loopback_in_any_spelling_and_nothing_else(
    fake_openai: Server, tmp_path: Path
) -> None:
    """`127.1` and `0x7f000001` are the fake's own 127.0.0.1 written otherwise: local, so asked
    offline. A remote address is refused by policy before anything is sent."""
    port = fake_openai.url.rsplit(":", 1)[1]
    hosts = {"short": "127.1", "hex": "0x7f000001", "remote": "192.0.2.10"}
    config = Config.model_validate(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
            "policy": {"offline": True},
            "models": [
                {
                    "alias": alias,
                    "provider": "openai_compatible",
                    "target": f"bench-offline-{alias}",
                    "base_url": f"http://{host}:{port}/v1",
                    "api_key_env": "FAKE_UPSTREAM_KEY",
                    "timeouts": {"connect": 1},
                }
                for alias, host in hosts.items()
            ],
        }
    )
    request = BenchRequest(
        tasks=[_tasks(tmp_path, {"id": "a", "prompt": "hi", "expected": "echo: hi"})],
        models=list(hosts),
        reference="short",
        options=RunOptions(out=tmp_path / "out", max_tokens=16),
    )
    report = run_bench(config, request, Console(file=io.StringIO(), width=200))

    by_model = {r.model: r for r in report.results}
    assert (by_model["short"].score, by_model["hex"].score) == (1.0, 1.0)
    remote = by_model["remote"]
    assert remote.error is None and remote.refused_by_policy is not None
    assert "offline mode admits only local deployments" in remote.refused_by_policy
    received = {alias: _received(fake_openai, f"bench-offline-{alias}") for alias in hosts}
    assert received == {"short": 1, "hex": 1, "remote": 0}


def test_the_live_line_counts_refusals_apart_from_scores(
    fake_openai: Server, tmp_path: Path
) -> None:
    personal = {"id": "p", "prompt": PERSONAL, "expected": "x", "grader": {"kind": "contains"}}
    plain = {"id": "a", "prompt": "hi", "expected": "echo: hi", "grader": {"kind": "exact"}}
    config = _config(fake_openai, tmp_path, "bench-live-refusals")

    def live_line(*items: dict[str, Any]) -> str:
        console = Console(file=io.StringIO(), width=200)
        _bench(config, _tasks(tmp_path, *items), tmp_path / "out", console=console)
        printed: str = console.file.getvalue()  # type: ignore[attr-defined]
        return next(line for line in printed.splitlines() if line.startswith("cn-model "))

    only_refused = live_line(personal)
    assert "no answers · refused by policy: 1" in only_refused
    assert "score" not in only_refused
    mixed = live_line(personal, plain)
    assert "score 1.00 · refused by policy: 1 · 0.0000 USD" in mixed


def test_a_model_the_policy_refuses_every_item_fails_the_run(
    fake_openai: Server, tmp_path: Path
) -> None:
    """Nothing of the model was measured: the run says why (the policy's rule) and exits 1,
    as it does for a model whose every call failed, instead of passing with no score."""
    target = "bench-policy-all-refused"
    local_only = {"rules": {"confidential": {"allow": ["local"]}}}
    settings = _config(fake_openai, tmp_path, target, policy=local_only).model_dump(
        mode="json", exclude_none=True
    )
    config = tmp_path / "entrepot.yaml"
    config.write_text(yaml.safe_dump(settings))
    tasks = _tasks(
        tmp_path, {"id": "p", "prompt": PERSONAL, "expected": "x", "grader": {"kind": "contains"}}
    )
    result = CliRunner().invoke(
        app,
        ["bench", tasks, "--models", "cn-model", "--config", str(config),
         "--out", str(tmp_path / "out")],
    )  # fmt: skip
    output = " ".join(result.output.split())
    assert result.exit_code == 1, output
    assert "cn-model: 1 call(s) refused by policy" in output
    assert "allows only [local]" in output  # the rule as written, not read as markup
    assert "no answers from cn-model" in output
    assert _received(fake_openai, target) == 0


def test_a_keys_budget_stops_the_bench_with_402s(fake_openai: Server, tmp_path: Path) -> None:
    target = "bench-budget"
    config = _config(fake_openai, tmp_path, target)
    budget = Decimal("0.0004")
    engine = open_engine(config.store)
    key, _secret = KeyStore(engine).create("tiny", budget_amount=budget)
    engine.dispose()
    items = [
        {"id": f"q{i}", "prompt": f"question {i}", "expected": f"echo: question {i}"}
        for i in range(6)
    ]

    report = _bench(config, _tasks(tmp_path, *items), tmp_path / "out", key="tiny")

    answered = [r for r in report.results if r.error is None]
    refused = [r for r in report.results if r.error is not None]
    assert answered and refused
    assert all(r.error.startswith("402 budget_exceeded") for r in refused if r.error)
    assert _received(fake_openai, target) == len(answered)

    rows = _ledger(tmp_path)
    assert len(rows) == len(report.results)
    assert {(r["key_id"], r["key_name"], r["endpoint"]) for r in rows} == {
        (key.id, "tiny", "bench:chat")
    }
    assert sorted(r["status"] for r in rows) == [200] * len(answered) + [402] * len(refused)
    assert sum(r["cost_nanos"] or 0 for r in rows) <= budget * 1_000_000_000


def test_a_run_is_not_refused_by_its_own_calls_reservations(
    fake_openai: Server, tmp_path: Path
) -> None:
    """Eight calls in flight each reserve their worst case, so the budget refuses calls while
    most of it is unspent; those are asked again as the run's calls settle. The run answers as
    many items as one call at a time does, and spends no more than the budget."""
    config = _config(fake_openai, tmp_path, "bench-budget-in-flight")
    budget = Decimal("0.0006")
    engine = open_engine(config.store)
    for name in ("one-at-a-time", "eight-at-once"):
        KeyStore(engine).create(name, budget_amount=budget)
    engine.dispose()
    tasks = _tasks(
        tmp_path,
        # Prompts of one length, so every item costs and reserves exactly the same.
        *({"id": f"q{i}", "prompt": f"question {chr(97 + i)}", "expected": "x"} for i in range(12)),
    )

    def answered(key: str, concurrency: int) -> int:
        report = _bench(config, tasks, tmp_path / key, key=key, concurrency=concurrency)
        refused = [r.error for r in report.results if r.error is not None]
        assert refused and all(e.startswith("402 budget_exceeded") for e in refused)
        return len(report.results) - len(refused)

    sequential = answered("one-at-a-time", 1)
    assert answered("eight-at-once", 8) == sequential, sequential
    for name in ("one-at-a-time", "eight-at-once"):
        spent = sum(r["cost_nanos"] or 0 for r in _ledger(tmp_path) if r["key_name"] == name)
        assert 0 < spent <= budget * 1_000_000_000


def test_a_key_the_store_does_not_know_is_refused(fake_openai: Server, tmp_path: Path) -> None:
    config = _config(fake_openai, tmp_path, "bench-unknown-key")
    tasks = _tasks(tmp_path, {"id": "a", "prompt": "hi", "expected": "echo: hi"})
    with pytest.raises(AuthenticationError, match="no active key named 'nobody'"):
        _bench(config, tasks, tmp_path / "out", key="nobody")


def test_a_revoked_key_is_refused_saying_so(fake_openai: Server, tmp_path: Path) -> None:
    config = _config(fake_openai, tmp_path, "bench-revoked-key")
    engine = open_engine(config.store)
    KeyStore(engine).create("gone")
    KeyStore(engine).revoke("gone")
    engine.dispose()
    tasks = _tasks(tmp_path, {"id": "a", "prompt": "hi", "expected": "echo: hi"})
    with pytest.raises(AuthenticationError, match="key 'gone' was revoked on 20"):
        _bench(config, tasks, tmp_path / "out", key="gone")
    assert _received(fake_openai, "bench-revoked-key") == 0


def test_a_key_revoked_during_the_run_is_refused_from_then_on(
    fake_openai: Server, tmp_path: Path
) -> None:
    """A run holds no secret to present on each call, so it reads its key from the gateway's
    keys, which a revocation elsewhere (`entrepot keys revoke`) leaves at their next reload."""
    target = "bench-revoked-mid-run"
    config = _config(fake_openai, tmp_path, target)
    engine = open_engine(config.store)
    KeyStore(engine).create("mid")
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}

    async def main() -> None:
        async with InProcessGateway(config, ["cn-model"], "bench", "mid") as through:
            (model,) = through.models(["cn-model"])
            assert (await model.provider.chat(body))["choices"]
            KeyStore(engine).revoke("mid")
            await through.gateway.keys.reload()  # what the gateway does every few seconds
            with pytest.raises(AuthenticationError, match="key 'mid' was revoked during the run"):
                await model.provider.chat(body)

    try:
        asyncio.run(main())
    finally:
        engine.dispose()
    assert _received(fake_openai, target) == 1
    rows = [(r["endpoint"], r["key_name"], r["status"]) for r in _ledger(tmp_path)]
    assert rows == [("bench:chat", "mid", 200), ("bench:chat", "mid", 401)]


def test_without_a_key_where_keys_are_required_the_run_is_refused(
    fake_openai: Server, tmp_path: Path
) -> None:
    config = _config(fake_openai, tmp_path, "bench-no-key", server={"require_client_keys": True})
    tasks = _tasks(tmp_path, {"id": "a", "prompt": "hi", "expected": "echo: hi"})
    with pytest.raises(AuthenticationError, match="--key NAME"):
        _bench(config, tasks, tmp_path / "out")
    assert _received(fake_openai, "bench-no-key") == 0


def test_through_a_gateway_by_url_every_call_is_the_gateways(
    gateway: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_URL_KEY", create_key(gateway, "bench-by-url"))
    items = [{"id": f"u{i}", "prompt": f"url {i}", "expected": f"echo: url {i}"} for i in range(3)]
    request = BenchRequest(
        tasks=[_tasks(tmp_path, *items)],
        models=["fake/echo"],
        reference="fake/echo",
        options=RunOptions(out=tmp_path / "out", max_tokens=16),
        gateway_url=gateway.url,
        api_key_env="BENCH_URL_KEY",
    )
    report = run_bench(Config(), request, Console(file=io.StringIO(), width=200))
    assert [r.score for r in report.results] == [1.0] * 3

    assert gateway.data_dir is not None
    query = (
        "SELECT model_alias, status, endpoint FROM usage_records WHERE key_name = 'bench-by-url'"
    )
    deadline, rows = time.monotonic() + 10, []
    while len(rows) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
        with sqlite3.connect(gateway.data_dir / "entrepot.db") as db:
            rows = db.execute(query).fetchall()
    assert rows == [("fake/echo", 200, "bench:chat")] * 3


def test_through_a_gateway_by_url_its_refusals_are_read_as_its_own(
    gateway: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway's 403 for its policy is a refusal by policy (not a model's failure, nor an
    upstream rejecting credentials), and its 403 for a key's allow-list says so in its words."""
    confidential = create_key(gateway, "bench-url-confidential", data_class="confidential")
    limited = create_key(gateway, "bench-url-limited", allowed_models=["fake/reasoner"])
    monkeypatch.setenv("BENCH_URL_CONFIDENTIAL", confidential)
    monkeypatch.setenv("BENCH_URL_LIMITED", limited)

    def result(key_env: str) -> Any:
        request = BenchRequest(
            tasks=[_tasks(tmp_path, {"id": "a", "prompt": "hi", "expected": "echo: hi"})],
            models=["fake/echo"],
            reference="fake/echo",
            options=RunOptions(out=tmp_path / key_env, max_tokens=16),
            gateway_url=gateway.url,
            api_key_env=key_env,
        )
        report = run_bench(Config(), request, Console(file=io.StringIO(), width=200))
        (only,) = report.results
        return only

    refused = result("BENCH_URL_CONFIDENTIAL")
    assert refused.error is None and refused.refused_by_policy is not None
    assert "'confidential'" in refused.refused_by_policy
    not_allowed = result("BENCH_URL_LIMITED")
    assert not_allowed.refused_by_policy is None and not_allowed.error is not None
    assert not_allowed.error.startswith("403 model_not_allowed: key 'bench-url-limited' may not")


def test_a_client_cannot_write_its_own_text_into_the_ledgers_endpoint(gateway: Server) -> None:
    key = create_key(gateway, "names-itself")
    ids = {}
    for claimed in ("audit", "anything else", "bench:chat"):
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": "fake/echo", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {key}", "x-entrepot-client": claimed},
        )
        assert response.status_code == 200, response.text
        ids[response.headers["x-request-id"]] = claimed
    assert gateway.data_dir is not None
    query = "SELECT request_id, endpoint FROM usage_records WHERE key_name = 'names-itself'"
    deadline, rows = time.monotonic() + 10, []
    while len(rows) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
        with sqlite3.connect(gateway.data_dir / "entrepot.db") as db:
            rows = db.execute(query).fetchall()
    assert {ids[request_id]: endpoint for request_id, endpoint in rows} == {
        "audit": "audit:chat",
        "anything else": "chat",
        "bench:chat": "chat",
    }


def test_a_key_name_with_a_gateway_url_is_refused(tmp_path: Path) -> None:
    request = BenchRequest(
        tasks=[_tasks(tmp_path, {"id": "a", "prompt": "hi", "expected": "x"})],
        models=["fake/echo"],
        reference="fake/echo",
        options=RunOptions(out=tmp_path / "out"),
        gateway_url="http://127.0.0.1:9",
        api_key_env="BENCH_URL_KEY",
        key_name="tiny",
    )
    with pytest.raises(ConfigError, match="--key names a client key for in-process runs"):
        run_bench(Config(), request, Console(file=io.StringIO()))


def test_the_gateways_response_cache_never_answers_a_run(
    fake_openai: Server, tmp_path: Path
) -> None:
    """A key whose answers are cached still has every item of a run asked of the model (two
    items with the same prompt, one after the other): a run measures the model (latency, cost,
    quality), not a stored answer."""
    target = "bench-cache-off"
    config = _config(fake_openai, tmp_path, target)
    engine = open_engine(config.store)
    KeyStore(engine).create("cached", cache_ttl_seconds=600)
    engine.dispose()
    items = ({"id": f"c{i}", "prompt": "the same", "expected": "echo: the same"} for i in range(2))
    request = BenchRequest(
        tasks=[_tasks(tmp_path, *items)],
        models=["cn-model"],
        reference="cn-model",
        options=RunOptions(out=tmp_path / "out", max_tokens=16, concurrency=1),
        key_name="cached",
    )
    run_bench(config, request, Console(file=io.StringIO(), width=200))
    assert _received(fake_openai, target) == 2
    assert [r["cache_hit"] for r in _ledger(tmp_path)] == [0] * 2
