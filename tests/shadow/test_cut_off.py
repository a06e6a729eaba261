"""A shadow copy still under way when the gateway stops is cancelled after its grace period and
recorded as cut off — and billed to the route's shadow line: the candidate had the request and
may have generated, so the copy is billed as a generation of unknown length (its prompt by the
gateway's count and the whole output cap), flagged estimated.

Prices are 1000 per million input tokens and 2000 per million output tokens; "hello" from a
user is 7 tokens by the gateway's count, and the candidate's output cap is 50."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from entrepot.api.endpoints.chat import CHAT
from entrepot.api.gateway import Gateway
from entrepot.api.in_process import call
from entrepot.config import Config, StoreConfig
from entrepot.shadow.traffic import ShadowTraffic
from entrepot.store.db import open_engine
from entrepot.store.tables import usage_records
from tests.conftest import UPSTREAM_KEY, Server, fake_model

PRICE = {"input_per_1m": "1000", "output_per_1m": "2000", "currency": "USD", "as_of": "2026-11-01"}


def test_a_copy_cut_off_at_shutdown_is_billed_to_the_shadow_line(
    tmp_path: Path, fake_openai: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", UPSTREAM_KEY)
    url = f"sqlite:///{tmp_path}/t.db"
    spend = {"amount": 1000, "period": "total"}
    shadow = {"candidate": "slow", "share": 1, "judge": None, "max_spend": spend}
    config = Config.model_validate(
        {
            "store": {"url": url},
            "models": [
                fake_model(fake_openai, "fast", "echo-model", price=PRICE),
                fake_model(fake_openai, "slow", "sleep-30000", price=PRICE, max_output_tokens=50),
            ],
            "routes": {"fast": {"shadow": shadow}},
        }
    )
    engine = open_engine(StoreConfig(url=url))

    async def main() -> None:
        gateway = Gateway(config, engine)
        ShadowTraffic.attach(gateway)
        await gateway.start()
        body = {"model": "fast", "messages": [{"role": "user", "content": "hello"}]}
        await call(gateway, CHAT, body, key=None, principal="tests", record_as=None)
        await asyncio.sleep(0.5)  # the copy is with the candidate
        await gateway.stop()  # waits for copies under way, then cuts them off

    asyncio.run(main())
    with engine.connect() as conn:
        query = select(usage_records).where(usage_records.c.endpoint == "shadow:chat")
        rows = [dict(r) for r in conn.execute(query).mappings().all()]
    fields = ("status", "key_name", "prompt_tokens", "completion_tokens", "cost_nanos")
    assert [tuple(r[f] for f in (*fields, "usage_estimated")) for r in rows] == [
        (499, "shadow:fast", 7, 50, 7 * 1_000_000 + 50 * 2_000_000, 1)
    ]
