"""Intervals, the frontier, headline wording and the report files, on hand-built inputs."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from rich.console import Console

from entrepot.bench.html import write_html
from entrepot.bench.report import print_report, summarise, write_json
from entrepot.bench.schema import BenchReport, Interval, ItemResult
from entrepot.bench.stats import bootstrap_mean, headline, paired_ratio, pareto_frontier


def test_bootstrap_intervals() -> None:
    assert bootstrap_mean([1.0] * 20) == Interval(estimate=1.0, low=1.0, high=1.0)
    half = bootstrap_mean([0.0, 1.0] * 10)
    assert half.estimate == 0.5 and 0.2 <= half.low < 0.5 < half.high <= 0.8
    wide = bootstrap_mean([0.0, 1.0] * 5)
    narrow = bootstrap_mean([0.0, 1.0] * 200)
    assert narrow.high - narrow.low < wide.high - wide.low
    with pytest.raises(ValueError):
        bootstrap_mean([])


def test_paired_ratio() -> None:
    same = paired_ratio([1, 0, 1, 1], [1, 0, 1, 1])
    assert same == Interval(estimate=1.0, low=1.0, high=1.0)
    lower = paired_ratio([1.0] * 50, [1.0] * 40 + [0.0] * 10)
    assert lower.estimate == pytest.approx(0.8) and lower.low < 0.8 < lower.high <= 1.0


def test_pareto_frontier() -> None:
    points = [("cheap", 1.0, 0.7), ("dear", 10.0, 0.9), ("worse", 5.0, 0.6), ("tie", 1.0, 0.7)]
    assert pareto_frontier(points) == {"cheap", "dear", "tie"}


@pytest.mark.parametrize(
    ("quality", "ratio", "words"),
    [
        (Interval(estimate=0.96, low=0.91, high=0.99), 1 / 17, "reaches 96% (91%–99%)"),
        (Interval(estimate=0.98, low=0.9, high=1.05), 1 / 17, "matches"),
        (Interval(estimate=0.8, low=0.5, high=1.1), 0.2, "too wide to conclude"),
        (Interval(estimate=1.1, low=1.02, high=1.2), 2.0, "2.0× the cost"),
    ],
)
def test_headline_says_only_what_the_interval_supports(
    quality: Interval, ratio: float, words: str
) -> None:
    text = headline("B", "A", quality, ratio, 500, "2026-11-01")
    assert words in text and "500 items" in text and "2026-11-01" in text
    assert "1/17 of the cost" in headline("B", "A", quality, 1 / 17, 9, None) or ratio != 1 / 17
    assert "prices undated" in headline("B", "A", quality, None, 9, None)
    assert "not comparable" in headline("B", "A", quality, None, 9, None)


def _results() -> list[ItemResult]:
    rows = []
    for i, (a, b) in enumerate([(1, 1), (1, 0), (1, 1), (0, 0)]):
        for model, score, cost in (("A", a, 1_000_000), ("<script>B", b, 100_000)):
            rows.append(
                ItemResult(
                    item_id=str(i), task="t", model=model, score=float(score),
                    cost_nanos=cost, latency_ms=10.0 * (i + 1), prompt_tokens=3,
                    completion_tokens=2,
                )
            )  # fmt: skip
    return rows


def test_summary_numbers_and_outputs(tmp_path: Path) -> None:
    report = summarise(
        _results(),
        reference="A",
        price_dates={"A": "2026-11-01", "<script>B": "2026-11-01"},
        currencies={"A": "USD", "<script>B": "USD"},
        cost_basis={"A": "tokens", "<script>B": "tokens"},
        tasks=["t"],
        repeats=1,
    )
    a, b = report.models
    assert a.score is not None and b.score is not None
    assert a.score.estimate == 0.75 and b.score.estimate == 0.5
    assert a.total_cost == pytest.approx(0.004) and a.cost_per_item == pytest.approx(0.001)
    assert a.cost_per_correct == pytest.approx(0.004 / 3)
    assert a.latency_p50_ms == pytest.approx(25.0)
    assert a.on_frontier and b.on_frontier
    (comparison,) = report.comparisons
    assert comparison.quality_ratio.estimate == pytest.approx(0.5 / 0.75)
    assert comparison.cost_ratio == pytest.approx(0.1)
    write_json(report, tmp_path / "r.json")
    loaded = BenchReport.model_validate(orjson.loads((tmp_path / "r.json").read_bytes()))
    assert loaded.version == "2" and loaded.models[0].model == "A"
    write_html(report, tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert "<svg" in html and "<script>B" not in html and "&lt;script&gt;B" in html
    assert 'src="http' not in html and 'href="http' not in html
    console = Console(file=io.StringIO(), width=200)
    print_report(report, console)
    assert "A" in console.file.getvalue()  # type: ignore[attr-defined]


def test_the_terminal_table_keeps_long_names_and_costs_whole_at_80_columns() -> None:
    names = ["local/smollm2-135m-instruct", "local/smollm2-135m-instruct-q8", "local/smollm2-x"]
    results = [
        ItemResult(
            item_id=str(i), task="t", model=name, score=1.0, cost_nanos=1_234, latency_ms=1500.0,
            prompt_tokens=12_345, completion_tokens=2,
        )
        for i in range(3)
        for name in names
    ]  # fmt: skip
    report = summarise(
        results, reference=names[0], price_dates={}, currencies={}, cost_basis={},
        tasks=["t"], repeats=1,
    )  # fmt: skip
    console = Console(file=io.StringIO(), width=80, color_system=None)
    print_report(report, console)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "…" not in out
    lines = out.splitlines()
    for name in names:
        assert name in lines, out  # each card is headed by the whole name
    assert any("$0.00000370" in line for line in lines), out  # total cost: 3 × 1,234 nanos
    assert any("1.5 s / 1.5 s" in line for line in lines), out
    assert any("37,035 / 6" in line for line in lines), out


def test_an_upstreams_error_and_a_policys_reason_are_printed_as_text_not_markup() -> None:
    """Both come from outside the report (an upstream's own words, a rule's list of places):
    brackets in them are printed as written, and never break the report."""
    error = "502 upstream_error: no route [/v1/chat] for [bold]you[/bold]"
    refusal = "data class 'confidential' allows only [local]"
    results = [
        ItemResult(item_id="1", task="t", model="failing", error=error),
        ItemResult(item_id="1", task="t", model="guarded", refused_by_policy=refusal),
    ]
    report = summarise(
        results, reference=None, price_dates={}, currencies={}, cost_basis={},
        tasks=["t"], repeats=1,
    )  # fmt: skip
    console = Console(file=io.StringIO(), width=300, color_system=None)
    print_report(report, console)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert error in out and refusal in out
    assert "answers: 0 reused from earlier runs, 2 asked (1 failed; 1 refused by policy;" in out
