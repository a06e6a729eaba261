"""The good_enough decision on its own: which candidate the evidence allows, and why the others
are passed over; the task a request names; the in-memory copy of the evidence."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from decimal import Decimal

import pytest

from entrepot.config import CurrencyRates, Price, RouteConfig
from entrepot.exceptions import InvalidRequestError
from entrepot.routing.good_enough import (
    Decision,
    Decisions,
    EvidenceBoard,
    Inputs,
    check_task,
    decide,
    price_fingerprint,
    request_task,
)
from entrepot.store.evidence import Evidence, EvidenceKey
from tests.store.test_evidence import row

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
ROUTE = RouteConfig(
    strategy="good_enough",
    candidates=["tiny", "small"],
    reference="big",
    min_quality=0.95,
    max_age_days=30,
)
PRICES = {"tiny": "fp-tiny", "small": "fp-small", "big": "fp-big"}


def evidence(model: str, low: float, cost: int | None, **fields: object) -> Evidence:
    values: dict[str, object] = {
        "published_at": NOW - dt.timedelta(days=1),
        "model_alias": model,
        "relative_low": low,
        "cost_per_item_nanos": cost,
        "price_fingerprint": PRICES[model],
        **fields,
    }
    return row(f"ev_{model}", **values)  # type: ignore[arg-type]


def choose(*rows: Evidence, task: str | None = "support", **changes: object) -> Decision:
    board: dict[EvidenceKey, Evidence] = {r.key: r for r in rows}
    route = ROUTE.model_copy(update=changes)
    return decide("auto", route, task, Inputs(board, PRICES, CurrencyRates(), NOW))


def reasons(decision: Decision) -> dict[str, str]:
    return {v.alias: v.reason for v in decision.verdicts}


def test_the_cheapest_candidate_whose_lower_bound_clears_is_chosen() -> None:
    decision = choose(evidence("tiny", 0.97, 100), evidence("small", 0.99, 500))
    assert (decision.alias, decision.evidence_id) == ("tiny", "ev_tiny")
    assert decision.aliases == ("tiny", "big")  # the reference stays the fallback
    assert reasons(decision)["small"] == "clears min_quality, but tiny is cheaper"


def test_a_lower_bound_below_the_bar_is_passed_over_whatever_the_estimate() -> None:
    tiny = evidence("tiny", 0.90, 100, relative=0.99)
    decision = choose(tiny, evidence("small", 0.96, 500))
    assert decision.alias == "small"
    assert reasons(decision)["tiny"] == "lower bound 0.900 is below min_quality 0.95"


def test_without_fresh_evidence_the_reference_serves() -> None:
    old = evidence("tiny", 0.99, 100, published_at=NOW - dt.timedelta(days=31))
    repriced = evidence("small", 0.99, 100, price_fingerprint="priced-otherwise")
    decision = choose(old, repriced)
    assert (decision.alias, decision.evidence_id, decision.aliases) == ("big", None, ("big",))
    assert reasons(decision)["tiny"] == "evidence is 31 days old (max_age_days 30)"
    assert "price in the configuration changed" in reasons(decision)["small"]
    assert "no published evidence" in reasons(choose())["tiny"]
    assert reasons(choose(evidence("tiny", 0.99, 100), task=None))["tiny"].startswith("no task")
    # Evidence for another task, or against another reference, is not this route's evidence.
    assert choose(evidence("tiny", 0.99, 100), task="legal").alias == "big"
    assert choose(evidence("tiny", 0.99, 100, reference_alias="other")).alias == "big"


def test_a_candidate_must_be_priced_and_cheaper_than_the_reference() -> None:
    unpriced = evidence("tiny", 0.99, None)
    costly = evidence("small", 0.99, 900)
    reference = row("ev_big", NOW, model_alias="big", relative_low=1.0,
                    cost_per_item_nanos=800, price_fingerprint="fp-big")  # fmt: skip
    decision = choose(unpriced, costly, reference)
    assert decision.alias == "big"
    assert "cannot be shown cheaper" in reasons(decision)["tiny"]
    assert reasons(decision)["small"] == "not cheaper per item than the reference"
    # The reference's own evidence priced otherwise than today says nothing of its cost now.
    repriced = dataclasses.replace(reference, price_fingerprint="old")
    assert choose(costly, repriced).alias == "small"


def test_costs_in_other_currencies_are_compared_at_the_configured_rates() -> None:
    rates = CurrencyRates(as_of=dt.date(2026, 11, 1), rates={"CNY": Decimal("0.14")})
    tiny = evidence("tiny", 0.99, 1000, currency="CNY")  # 140 USD nanos
    small = evidence("small", 0.99, 200)
    board = {r.key: r for r in (tiny, small)}
    decision = decide("auto", ROUTE, "support", Inputs(board, PRICES, rates, NOW))
    assert decision.alias == "tiny"
    unconvertible = dataclasses.replace(tiny, currency="EUR")
    board = {r.key: r for r in (unconvertible, small)}
    assert decide("auto", ROUTE, "support", Inputs(board, PRICES, rates, NOW)).alias == "small"


def test_a_task_is_a_short_token_from_the_header_else_the_keys_default() -> None:
    assert check_task("support-v2.fr:eu/a_b", "x") == "support-v2.fr:eu/a_b"
    for bad in ("", "has space", "-leading", "x" * 65, "naïve", "a\nb"):
        with pytest.raises(InvalidRequestError) as caught:
            check_task(bad, "x-entrepot-task")
        assert caught.value.param == "x-entrepot-task"
    assert request_task(None, None) is None
    assert request_task("legal", None) == "legal"


def test_the_price_fingerprint_changes_with_any_part_of_a_price() -> None:
    price = Price(input_per_1m=Decimal("1.0"), output_per_1m=Decimal(2), as_of=dt.date(2026, 1, 1))
    same = price.model_copy(update={"input_per_1m": Decimal("1.00")})
    assert price_fingerprint(price, None) == price_fingerprint(same, None)
    changed = [
        price.model_copy(update={"output_per_1m": Decimal(3)}),
        price.model_copy(update={"currency": "EUR"}),
        price.model_copy(update={"as_of": dt.date(2026, 2, 1)}),
    ]
    assert len({price_fingerprint(p, None) for p in [price, *changed]}) == 4
    assert price_fingerprint(None, Decimal("0.36")) != price_fingerprint(None, Decimal("0.40"))
    assert price_fingerprint(None, None) != price_fingerprint(None, Decimal(0))


def test_the_board_reads_the_store_in_the_background_at_most_once_a_period() -> None:
    loads: list[int] = []
    published = [evidence("tiny", 0.99, 100)]

    def load() -> dict[EvidenceKey, Evidence]:
        loads.append(1)
        return {r.key: r for r in published}

    async def main() -> None:
        board = EvidenceBoard(load, refresh_seconds=0.2)
        await board.start()
        assert len(loads) == 1 and len(board.snapshot()) == 1
        published.append(evidence("small", 0.99, 50))
        for _ in range(1000):  # requests within the period: no query
            assert len(board.snapshot()) == 1
        assert len(loads) == 1
        await asyncio.sleep(0.25)
        assert len(board.snapshot()) == 1  # stale: a reload starts, this answer does not wait
        await asyncio.sleep(0.05)
        assert len(board.snapshot()) == 2 and len(loads) == 2
        await board.stop()

    asyncio.run(main())


def test_a_failing_store_keeps_the_copy_and_is_asked_again_a_period_later() -> None:
    calls: list[int] = []

    def load() -> dict[EvidenceKey, Evidence]:
        calls.append(1)
        if len(calls) > 1:
            raise OSError("store down")
        tiny = evidence("tiny", 0.99, 100)
        return {tiny.key: tiny}

    async def main() -> None:
        board = EvidenceBoard(load, refresh_seconds=0.1)
        await board.start()
        await asyncio.sleep(0.15)
        board.snapshot()
        await asyncio.sleep(0.02)
        for _ in range(100):
            assert len(board.snapshot()) == 1
        assert len(calls) == 2
        await asyncio.sleep(0.12)
        board.snapshot()
        await asyncio.sleep(0.02)
        assert len(calls) == 3
        await board.stop()

    asyncio.run(main())


def test_decisions_are_kept_until_the_board_changes_or_a_second_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decisions = Decisions(PRICES, CurrencyRates())
    board: dict[EvidenceKey, Evidence] = {}
    first = decisions.get("auto", ROUTE, "support", board)
    assert decisions.get("auto", ROUTE, "support", board) is first
    assert decisions.get("auto", ROUTE, "legal", board) is not first
    tiny = evidence("tiny", 0.99, 100, published_at=dt.datetime.now(dt.UTC))
    reloaded = {tiny.key: tiny}  # a reload is a new copy: decided afresh at once
    assert decisions.get("auto", ROUTE, "support", reloaded).alias == "tiny"
    kept = decisions.get("auto", ROUTE, "support", reloaded)
    later = time.monotonic() + Decisions.KEPT_SECONDS + 0.1
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert decisions.get("auto", ROUTE, "support", reloaded) is not kept


def test_outside_an_event_loop_the_board_answers_with_the_copy_it_read() -> None:
    tiny = evidence("tiny", 0.99, 100)
    board = EvidenceBoard(lambda: {tiny.key: tiny}, refresh_seconds=0)
    board.load_now()
    assert board.snapshot() == {tiny.key: tiny}  # past its period, with no loop to reload in
