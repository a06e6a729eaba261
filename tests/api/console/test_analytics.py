"""The console's analytics pages over HTTP, logged in: Overview, Where data went and Requests
show what the ledger holds for requests sent through the gateway (never their content), their
filters work, and Evaluations lists the runs of the reports folder and opens their pages."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import update

from entrepot.api.console import figures
from entrepot.config import StoreConfig
from entrepot.shadow.pairs import Pair, save
from entrepot.store.db import open_engine
from entrepot.store.evidence import Evidence, publish
from entrepot.store.tables import shadow_pairs
from tests.api.console.conftest import console_config, log_in
from tests.api.console.test_keys import cells, create
from tests.conftest import ADMIN_KEY, UPSTREAM_KEY, Server, start_gateway, usage_record

PAGES = ("/ui/overview", "/ui/data", "/ui/requests", "/ui/evaluations")


def test_the_analytics_pages_show_the_ledger_and_never_the_content(
    console_gateway: Server, session: httpx.Client
) -> None:
    secret = create(session, name="analyst", models="fake/echo")
    client = openai.OpenAI(base_url=console_gateway.url + "/v1", api_key=secret, max_retries=0)
    marker = f"zebra-{uuid.uuid4().hex}"
    ids = []
    for stream in (False, True):
        answer = client.chat.completions.with_raw_response.create(
            model="fake/echo",
            messages=[{"role": "user", "content": f"say {marker}"}],
            max_tokens=20,
            stream=stream,
        )
        ids.append(answer.headers["x-request-id"])
    with pytest.raises(openai.PermissionDeniedError) as denied:  # confidential stays local
        client.chat.completions.create(
            model="fake/echo",
            messages=[{"role": "user", "content": f"keep {marker}"}],
            extra_headers={"x-entrepot-data-class": "confidential"},
        )
    ids.append(denied.value.response.headers["x-request-id"])
    records = [usage_record(console_gateway, request_id) for request_id in ids]

    overview = session.get("/ui/overview", params={"split": "key"})
    assert overview.status_code == 200
    row = cells(overview.text, "analyst")
    assert row["Requests"] == figures.count(3, "requests")
    tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in records)
    assert row["Tokens"] == figures.tokens(tokens)
    assert row["Errors"].startswith(figures.count(1, "errors"))
    assert "<svg" in overview.text and "Latency per model" in overview.text
    latency = cells(overview.text, "fake/echo")
    assert latency["p50"].endswith(" ms") and latency["First token p50"].endswith(" ms")

    listed = session.get("/ui/requests", params={"key": "analyst"}).text
    assert all(request_id in listed for request_id in ids)
    assert listed.count("<tr>") == 1 + 3  # the header, and the key's three requests
    refused = session.get("/ui/requests", params={"key": "analyst", "status": "4xx"}).text
    assert ids[2] in refused and ids[0] not in refused

    data = session.get("/ui/data").text
    rule = cells(data, "denied")["Rule that fired"]
    assert rule.startswith("data class 'confidential' allows only [local]")
    assert rule.endswith("is in US")

    for path in PAGES:
        page = session.get(path)
        assert page.status_code == 200, path
        assert marker not in page.text, path


def test_a_range_or_filter_that_cannot_be_read_is_named(session: httpx.Client) -> None:
    page = session.get("/ui/overview", params={"from": "2025-13-01", "grain": "week"})
    assert page.status_code == 200
    assert "from must be a date as YYYY-MM-DD (not &#39;2025-13-01&#39;)" in page.text
    assert "grain must be one of hour, day, month" in page.text
    listed = session.get("/ui/requests", params={"status": "600", "key": "nobody"}).text
    assert "status must be 2xx, 4xx or 5xx" in listed
    assert "key &#39;nobody&#39; is not a key of this gateway" in listed
    later = (dt.date.today() + dt.timedelta(days=400)).isoformat()
    future = session.get("/ui/requests", params={"from": later}).text
    assert "No request matches." in future


def test_the_pages_need_a_session(console_gateway: Server) -> None:
    with httpx.Client(base_url=console_gateway.url) as anonymous:
        for path in PAGES:
            assert anonymous.get(path).status_code == 303, path


BENCH = {
    "version": "2",
    "created_at": "2026-11-20T10:00:00Z",
    "comparisons": [{"headline": "cheap vs dear: 97% of the quality (95% interval 90%–99%)"}],
    "models": [
        {
            "model": "cheap",
            "items": 200,
            "score": {"estimate": 0.9, "low": 0.85, "high": 0.94},
            "cost_per_item": 0.0004,
            "currency": "USD",
        },
        {
            "model": "dear",
            "items": 200,
            "score": {"estimate": 0.93, "low": 0.89, "high": 0.96},
            "cost_per_item": 0.03,
            "currency": "USD",
        },
    ],
}


NOW = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC)
EVIDENCE = Evidence(
    "e1",
    "run-1",
    NOW,
    "support-tickets",
    "cheap",
    "dear",
    120,
    0.88,
    0.80,
    0.93,
    0.95,
    0.9,
    0.99,
    1_200_000,
    "USD",
    "2026-11-01",
    None,
)


def test_evaluations_list_the_reports_folder_and_open_a_run(
    tmp_path: Path, fake_openai: Server
) -> None:
    runs = tmp_path / "runs"
    (runs / "bench-nov").mkdir(parents=True)
    (runs / "bench-nov" / "report.json").write_text(json.dumps(BENCH))
    (runs / "bench-nov" / "report.html").write_text("<!doctype html><p>the bench page</p>")
    (runs / "broken").mkdir()
    (runs / "broken" / "report.json").write_text("{not json")
    (tmp_path / "reports-data").mkdir()  # the gateway's data directory, its store inside
    store = open_engine(StoreConfig(url=f"sqlite:///{tmp_path / 'reports-data'}/entrepot.db"))
    publish(store, [EVIDENCE])
    for i, difference in enumerate((0.0, -0.5)):
        answers = {"incumbent_answer": f"secret answer {i}", "candidate_answer": "x"}
        save(store, Pair(f"r{i}", NOW, "support", None, "dear", "cheap", "graded", **answers))
        with store.begin() as conn:
            conn.execute(
                update(shadow_pairs)
                .where(shadow_pairs.c.request_id == f"r{i}")
                .values(difference=difference, currency="USD")
            )
    store.dispose()
    config = console_config(fake_openai)
    config["server"] = {"require_client_keys": True, "reports_dir": str(runs)}
    env = {"ENTREPOT_ADMIN_KEY": ADMIN_KEY, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
    gateway = start_gateway(tmp_path, "reports", config, env)
    try:
        with httpx.Client(base_url=gateway.url, timeout=30) as browser:
            assert log_in(browser).status_code == 303
            page = browser.get("/ui/evaluations").text
            row = cells(page, "bench-nov")
            assert row["Kind"] == "bench"
            assert "97% of the quality (95% interval 90%–99%)" in row["Headline"]
            assert "cheap: score 90% (95% interval 85%–94%) on 200 items" in row["Headline"]
            assert "report.json cannot be read" in cells(page, "broken")["Headline"]
            published = cells(page, "support-tickets")
            assert published["Score"] == "88% (80%–93%)"
            assert published["Cost per item"] == "$0.00120"
            shadow = cells(page, "support")
            assert (shadow["Graded pairs"], shadow["Mean difference"]) == ("2 pairs", "-25%")
            assert "secret answer" not in page
            assert 'aria-label="Quality against cost per item (USD, log scale)' in page
            opened = browser.get("/ui/evaluations", params={"open": "bench-nov"})
            assert opened.text == "<!doctype html><p>the bench page</p>"
            assert "default-src 'none'" in opened.headers["content-security-policy"]
            escaped = browser.get("/ui/evaluations", params={"open": "../runs/bench-nov"})
            assert escaped.status_code == 404
    finally:
        gateway.stop()
