"""A good_enough route served for real: evidence published by `entrepot bench --publish` on
models of known quality (tests/routing/quality.py), then a gateway on loopback asked for the
route's name through the official `openai` client, with the task in a header or in the key."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from typer.testing import CliRunner

from entrepot.cli import app
from tests.conftest import (
    ADMIN_KEY,
    UPSTREAM_KEY,
    Server,
    create_key,
    start_gateway,
    usage_record,
)
from tests.routing import quality

TASK = "x-entrepot-task"
DEPLOYMENT = "x-entrepot-deployment"


@dataclass
class Setup:
    gateway: Server
    config: Path
    env: dict[str, str]
    evidence: dict[tuple[str, str], str]  # (task, model) → evidence id


def _cli(setup_env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={**setup_env, "COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, fake_openai: Server) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("good-enough")
    config = quality.config(
        fake_openai,
        server={"require_client_keys": True},
        store={"ledger_flush_seconds": 0.05},
    )
    path = tmp / "entrepot.yaml"
    path.write_text(yaml.safe_dump(config))
    # The gateway below keeps its store in `ge-data`: the run publishes there first.
    env = {"ENTREPOT_DATA_DIR": str(tmp / "ge-data"), "FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
    # The run calls the models as the organisation's bench does, without a client key.
    bench_config = tmp / "bench.yaml"
    bench_config.write_text(yaml.safe_dump(quality.config(fake_openai)))
    models = ",".join(quality.MODELS)
    out = str(tmp / "out")
    _cli(env, "bench", *quality.tasks(tmp), "--models", models, "--publish",
         "--out", out, "--max-tokens", "16", "--config", str(bench_config))  # fmt: skip
    with sqlite3.connect(tmp / "ge-data" / "entrepot.db") as db:
        rows = db.execute("SELECT task, model_alias, id FROM bench_evidence").fetchall()
    gateway = start_gateway(
        tmp, "ge", config, {"ENTREPOT_ADMIN_KEY": ADMIN_KEY, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
    )
    yield Setup(gateway, path, env, {(task, model): ident for task, model, ident in rows})
    gateway.stop()


def _client(setup: Setup, name: str, **fields: Any) -> openai.OpenAI:
    key = create_key(setup.gateway, name, **fields)
    return openai.OpenAI(base_url=setup.gateway.url + "/v1", api_key=key, max_retries=0)


def _ask(client: openai.OpenAI, task: str | None = None) -> tuple[str, dict[str, Any]]:
    """The deployment that answered, and the request's ledger row."""
    headers = {TASK: task} if task is not None else {}
    raw = client.chat.completions.with_raw_response.create(
        model=quality.ROUTE,
        messages=[{"role": "user", "content": "hello"}],
        extra_headers=headers,
    )
    assert raw.parse().model == quality.ROUTE
    return _alias(raw.headers[DEPLOYMENT]), raw.headers["x-request-id"]


def _alias(deployment: str) -> str:
    """A deployment is named `provider:alias` unless configured otherwise."""
    return deployment.removeprefix("openai_compatible:")


def _row(setup: Setup, request_id: str) -> dict[str, Any]:
    return usage_record(setup.gateway, request_id)


def test_each_task_goes_to_the_cheapest_model_its_evidence_proves_good_enough(
    setup: Setup,
) -> None:
    client = _client(setup, "by-header")
    for task, expected in (("faq", "cand/weak"), ("legal", "cand/mid")):
        deployment, request_id = _ask(client, task)
        assert deployment == expected
        row = _row(setup, request_id)
        assert (row["task"], row["model_alias"]) == (task, "auto")
        assert _alias(row["deployment"]) == expected
        assert row["evidence_id"] == setup.evidence[(task, expected)]


def test_a_cached_answer_is_kept_per_task(setup: Setup) -> None:
    """The same body under another task may be another model's to answer: the response cache
    never answers one task with what a model chosen for another said."""
    client = _client(setup, "cached", cache_ttl_seconds=600)
    assert _ask(client, "faq")[0] == "cand/weak"
    assert _ask(client, "legal")[0] == "cand/mid"  # not faq's answer from the cache
    raw = client.chat.completions.with_raw_response.create(
        model=quality.ROUTE,
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={TASK: "legal"},
    )
    assert raw.headers["x-entrepot-cache"] == "hit"  # the legal answer, kept for legal


def test_without_evidence_for_the_task_the_reference_answers(setup: Setup) -> None:
    client = _client(setup, "no-task")
    for task in (None, "translation"):
        deployment, request_id = _ask(client, task)
        assert deployment == "ref/big"
        row = _row(setup, request_id)
        assert (row["task"], row["evidence_id"]) == (task, None)


def test_a_keys_default_task_applies_unless_the_request_names_one(setup: Setup) -> None:
    client = _client(setup, "faq-app", default_task="faq", allowed_models=["auto"])
    deployment, request_id = _ask(client)
    assert deployment == "cand/weak" and _row(setup, request_id)["task"] == "faq"
    assert _ask(client, "legal")[0] == "cand/mid"
    # Allowed the route's name, not the models behind it.
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(
            model="cand/mid", messages=[{"role": "user", "content": "hello"}]
        )


def test_a_streamed_request_is_routed_alike(setup: Setup) -> None:
    client = _client(setup, "streaming")
    with client.chat.completions.with_streaming_response.create(
        model=quality.ROUTE,
        messages=[{"role": "user", "content": "hello"}],
        stream=True,
        extra_headers={TASK: "faq"},
    ) as response:
        assert _alias(response.headers[DEPLOYMENT]) == "cand/weak"
        text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    assert text == "echo: hello"


def test_a_malformed_task_is_refused_in_each_doors_format(setup: Setup) -> None:
    client = _client(setup, "malformed")
    with pytest.raises(openai.BadRequestError) as caught:
        _ask(client, "two words")
    assert caught.value.param == TASK
    key = create_key(setup.gateway, "malformed-messages")
    response = httpx.post(
        setup.gateway.url + "/v1/messages",
        headers={"x-api-key": key, "anthropic-version": "2023-06-01", TASK: "x" * 65},
        json={"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert TASK in body["error"]["message"] or "task" in body["error"]["message"]


def test_route_explain_shows_the_evidence_each_candidate_was_judged_on(setup: Setup) -> None:
    out = _cli(setup.env, "route", "-m", "auto", "--task", "legal", "--config", str(setup.config))
    assert "strategy good_enough" in out and "good_enough for task legal" in out
    weak = next(line for line in out.splitlines() if line.strip("│ ").startswith("cand/weak"))
    assert "0.900 (" in weak and "below min_quality 0.95" in weak and " 20 " in weak
    mid = next(line for line in out.splitlines() if line.strip("│ ").startswith("cand/mid"))
    # 2 of the 20 items say "hard": 3.1 words in and 4.1 out per item, at 1 and 3 per million.
    assert "yes" in mid and "chosen" in mid and "$0.0000154 (2026-11-01)" in mid


def test_route_explain_after_a_price_change_passes_over_the_repriced_candidate(
    setup: Setup, tmp_path: Path
) -> None:
    config = yaml.safe_load(setup.config.read_text())
    config["models"][2]["price"]["output_per_1m"] = "0.35"
    repriced = tmp_path / "repriced.yaml"
    repriced.write_text(yaml.safe_dump(config))
    out = _cli(setup.env, "route", "-m", "auto", "--task", "faq", "--config", str(repriced))
    weak = next(line for line in out.splitlines() if line.strip("│ ").startswith("cand/weak"))
    assert "price in the configuration changed" in weak
    mid = next(line for line in out.splitlines() if line.strip("│ ").startswith("cand/mid"))
    assert "chosen" in mid


def test_the_route_is_listed_and_explained_to_the_admin_like_a_model(setup: Setup) -> None:
    client = _client(setup, "lister", allowed_models=["auto"])
    assert [m.id for m in client.models.list()] == ["auto"]
    assert client.models.retrieve("auto").id == "auto"
    explained = httpx.post(
        setup.gateway.url + "/admin/route/explain",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        json={"model": "auto", "task": "faq"},
    ).json()
    assert (explained["strategy"], explained["task"]) == ("good_enough", "faq")
    chosen = [e for e in explained["evidence"] if e["chosen"]]
    assert [(e["alias"], e["evidence_id"]) for e in chosen] == [
        ("cand/weak", setup.evidence[("faq", "cand/weak")])
    ]
    assert [c["alias"] for c in explained["candidates"]] == ["cand/weak", "ref/big"]


def test_a_keys_default_task_is_checked_where_it_is_given(setup: Setup) -> None:
    config = ["--config", str(setup.config)]
    result = CliRunner().invoke(app, ["keys", "create", "typo", "--task", "two words", *config],
                                env=setup.env)  # fmt: skip
    assert result.exit_code == 2 and "--task" in result.output
    _cli(setup.env, "keys", "create", "cli-faq", "--task", "faq", *config)
    with sqlite3.connect(Path(setup.env["ENTREPOT_DATA_DIR"]) / "entrepot.db") as db:
        tasks = dict(db.execute("SELECT name, default_task FROM api_keys").fetchall())
    assert tasks["cli-faq"] == "faq" and "typo" not in tasks
    refused = httpx.post(
        setup.gateway.url + "/admin/keys",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        json={"name": "bad-task", "default_task": "-leading"},
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "default_task"
