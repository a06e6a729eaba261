"""Pairs in the store: answers are forgotten after the route's retention, grades kept."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml
from typer.testing import CliRunner

from entrepot.cli import app
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


def test_the_report_forgets_answers_past_retention_and_shows_none(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/report.db"
    remote = {"provider": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}
    config = {
        "store": {"url": url},
        "models": [
            {"alias": "big", "target": "x", "jurisdiction": "US", **remote},
            {"alias": "small", "target": "y", "jurisdiction": "US", **remote},
        ],
        "routes": {
            "big": {"shadow": {"candidate": "small", "share": 0.1, "max_spend": {"amount": 5}}}
        },
    }
    path = tmp_path / "entrepot.yaml"
    path.write_text(yaml.safe_dump(config))
    engine = open_engine(StoreConfig(url=url))
    old = pair("old", 30, route="big")
    old.created_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    pairs.save(engine, old)
    result = CliRunner().invoke(app, ["shadow", "report", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "big: small vs big — UNDECIDED" in result.output
    assert "first answer" not in result.output
    with engine.connect() as conn:
        (row,) = conn.execute(shadow_pairs.select())
    assert (row.incumbent_answer, row.candidate_answer, row.difference) == (None, None, 1.0)
