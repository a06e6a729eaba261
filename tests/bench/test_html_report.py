"""The bench's HTML report from a real run on the fake upstream: the item-by-item matrix with its
filter, the charts' legend, ticks and frontier, the summary's cost and token columns; one file
that loads nothing from outside, and stays a few megabytes at 1,000 items on five models."""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from entrepot.bench.charts import LEFT, scatter_svg
from entrepot.bench.html import TEXT_LIMIT, write_html
from entrepot.bench.report import summarise
from entrepot.bench.runner import RunOptions
from entrepot.bench.schema import BenchReport, ItemResult, TaskItem
from entrepot.bench.session import BenchRequest, run_bench
from entrepot.config import Config
from tests.api.console.browser import chromium
from tests.bench.html_check import check_page, open_at, screenshot_folder, shown
from tests.conftest import UPSTREAM_KEY, Server, fake_model

EASY, HARD = 4, 3  # items; `weak-on-hard` answers "I do not know" to the hard ones


def _price(per_million: str) -> dict[str, str]:
    return {"input_per_1m": per_million, "output_per_1m": per_million, "as_of": "2026-11-01"}


@pytest.fixture(scope="module")
def run(fake_openai: Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[BenchReport, str]:
    tmp = tmp_path_factory.mktemp("bench-html")
    items = [
        {"id": f"easy-{i}", "task": "easy", "prompt": f"Name fruit {i}: apple",
         "expected": "apple", "grader": {"kind": "contains"}}
        for i in range(EASY)
    ] + [
        {"id": f"hard-{i}", "task": "hard", "prompt": f"A hard one {i} <b>: pear",
         "expected": "pear", "grader": {"kind": "contains"}}
        for i in range(HARD)
    ]  # fmt: skip
    (tmp / "fruit.yaml").write_text(yaml.safe_dump(items))
    config = Config.model_validate(
        {
            "store": {"url": f"sqlite:///{tmp / 'ledger.db'}"},
            "models": [
                fake_model(fake_openai, "dear", "echo-model", price=_price("40")),
                fake_model(fake_openai, "cheap", "weak-on-hard", price=_price("0.5")),
                fake_model(fake_openai, "broken", "fail-500", price=_price("1")),
            ],
        }
    )
    request = BenchRequest(
        tasks=[str(tmp / "fruit.yaml")],
        models=["dear", "cheap", "broken"],
        reference="dear",
        options=RunOptions(out=tmp / "out", concurrency=4, retries=0, backoff_seconds=0),
    )
    with pytest.MonkeyPatch.context() as patch:  # the autouse key fixture is per test
        patch.setenv("FAKE_UPSTREAM_KEY", UPSTREAM_KEY)
        report = run_bench(config, request, Console(file=io.StringIO(), width=200))
    return report, (tmp / "out" / "report.html").read_text()


def test_the_matrix_has_a_row_per_item_with_each_models_answer(
    run: tuple[BenchReport, str],
) -> None:
    _, html = run
    page = check_page(html)
    rows = [attrs for tag, attrs in page.tags if tag == "tr" and "data-row" in attrs]
    assert len(rows) == EASY + HARD
    assert {r["data-task"] for r in rows} == {"easy", "hard"}
    hard = [r for r in rows if r["data-task"] == "hard"]
    assert all(set(str(r["data-flags"]).split()) == {"wrong", "error", "disagree"} for r in hard)
    matrix = html[html.index('id="matrix"') :]
    assert "A hard one 0 &lt;b&gt;: pear" in matrix and "<b>: pear" not in matrix
    assert "echo: Name fruit 0: apple" in matrix and "I do not know" in matrix
    assert matrix.count('class="good"') == EASY * 2 + HARD and matrix.count('class="bad"') == HARD
    assert matrix.count("error: ") == EASY + HARD
    assert re.search(r"<th>dear</th><th>cheap</th><th>broken</th>", matrix)
    # The filter: a form aimed at the matrix, its selects, and the inline script that runs it.
    assert page.find("form", **{"class": "filter", "data-target": "matrix"})
    assert {s["name"] for s in page.find("select")} == {"task", "flags"}
    assert "form.filter" in html[html.index("<script>") :]


def test_the_chart_has_ticks_a_legend_and_the_frontier(run: tuple[BenchReport, str]) -> None:
    report, html = run
    page = check_page(html)
    on_frontier = {s.model for s in report.models if s.on_frontier}
    assert on_frontier == {"dear", "cheap"}
    (frontier,) = page.find("polyline", **{"class": "frontier"})
    assert len((frontier["points"] or "").split()) == 2
    assert "log scale" in html and "$0.0001" in html and "$0.001" in html
    assert all(f">{t:.2f}</text>" in html for t in (0, 0.25, 0.5, 0.75, 1))
    legend = html[html.index('id="legend"') : html.index("</ul>", html.index('id="legend"'))]
    assert all(name in legend for name in ("dear", "cheap", "broken (no answers, not drawn)"))
    assert "Pareto frontier" in legend
    for svg in page.find("svg"):
        assert svg["viewbox"] == "0 0 640 380"  # scales down to a narrow screen
    for text in re.findall(r'<text x="([\d.]+)"[^>]*text-anchor="start"', html):
        assert float(text) < 640 * 0.6  # names that would run off the right edge are end-anchored


def test_the_summary_has_cost_per_item_and_tokens_as_money_and_counts(
    run: tuple[BenchReport, str],
) -> None:
    report, html = run
    summary = html[html.index('class="summary"') : html.index("</table>")]
    assert "<th>per item</th>" in summary and "<th>tokens in/out</th>" in summary
    dear = next(s for s in report.models if s.model == "dear")
    assert f"{dear.prompt_tokens:,}/{dear.completion_tokens:,}" in summary
    assert "0.000000" not in html and re.search(r">\$0\.000\d+<", summary)
    assert "@media (max-width:760px)" in html and 'name="viewport"' in html


def _big_report(items: int, models: int) -> tuple[BenchReport, list[TaskItem]]:
    """Realistic lengths: a 300-character prompt and 600-character answers."""
    tasks = [
        TaskItem(id=f"i{i}", task=f"t{i % 4}", prompt="Why? " * 60, expected="because")
        for i in range(items)
    ]
    results = [
        ItemResult(item_id=t.id, task=t.task, model=f"model-{m}", answer="Since so. " * 60,
                   score=float((i + m) % 2), cost_nanos=1000 * (m + 1), latency_ms=5.0)
        for m in range(models)
        for i, t in enumerate(tasks)
    ]  # fmt: skip
    names = [f"model-{m}" for m in range(models)]
    report = summarise(
        results,
        reference=names[0],
        price_dates=dict.fromkeys(names, "2026-11-01"),
        currencies=dict.fromkeys(names, "USD"),
        cost_basis=dict.fromkeys(names, "tokens"),
        tasks=sorted({t.task for t in tasks}),
        repeats=1,
    )
    return report, tasks


def test_a_thousand_items_on_five_models_stay_a_few_megabytes(tmp_path: Path) -> None:
    report, tasks = _big_report(1000, 5)
    write_html(report, tmp_path / "report.html", tasks)
    html = (tmp_path / "report.html").read_text()
    text = sum(len(t.prompt or "") + 7 for t in tasks)
    text += sum(len(r.answer or "") for r in report.results)
    assert len(html.encode()) < 1.35 * text + 200_000  # markup adds little to the texts
    assert html.count("<tr data-row") == 1000
    check_page(html)


def test_long_texts_are_cut_and_say_where_the_whole_is(tmp_path: Path) -> None:
    item = TaskItem(id="long", prompt="x" * (TEXT_LIMIT + 10), expected="y")
    result = ItemResult(item_id="long", task="default", model="m", answer="z" * (TEXT_LIMIT + 1))
    report = BenchReport(
        created_at=dt.datetime.now(dt.UTC), tasks=["default"], items=1, repeats=1,
        reference=None, models=[], comparisons=[], results=[result],
    )  # fmt: skip
    write_html(report, tmp_path / "r.html", [item])
    html = (tmp_path / "r.html").read_text()
    assert "x" * TEXT_LIMIT + " … (cut; whole in report.json)" in html
    assert "x" * (TEXT_LIMIT + 1) not in html and "z" * (TEXT_LIMIT + 1) not in html


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    driver = chromium(700, 900)
    yield driver
    driver.quit()


def test_the_page_reads_at_700_px_and_its_filter_works(
    run: tuple[BenchReport, str], browser: webdriver.Chrome, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    page.write_text(run[1])
    open_at(browser, page, 700, screenshot_folder(tmp_path) / "bench-report-700px.png")
    assert shown(browser, "matrix") == f"{EASY + HARD} of {EASY + HARD} shown"
    search = browser.find_element(By.CSS_SELECTOR, 'form[data-target="matrix"] input[name="q"]')
    search.send_keys("hard one")
    assert shown(browser, "matrix") == f"{HARD} of {EASY + HARD} shown"
    search.clear()
    search.send_keys(Keys.BACKSPACE)  # `clear` alone fires no input event
    Select(browser.find_element(By.NAME, "flags")).select_by_value("wrong")
    assert shown(browser, "matrix") == f"{HARD} of {EASY + HARD} shown"
    Select(browser.find_element(By.NAME, "task")).select_by_visible_text("easy")
    assert shown(browser, "matrix") == f"0 of {EASY + HARD} shown"
    rows = browser.find_elements(By.CSS_SELECTOR, "tr[data-row]")
    assert len(rows) == EASY + HARD and not any(r.is_displayed() for r in rows)


def test_a_model_that_cost_nothing_sits_on_a_zero_tick_left_of_the_log_axis() -> None:
    rows = [
        ItemResult(item_id=str(i), task="t", model=model, answer="a", score=float(i % 2),
                   cost_nanos=cost)
        for i in range(4)
        for model, cost in (("free", 0), ("cheap", 1_000), ("dear", 1_000_000))
    ]  # fmt: skip
    names = ["free", "cheap", "dear"]
    report = summarise(
        rows,
        reference=None,
        price_dates=dict.fromkeys(names, None),
        currencies=dict.fromkeys(names, "EUR"),
        cost_basis={"free": "hardware", "cheap": "tokens", "dear": "tokens"},
        tasks=["t"],
        repeats=1,
    )
    svg = str(scatter_svg(report.models))
    ticks = re.findall(r'class="tick"[^>]*/><text[^>]*>([^<]+)</text>', svg)
    assert ticks[:4] == ["€0", "€0.000001", "€0.00001", "€0.0001"] and ticks[-1] == "€0.001"
    assert "log scale, EUR" in svg
    free = re.search(r"<title>free:[^<]*</title><line x1=\"([\d.]+)\"", svg)
    assert free is not None and float(free.group(1)) == LEFT
