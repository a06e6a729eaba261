"""`entrepot usage`: the ledger summed per key or model, and an unknown grouping refused."""

from __future__ import annotations

import pytest

from entrepot.config import StoreConfig
from entrepot.store.db import open_engine
from entrepot.store.usage import insert_records
from entrepot.types import UsageRecord
from tests.cli.invoke import ok, run

pytestmark = pytest.mark.usefixtures("cli_env")


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
