"""The ledger through a real gateway: exactly one record per client request — answered, refused,
failed, cut off by the client, or turned away by a full queue — and nothing lost on shutdown."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LOCAL, UPSTREAM_KEY, Server, start_gateway


@pytest.fixture(scope="module")
def ledger_gateway(
    tmp_path_factory: pytest.TempPathFactory, fake_openai: Server
) -> Iterator[Server]:
    config = {
        "store": {"ledger_flush_seconds": 30},
        "models": [
            {
                "alias": LOCAL,
                "provider": "llama_cpp",
                "target": "bundled:smollm2-135m-instruct",
                "local": {"max_queue": 0, "n_threads": 2},
            },
            {
                "alias": "fake/echo",
                "provider": "openai_compatible",
                "target": "echo-model",
                "base_url": fake_openai.url + "/v1",
                "api_key_env": "FAKE_UPSTREAM_KEY",
            },
        ],
    }
    server = start_gateway(
        tmp_path_factory.mktemp("ledger"), "ledger", config, {"FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
    )
    yield server
    server.stop()


def _rows(data_dir: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(data_dir / "entrepot.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM usage_records ORDER BY id")]


def _chat(url: str, **body: Any) -> httpx.Response:
    payload = {"messages": [{"role": "user", "content": "count to five"}], **body}
    return httpx.post(url + "/v1/chat/completions", json=payload, timeout=60)


def test_every_request_leaves_exactly_one_record(ledger_gateway: Server) -> None:
    url = ledger_gateway.url
    ids: list[str] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        echo = list(pool.map(lambda i: _chat(url, model="fake/echo", n=1 + i % 2), range(40)))
    assert all(r.status_code == 200 for r in echo)
    ids += [r.headers["x-request-id"] for r in echo]

    with ThreadPoolExecutor(max_workers=3) as pool:
        crowd = list(pool.map(lambda _: _chat(url, model=LOCAL, max_tokens=48), range(3)))
    statuses = sorted(r.status_code for r in crowd)
    assert 503 in statuses and 200 in statuses
    overloaded = next(r for r in crowd if r.status_code == 503)
    assert overloaded.json()["error"]["code"] == "overloaded"
    ids += [r.headers["x-request-id"] for r in crowd]

    refused = _chat(url, model="nope")
    ids.append(refused.headers["x-request-id"])

    with httpx.stream(
        "POST",
        url + "/v1/chat/completions",
        json={
            "model": LOCAL,
            "stream": True,
            "max_tokens": 200,
            "messages": [{"role": "user", "content": "Write a long story."}],
        },
        timeout=60,
    ) as stream:
        cut_id = stream.headers["x-request-id"]
        ids.append(cut_id)
        next(stream.iter_lines())

    # The abandoned story is still generated to its end (and billed): until then the one model
    # instance is busy and a request may be refused (503) — and recorded — on a loaded machine.
    deadline = time.monotonic() + 60
    while True:
        after = _chat(url, model=LOCAL, max_tokens=4)
        ids.append(after.headers["x-request-id"])
        if after.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert after.status_code == 200
    ledger_gateway.stop()

    rows = {row["request_id"]: row for row in _rows(ledger_gateway.data_dir or Path())}
    assert set(ids) == set(rows)
    echo_rows = [rows[r.headers["x-request-id"]] for r in echo]
    for response, row in zip(echo, echo_rows, strict=True):
        usage = response.json()["usage"]
        assert (row["prompt_tokens"], row["completion_tokens"]) == (
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )
    assert rows[overloaded.headers["x-request-id"]]["status"] == 503
    assert rows[refused.headers["x-request-id"]]["status"] == 404
    cut = rows[cut_id]
    assert (cut["status"], cut["error_type"], cut["stream"]) == (499, "client_closed", 1)
