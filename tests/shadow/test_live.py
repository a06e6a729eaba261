"""Shadow verification end to end: a real gateway on loopback in front of a fake upstream whose
models' quality is known, the official openai client, the ledger and `entrepot shadow report`.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.conftest import ADMIN_KEY, ROOT, Server, create_key, start_fake, start_gateway

AS_OF = "2026-11-01"
EXPENSIVE = {"input_per_1m": "14", "output_per_1m": "14", "currency": "USD", "as_of": AS_OF}
CHEAP = {"input_per_1m": "1", "output_per_1m": "1", "currency": "USD", "as_of": AS_OF}
# One dollar an output token and the prompt free: a copy costs 4 (its answer's words) and
# reserves 10 (its `max_tokens`), so a cap of 30 admits some copies and refuses others.
DEAR = {"input_per_1m": "0", "output_per_1m": "1000000", "currency": "USD", "as_of": AS_OF}
MAX_SPEND = 30


def model(fake: Server, alias: str, target: str, **fields: Any) -> dict[str, Any]:
    return {
        "alias": alias,
        "provider": "openai_compatible",
        "target": target,
        "base_url": fake.url + "/v1",
        "api_key_env": "FAKE_UPSTREAM_KEY",
        "jurisdiction": "US",
        **fields,
    }


def shadow(candidate: str, **fields: Any) -> dict[str, Any]:
    return {
        "shadow": {
            "candidate": candidate,
            "share": 1,
            "judge": "judge",
            "max_spend": {"amount": 1000, "period": "total"},
            **fields,
        }
    }


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_fake(tmp_path_factory.mktemp("graded"), "graded_upstream", "/received/x")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def config(fake: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tasks = tmp_path_factory.mktemp("tasks") / "sums.yaml"
    item = {"id": "sums-1", "prompt": "What is six times seven?"}
    grader = {"kind": "regex", "pattern": r"\b42\b"}
    tasks.write_text(yaml.safe_dump({"task": "sums", "grader": grader, "items": [item]}))
    return {
        "store": {"ledger_flush_seconds": 0.05},
        "models": [
            model(fake, "weak", "wrong", price=EXPENSIVE),
            model(fake, "strong", "right", price=EXPENSIVE),
            model(fake, "vault", "wrong", jurisdiction="local"),
            model(fake, "small-right", "right", price=CHEAP),
            model(fake, "small-wrong", "wrong", price=CHEAP),
            model(fake, "capped", "right", price=EXPENSIVE),
            model(fake, "small-dear", "right", price=DEAR),
            model(fake, "judge", "judge", price=CHEAP),
            model(fake, "graded", "wrong", price=EXPENSIVE),
        ],
        "routes": {
            "weak": shadow("small-right"),
            "strong": shadow("small-wrong"),
            "vault": shadow("small-right"),
            "graded": shadow("small-right", tasks=[str(tasks)]),
            # No published evidence: the route answers with its reference.
            "auto": {
                "strategy": "good_enough",
                "candidates": ["strong"],
                "reference": "weak",
                **shadow("small-right"),
            },
            "capped": shadow(
                "small-dear", judge=None, max_spend={"amount": MAX_SPEND, "period": "total"}
            ),
        },
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, config: dict[str, Any]) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("shadow")
    env = {"FAKE_UPSTREAM_KEY": "k", "ENTREPOT_ADMIN_KEY": ADMIN_KEY}
    server = start_gateway(tmp, "shadow", config, env=env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(gateway: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="none", max_retries=0)


def rows(gateway: Server, sql: str, *args: Any) -> list[dict[str, Any]]:
    assert gateway.data_dir is not None
    with sqlite3.connect(gateway.data_dir / "entrepot.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(sql, args).fetchall()]


def pairs_of(gateway: Server, route: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = rows(gateway, "SELECT * FROM shadow_pairs WHERE route = ?", route)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{route}: {len(found)} pairs of {count}")


def copies_in_ledger(gateway: Server, request_id: str, count: int) -> list[dict[str, Any]]:
    """The ledger's rows of a request's copy and grading calls, once its batches are written."""
    deadline = time.monotonic() + 15
    while True:
        found = rows(gateway, "SELECT * FROM usage_records WHERE shadow_of = ?", request_id)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def received(fake: Server, target: str) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = httpx.get(f"{fake.url}/received/{target}").json()
    return answer


def ask(client: openai.OpenAI, alias: str, text: str, **options: Any) -> tuple[str, float]:
    """The request id of one answer and when the client had it in full."""
    messages: Any = [{"role": "user", "content": text}]
    if options.pop("stream", False):
        with client.chat.completions.with_streaming_response.create(
            model=alias, messages=messages, stream=True, **options
        ) as response:
            for _ in response.iter_lines():
                pass
            return response.headers["x-request-id"], time.time()
    raw = client.chat.completions.with_raw_response.create(
        model=alias, messages=messages, **options
    )
    raw.parse()
    return raw.headers["x-request-id"], time.time()


def test_copies_follow_the_answers_are_judged_and_billed_to_the_shadow_line(
    gateway: Server, client: openai.OpenAI, fake: Server
) -> None:
    answered = {}
    for i in range(12):
        text = f"weak question {i}"
        answered[text] = ask(client, "weak", text, stream=i % 2 == 1)
    found = {p["request_id"]: p for p in pairs_of(gateway, "weak", 12)}
    copies = {r["text"]: r["at"] for r in received(fake, "right") if r["text"].startswith("weak")}
    for text, (request_id, done_at) in answered.items():
        assert copies[text] >= done_at - 0.005, "a copy left before its answer was delivered"
        pair = found[request_id]
        assert pair["status"] == "graded" and pair["difference"] == 1.0
        assert pair["incumbent_answer"] == "I do not know."
        assert pair["candidate_answer"] == "The answer is 42."
        assert pair["candidate_cost_nanos"] * 14 == pair["incumbent_cost_nanos"]
        ledger = copies_in_ledger(gateway, request_id, 3)
        endpoints = sorted(r["endpoint"] for r in ledger)
        assert endpoints == ["shadow:chat", "shadow:judge", "shadow:judge"]
        assert {(r["key_name"], r["key_id"]) for r in ledger} == {("shadow:weak", None)}
        assert all(r["cost_nanos"] > 0 for r in ledger)
        assert (
            sum(r["cost_nanos"] for r in ledger if r["endpoint"] == "shadow:judge")
            == pair["grading_cost_nanos"]
        )
    originals = rows(gateway, "SELECT * FROM usage_records WHERE endpoint = 'chat'")
    assert not any(r["shadow_of"] for r in originals)


def test_a_task_with_a_grader_is_graded_by_it_not_by_the_judge(
    gateway: Server, client: openai.OpenAI
) -> None:
    sums, _ = ask(client, "graded", "six times seven?", extra_headers={"x-entrepot-task": "sums"})
    other, _ = ask(client, "graded", "six times seven, again?")
    found = {p["request_id"]: p for p in pairs_of(gateway, "graded", 2)}
    assert found[sums]["graded_by"] == "grader:regex" and found[sums]["difference"] == 1.0
    assert found[sums]["task"] == "sums" and found[sums]["grading_cost_nanos"] == 0
    assert found[other]["graded_by"] == "judge:judge"
    ledger = copies_in_ledger(gateway, sums, 1)
    assert [(r["endpoint"], r["task"]) for r in ledger] == [("shadow:chat", "sums")]


def test_a_good_enough_route_compares_with_the_model_that_answered(
    gateway: Server, client: openai.OpenAI
) -> None:
    request_id, _ = ask(client, "auto", "auto question")
    (pair,) = pairs_of(gateway, "auto", 1)
    assert (pair["request_id"], pair["incumbent"], pair["candidate"]) == (
        request_id,
        "weak",
        "small-right",
    )
    assert pair["status"] == "graded" and pair["difference"] == 1.0


def test_a_confidential_request_is_never_copied_to_a_remote_candidate(
    gateway: Server, client: openai.OpenAI, fake: Server
) -> None:
    secret = "vault question marked confidential"
    ask(client, "vault", secret, extra_headers={"x-entrepot-data-class": "confidential"})
    email = "vault question from jane.doe@example.com"
    ask(client, "vault", email)  # the detector raises it to confidential
    public = "vault question anyone may read"
    ask(client, "vault", public, extra_headers={"x-entrepot-data-class": "public"})
    found = pairs_of(gateway, "vault", 3)
    assert sorted(p["status"] for p in found) == ["graded", "ineligible", "ineligible"]
    copied = [r["text"] for r in received(fake, "right")]
    assert public in copied
    assert secret not in copied and email not in copied
    judged = " ".join(r["text"] for r in received(fake, "judge"))
    assert "confidential" not in judged and "jane.doe" not in judged


def test_a_key_that_may_not_use_the_candidate_has_no_copies(gateway: Server, fake: Server) -> None:
    key = create_key(gateway, "weak-only", allowed_models=["weak"])
    limited = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    text = "weak question from a key limited to weak"
    request_id, _ = ask(limited, "weak", text)
    deadline = time.monotonic() + 30
    while not (
        found := rows(gateway, "SELECT * FROM shadow_pairs WHERE request_id = ?", request_id)
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert found[0]["status"] == "ineligible"
    assert text not in [r["text"] for r in received(fake, "right")]


def test_max_spend_holds_under_concurrent_copies(
    gateway: Server, client: openai.OpenAI, fake: Server
) -> None:
    for i in range(12):
        ask(client, "capped", f"capped question {i}", max_tokens=10)
    found = pairs_of(gateway, "capped", 12)
    statuses = [p["status"] for p in found]
    assert "over_budget" in statuses and "ungraded" in statuses
    deadline = time.monotonic() + 15
    while True:  # the ledger writes in batches, after the pairs are saved
        spent = rows(
            gateway,
            "SELECT SUM(cost_nanos) AS spent, COUNT(*) AS calls FROM usage_records"
            " WHERE key_name = 'shadow:capped' AND status = 200",
        )[0]
        if spent["calls"] == statuses.count("ungraded") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    nanos = 10**9
    assert spent["calls"] == statuses.count("ungraded")
    # Copies run four at a time, each reserving 10 before it is sent (it costs 4): however
    # they overlap, the line never passes its cap (how close it comes depends on the overlap;
    # see the restart test for one copy at a time).
    assert spent["spent"] <= MAX_SPEND * nanos


def test_the_report_gives_each_verdict(
    gateway: Server, client: openai.OpenAI, tmp_path: Path, config: dict[str, Any]
) -> None:
    for i in range(12):
        ask(client, "strong", f"strong question {i}")
    graded = "SELECT COUNT(*) AS n FROM shadow_pairs WHERE route = 'weak' AND status = 'graded'"
    for i in range(12 - rows(gateway, graded)[0]["n"]):  # when run without the first test
        ask(client, "weak", f"weak question for the report {i}")
    pairs_of(gateway, "strong", 12)
    deadline = time.monotonic() + 30
    while rows(gateway, graded)[0]["n"] < 12:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    path = tmp_path / "entrepot.yaml"
    path.write_text(yaml.safe_dump(config))
    out_json, out_html = tmp_path / "shadow.json", tmp_path / "shadow.html"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "entrepot", "shadow", "report", "--config", str(path)),
            *("--json", str(out_json), "--html", str(out_html)),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "ENTREPOT_DATA_DIR": str(gateway.data_dir), "COLUMNS": "80"},
        check=True,
    )
    print(result.stdout)
    assert all(len(line) <= 80 for line in result.stdout.splitlines())
    document = json.loads(out_json.read_text())
    by_route = {v["route"]: v for v in document["verdicts"]}
    weak, strong = by_route["weak"], by_route["strong"]
    assert weak["verdict"] == "non-inferior" and weak["requests"] == 12
    assert weak["cost_ratio"] == pytest.approx(1 / 14)
    assert weak["statement"] == (
        "small-right is non-inferior to weak within 3 points at 95% confidence on 12 live"
        f" requests of no named task, at 1/14 of the cost, prices of {AS_OF}"
    )
    assert strong["verdict"] == "inferior"
    assert {"route": "strong", "status": "graded", "count": 12} in document["copies"]
    page = out_html.read_text()
    assert weak["statement"] in page
    assert "question" not in page and "42" not in page  # aggregates only


def test_stopping_finishes_copies_under_way_and_drops_the_rest(
    tmp_path: Path, fake: Server
) -> None:
    config = {
        "store": {"ledger_flush_seconds": 0.05},
        "models": [model(fake, "weak", "wrong"), model(fake, "slow", "slow")],
        "routes": {"weak": shadow("slow", judge=None)},
    }
    server = start_gateway(tmp_path, "stopping", config, env={"FAKE_UPSTREAM_KEY": "k"})
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
    texts = [f"stopping question {i}" for i in range(7)]
    for text in texts:
        ask(client, "weak", text)

    def under_way() -> list[str]:
        return [r["text"] for r in received(fake, "slow") if r["text"] in texts]

    deadline = time.monotonic() + 10
    while len(under_way()) < 4:  # as many as run at once; the other three wait
        assert time.monotonic() < deadline
        time.sleep(0.05)
    began = time.monotonic()
    server.process.terminate()
    # uvicorn ends by re-raising the signal it stopped on, once shutdown is complete
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    assert time.monotonic() - began < 10
    assert len(under_way()) == 4
    found = rows(server, "SELECT status, copy_id FROM shadow_pairs")
    assert [p["status"] for p in found] == ["ungraded"] * 4
    ledger = rows(server, "SELECT status FROM usage_records WHERE endpoint = 'shadow:chat'")
    assert [r["status"] for r in ledger] == [200] * 4
    assert "shadow: 3 copies dropped" in server.log.read_text()


def test_the_cap_holds_across_a_restart(tmp_path: Path, fake: Server) -> None:
    """A restarted gateway seeds the shadow line's counter from the ledger, so the period's
    cap is not spent twice: the first run spends up to it, the second may spend nothing."""
    config = {
        "store": {"ledger_flush_seconds": 0.05},
        "models": [model(fake, "capped", "right"), model(fake, "small-dear", "right", price=DEAR)],
        "routes": {
            "capped": shadow(
                "small-dear", judge=None, max_spend={"amount": MAX_SPEND, "period": "total"}
            )
        },
    }
    env, copied = {"FAKE_UPSTREAM_KEY": "k"}, []
    for run in range(2):
        server = start_gateway(tmp_path, "restarted", config, env=env)
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
        for i in range(8):  # one after the other, each copy settled before the next
            ask(client, "capped", f"restart {run} question {i}", max_tokens=10)
            pairs_of(server, "capped", 8 * run + i + 1)
        server.stop()
        statuses = [p["status"] for p in rows(server, "SELECT status FROM shadow_pairs")]
        copied.append(statuses.count("ungraded"))
    spent = rows(
        server,
        "SELECT SUM(cost_nanos) AS spent FROM usage_records WHERE key_name = 'shadow:capped'",
    )[0]["spent"]
    assert copied[1] == copied[0] > 0  # the second run copied nothing
    assert spent == copied[0] * 4 * 10**9
    assert (MAX_SPEND - 10) * 10**9 < spent <= MAX_SPEND * 10**9
