"""A request cancelled before its answer (an interrupted bench or audit, a server stopping under
it) is recorded as cut off (499 `client_closed`), never as answered."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from entrepot.api.endpoints.chat import CHAT
from entrepot.api.gateway import Gateway
from entrepot.api.in_process import call
from entrepot.config import Config, StoreConfig
from entrepot.store.db import open_engine
from entrepot.store.tables import usage_records
from tests.conftest import UPSTREAM_KEY, Server, fake_model


def test_an_in_process_call_cancelled_mid_generation_is_recorded_as_cut_off(
    tmp_path: Path, fake_openai: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", UPSTREAM_KEY)
    url = f"sqlite:///{tmp_path}/t.db"
    config = Config.model_validate(
        {"store": {"url": url}, "models": [fake_model(fake_openai, "fake/slow", "sleep-5000")]}
    )
    engine = open_engine(StoreConfig(url=url))
    body = {"model": "fake/slow", "messages": [{"role": "user", "content": "hello"}]}

    async def main() -> None:
        gateway = Gateway(config, engine)
        await gateway.start()
        task = asyncio.create_task(
            call(gateway, CHAT, body, key=None, principal="tests", record_as="bench:chat")
        )
        await asyncio.sleep(0.5)  # the upstream has the request
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await gateway.stop()

    asyncio.run(main())
    with engine.connect() as conn:
        rows = conn.execute(select(usage_records)).mappings().all()
    assert [(r["status"], r["error_type"], r["endpoint"]) for r in rows] == [
        (499, "client_closed", "bench:chat")
    ]
