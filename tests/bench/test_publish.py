"""`entrepot bench --publish`: a real run on models of known quality (tests/routing/quality.py)
stored as evidence, and the route choices that evidence leads to."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from pathlib import Path

import pytest
from rich.console import Console

from entrepot.bench.runner import RunOptions
from entrepot.bench.session import BenchRequest, run_bench
from entrepot.config import Config
from entrepot.exceptions import ConfigError
from entrepot.routing.good_enough import board_for, configured_fingerprints
from entrepot.routing.table import RoutingTable
from entrepot.store.db import open_engine
from entrepot.store.evidence import latest
from tests.conftest import Server
from tests.routing import quality


def _config(fake: Server, tmp: Path) -> Config:
    store = {"url": f"sqlite:///{tmp / 'store.db'}"}
    return Config.model_validate(quality.config(fake, store=store))


def _publish(config: Config, tmp: Path, reference: str = "ref/big") -> str:
    out = io.StringIO()
    request = BenchRequest(
        tasks=quality.tasks(tmp),
        models=quality.MODELS,
        reference=reference,
        options=RunOptions(out=tmp / "out", concurrency=4, max_tokens=16),
        publish=True,
    )
    run_bench(config, request, Console(file=out, width=200))
    return out.getvalue()


def test_a_run_is_published_per_model_and_task_with_paired_intervals(
    fake_openai: Server, tmp_path: Path
) -> None:
    config = _config(fake_openai, tmp_path)
    assert "published 6 results" in _publish(config, tmp_path)
    rows = latest(open_engine(config.store), dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    assert len(rows) == 6 and len({r.run_id for r in rows.values()}) == 1
    weak_legal = rows[("legal", "cand/weak", "ref/big")]
    assert (weak_legal.items, weak_legal.score, weak_legal.relative) == (20, 0.9, 0.9)
    assert weak_legal.relative_low is not None and weak_legal.relative_low < 0.95
    assert weak_legal.relative_high == 1.0
    for task in ("faq", "legal"):
        mid = rows[(task, "cand/mid", "ref/big")]
        assert (mid.relative, mid.relative_low, mid.relative_high) == (1.0, 1.0, 1.0)
    weak_faq = rows[("faq", "cand/weak", "ref/big")]
    assert (weak_faq.relative_low, weak_faq.score_low) == (1.0, 1.0)
    # The fake counts words: "faq question N" in, "echo: faq question N" out.
    big, mid = rows[("faq", "ref/big", "ref/big")], rows[("faq", "cand/mid", "ref/big")]
    assert big.cost_per_item_nanos == 3 * 10_000 + 4 * 30_000
    assert mid.cost_per_item_nanos == 3 * 1_000 + 4 * 3_000
    assert (mid.currency, mid.price_date) == ("USD", quality.AS_OF)
    assert mid.price_fingerprint == configured_fingerprints(config)["cand/mid"]


def test_the_route_picks_the_cheaper_candidate_only_where_its_lower_bound_clears(
    fake_openai: Server, tmp_path: Path
) -> None:
    config = _config(fake_openai, tmp_path)
    _publish(config, tmp_path)
    board = board_for(config, open_engine(config.store))
    assert board is not None
    board.load_now()
    table = RoutingTable(config, board)
    try:
        faq, legal = table.choose(quality.ROUTE, "faq"), table.choose(quality.ROUTE, "legal")
        other = table.choose(quality.ROUTE, "translation")
        assert faq is not None and legal is not None and other is not None
        assert faq.aliases == ("cand/weak", "ref/big")
        assert legal.aliases == ("cand/mid", "ref/big")
        assert (other.aliases, other.evidence_id) == (("ref/big",), None)
        assert [d.alias for d in table.resolve(quality.ROUTE)] == ["ref/big"]
    finally:
        asyncio.run(table.close())


def test_publishing_needs_the_reference_among_the_models(
    fake_openai: Server, tmp_path: Path
) -> None:
    config = _config(fake_openai, tmp_path)
    with pytest.raises(ConfigError, match="not one of --models"):
        _publish(config, tmp_path, reference="elsewhere")
