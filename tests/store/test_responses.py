"""Stored responses: owner-scoped reads and deletes, retention bounds, sweeps, and the archive
the API reads them through."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import Engine, func, select

from entrepot.api.responses.stored import Archive, owner_of
from entrepot.exceptions import NotFoundError
from entrepot.store.responses import StoredResponse, load, remove, save, sweep
from entrepot.store.tables import responses


def stored(response_id: str, owner: str = "key:1", created_at: int = 1_000) -> StoredResponse:
    response = {"id": response_id, "object": "response", "created_at": created_at, "output": []}
    items = [{"id": "msg_1", "type": "message", "role": "user", "content": []}]
    return StoredResponse(response_id, owner, created_at, response, items)


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(responses)).scalar_one())


def test_a_saved_response_reads_back_whole(engine: Engine) -> None:
    save(engine, [stored("resp_a")])
    assert load(engine, "resp_a", "key:1", 0) == stored("resp_a")


def test_another_owner_neither_reads_nor_deletes_it(engine: Engine) -> None:
    save(engine, [stored("resp_a", owner="key:1")])
    assert load(engine, "resp_a", "key:2", 0) is None
    assert load(engine, "resp_a", "anonymous", 0) is None
    assert remove(engine, "resp_a", "key:2", 0) is False
    assert count(engine) == 1
    assert remove(engine, "resp_a", "key:1", 0) is True
    assert count(engine) == 0
    assert remove(engine, "resp_a", "key:1", 0) is False


def test_reads_and_deletes_are_bounded_by_retention(engine: Engine) -> None:
    save(engine, [stored("resp_old", created_at=999)])
    assert load(engine, "resp_old", "key:1", not_before=1_000) is None
    assert remove(engine, "resp_old", "key:1", not_before=1_000) is False
    assert load(engine, "resp_old", "key:1", not_before=999) is not None


def test_sweep_deletes_only_what_is_older(engine: Engine) -> None:
    save(engine, [stored("resp_old", created_at=999)])
    save(engine, [stored("resp_new", created_at=1_000)])
    assert sweep(engine, before=1_000) == 1
    assert load(engine, "resp_new", "key:1", 0) is not None
    assert load(engine, "resp_old", "key:1", 0) is None


def test_owners_are_keys_or_the_anonymous_namespace() -> None:
    assert owner_of(None) == "anonymous"


def test_archive_hides_and_sweeps_expired_responses(engine: Engine) -> None:
    archive = Archive(engine, retention_days=1)
    now = int(time.time())
    save(engine, [stored("resp_expired", created_at=now - 86_400 - 10)])
    save(engine, [stored("resp_fresh", created_at=now - 60)])

    async def scenario() -> None:
        with pytest.raises(NotFoundError):
            await archive.find("key:1", "resp_expired")
        assert (await archive.find("key:1", "resp_fresh")).id == "resp_fresh"
        with pytest.raises(NotFoundError):
            await archive.forget("key:2", "resp_fresh")
        with pytest.raises(NotFoundError):
            await archive.find("key:1", "resp_" + "x" * 100)

    asyncio.run(scenario())
    assert count(engine) == 1  # the first access swept the expired row away


def test_archive_keeps_a_response_under_its_owner(engine: Engine) -> None:
    archive = Archive(engine, retention_days=30)
    response = {"id": "resp_k", "object": "response", "created_at": int(time.time())}

    async def scenario() -> StoredResponse:
        await archive.keep("anonymous", response, [])
        await archive.forget("anonymous", "resp_k")
        await archive.keep("anonymous", {**response, "id": "resp_l"}, [])
        return await archive.find("anonymous", "resp_l")

    assert asyncio.run(scenario()).response["id"] == "resp_l"
    assert count(engine) == 1


def test_concurrent_keeps_share_transactions_and_all_land(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Responses kept while a transaction commits go in the next one; each caller returns only
    once its own response is committed, and a failed batch fails each of its callers."""
    batches: list[int] = []
    real_save = save

    def counting_save(engine: Engine, batch: list[StoredResponse]) -> None:
        batches.append(len(batch))
        real_save(engine, batch)

    monkeypatch.setattr("entrepot.store.responses.save", counting_save)
    archive = Archive(engine, retention_days=30)
    now = int(time.time())

    async def keep_all() -> None:
        await asyncio.gather(
            *(archive.keep("key:1", {"id": f"resp_{i}", "created_at": now}, []) for i in range(40))
        )
        with pytest.raises(Exception, match=r"(?i)unique"):
            await archive.keep("key:1", {"id": "resp_0", "created_at": now}, [])

    asyncio.run(keep_all())
    assert count(engine) == 40
    assert sum(batches) == 41 and len(batches) < 40
