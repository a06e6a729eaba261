"""Published bench evidence: stored whole per run, read back newest first per comparison."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import Engine

from entrepot.store.evidence import Evidence, latest, publish

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def row(ident: str, published_at: dt.datetime = NOW, **fields: object) -> Evidence:
    base = Evidence(
        id=ident,
        run_id="run1",
        published_at=published_at,
        task="support",
        model_alias="cheap",
        reference_alias="big",
        items=40,
        score=0.9,
        score_low=0.8,
        score_high=0.97,
        relative=0.98,
        relative_low=0.96,
        relative_high=1.0,
        cost_per_item_nanos=1234,
        currency="USD",
        price_date="2026-11-01",
        price_fingerprint="f" * 32,
    )
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


def test_rows_come_back_as_published_with_their_time_in_utc(engine: Engine) -> None:
    published = row("ev_1", NOW)
    unpriced = row(
        "ev_2",
        model_alias="local",
        cost_per_item_nanos=None,
        relative=None,
        relative_low=None,
        relative_high=None,
        currency=None,
        price_date=None,
    )
    publish(engine, [published, unpriced])
    found = latest(engine, NOW - dt.timedelta(days=1))
    assert found == {published.key: published, unpriced.key: unpriced}
    assert found[published.key].published_at.tzinfo is not None


def test_the_newest_run_of_a_comparison_supersedes_older_ones(engine: Engine) -> None:
    old = row("ev_old", NOW - dt.timedelta(days=3), relative_low=0.99)
    new = row("ev_new", NOW - dt.timedelta(days=1), run_id="run2", relative_low=0.5)
    other_reference = row("ev_ref", NOW - dt.timedelta(days=2), reference_alias="other")
    publish(engine, [new])
    publish(engine, [old, other_reference])
    found = latest(engine, NOW - dt.timedelta(days=10))
    assert found[("support", "cheap", "big")].id == "ev_new"
    assert found[("support", "cheap", "other")].id == "ev_ref"


def test_rows_older_than_the_horizon_are_not_read(engine: Engine) -> None:
    publish(engine, [row("ev_old", NOW - dt.timedelta(days=40))])
    assert latest(engine, NOW - dt.timedelta(days=30)) == {}
    publish(engine, [])  # an empty run writes nothing
    assert latest(engine, NOW - dt.timedelta(days=30)) == {}
