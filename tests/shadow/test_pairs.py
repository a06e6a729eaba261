"""Pairs in the store: answers are forgotten after the route's retention, grades kept."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from entrepot.config import StoreConfig
from entrepot.shadow import pairs
from entrepot.store.db import open_engine
from entrepot.store.tables import shadow_pairs

NOW = dt.datetime(2026, 12, 2, 12, tzinfo=dt.UTC)


def pair(request_id: str, days_ago: int, route: str = "support") -> pairs.Pair:
    return pairs.Pair(
        request_id=request_id,
        created_at=NOW - dt.timedelta(days=days_ago),
        route=route,
        task="support",
        incumbent="big",
        candidate="small",
        status="graded",
        incumbent_answer="first answer",
        candidate_answer="second answer",
        difference=1.0,
    )


def test_answers_are_purged_after_retention_and_grades_kept(tmp_path: Path) -> None:
    engine = open_engine(StoreConfig(url=f"sqlite:///{tmp_path}/pairs.db"))
    for saved in (pair("old", 8), pair("fresh", 6), pair("other-route", 30, route="billing")):
        pairs.save(engine, saved)
    assert pairs.purge(engine, "support", 7, NOW) == 1
    assert pairs.purge(engine, "support", 7, NOW) == 0
    with engine.connect() as conn:
        kept = {
            r.request_id: (r.incumbent_answer, r.candidate_answer, r.difference)
            for r in conn.execute(shadow_pairs.select())
        }
    assert kept["old"] == (None, None, 1.0)
    assert kept["fresh"] == ("first answer", "second answer", 1.0)
    assert kept["other-route"][0] == "first answer"  # its own route's retention decides
    assert [g.difference for g in pairs.graded(engine, "support")] == [1.0, 1.0]
    assert pairs.outcomes(engine) == {("support", "graded"): 2, ("billing", "graded"): 1}
