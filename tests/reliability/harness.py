"""A gateway in front of every fault model of the fake OpenAI upstream, and how to read its ledger.

Each fault has two aliases: `solo/<fault>`, whose only deployment is the faulty one, and
`fallback/<fault>`, where a healthy echo deployment follows it. Every route may try twice, but
never the same deployment twice, so a `solo/` request is sent once. The circuit breaker never
opens, so each request meets its fault afresh. Prices are whole nanos per token, so a bill can
be checked exactly: the faulty and healthy deployments cost 2,000/8,000 nanos per
prompt/completion token, the fallbacks 1,000/3,000, so a failed attempt billed by mistake would
change the total.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import httpx
import pytest

from tests.conftest import UPSTREAM_KEY, Server, fake_model, start_gateway

AS_OF = "2026-11-01"
PRIMARY_PRICE = {"input_per_1m": "2", "output_per_1m": "8", "as_of": AS_OF}
FALLBACK_PRICE = {"input_per_1m": "1", "output_per_1m": "3", "as_of": AS_OF}
NANOS_PER_TOKEN = {"primary": (2_000, 8_000), "fallback": (1_000, 3_000)}
HEALTHY = "healthy/echo"
HANG_SECONDS = 1.0
FAULTS = (
    "fail-500",
    "rate-limited",
    "hang",
    "reset",
    "malformed-json",
    "empty-body",
    "error-200",
    "odd-choices",
    "midstream-drop",
    "truncated-sse",
    "slow-bytes",
)
FALLBACK_DEPLOYMENTS = frozenset(f"{fault}-fallback" for fault in FAULTS)
# Faults that strike before the first byte reaches the client, and what the client gets when
# nothing can fall back.
BEFORE_FIRST_BYTE = {
    "fail-500": (502, "bad_gateway"),
    "rate-limited": (429, "upstream_rejected"),
    "hang": (504, "upstream_timeout"),
    "reset": (502, "bad_gateway"),
    "malformed-json": (502, "bad_gateway"),
    "empty-body": (502, "bad_gateway"),
    "error-200": (502, "bad_gateway"),
    "odd-choices": (502, "bad_gateway"),
}
# Faults after the upstream received the whole request, where it may have generated an answer
# that never arrived whole (the deadline fired, a success that cannot be read): the attempt is
# billed as the gateway's count of the prompt plus the output cap it was sent, estimated. An
# error the upstream reports (a status, or an `error` body with 200) is no generation.
GENERATED_UNSEEN = frozenset({"hang", "malformed-json", "empty-body", "odd-choices"})
OUTPUT_CAP = 4096  # the deployments' default max_output_tokens, sent when the client sets none
# Faults that strike after a stream has sent its first words, which the client already has.
AFTER_FIRST_BYTE = ("midstream-drop", "truncated-sse")


def _deployment(
    fake: Server, alias: str, target: str, name: str, price: dict[str, str]
) -> dict[str, Any]:
    entry = fake_model(fake, alias, target, name=name, price=price)
    if target == "hang":
        entry["timeouts"] = {"connect": HANG_SECONDS, "total": HANG_SECONDS}
    return entry


def fault_config(fake: Server) -> dict[str, Any]:
    models = [_deployment(fake, HEALTHY, "echo-model", "healthy", PRIMARY_PRICE)]
    for fault in FAULTS:
        models += [
            _deployment(fake, f"solo/{fault}", fault, f"solo-{fault}", PRIMARY_PRICE),
            _deployment(fake, f"fallback/{fault}", fault, f"{fault}-first", PRIMARY_PRICE),
            _deployment(
                fake, f"fallback/{fault}", "echo-model", f"{fault}-fallback", FALLBACK_PRICE
            ),
        ]
    return {
        "store": {"ledger_flush_seconds": 0.05},
        "default_route": {"max_attempts": 2, "backoff_seconds": 0},
        "breaker": {"failure_threshold": 1_000_000},
        "models": models,
    }


def start_fault_gateway(tmp: pytest.TempPathFactory, fake: Server, name: str) -> Server:
    config = fault_config(fake)
    return start_gateway(tmp.mktemp(name), name, config, {"FAKE_UPSTREAM_KEY": UPSTREAM_KEY})


def expected_cost_nanos(deployment: str, prompt_tokens: int, completion_tokens: int) -> int:
    """What the ledger must charge for tokens served by `deployment`, from the prices above."""
    tier = "fallback" if deployment in FALLBACK_DEPLOYMENTS else "primary"
    per_prompt, per_completion = NANOS_PER_TOKEN[tier]
    return prompt_tokens * per_prompt + completion_tokens * per_completion


def ledger_rows(gateway: Server, *, check_integrity: bool = False) -> list[dict[str, Any]]:
    """Every usage record in the gateway's SQLite store; after a crash, the store is first
    checked to open whole."""
    assert gateway.data_dir is not None
    with sqlite3.connect(gateway.data_dir / "entrepot.db") as db:
        db.row_factory = sqlite3.Row
        if check_integrity:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [dict(row) for row in db.execute("SELECT * FROM usage_records")]


def wait_for_upstream_request(fake: Server, text: str, timeout: float = 10) -> None:
    """Block until the fake upstream has received the chat request whose user text is `text`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = httpx.get(fake.url + "/last-request").json() or {}
        if any(m.get("content") == text for m in last.get("messages", [])):
            return
        time.sleep(0.01)
    raise AssertionError(f"the upstream never received {text!r}")
