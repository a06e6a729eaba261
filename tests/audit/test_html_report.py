"""The audit's HTML report and diff page from real runs on the censoring fake: zero excess reads
"0%" (never "-0%"), the heatmap has a colour legend, intervals use a spaced en dash and do not
wrap, the answers can be filtered by model, topic, verdict and language, and the diff highlights
what moved and can hide the rest."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from entrepot.audit.diff import diff_runs, write_diff_html
from entrepot.audit.report import print_report, write_html
from entrepot.audit.schema import AuditReport
from entrepot.audit.session import AuditRequest, run_audit
from entrepot.bench.runner import RunOptions
from tests.api.console.browser import chromium
from tests.audit.conftest import audit_config
from tests.bench.html_check import check_page, open_at, screenshot_folder, shown
from tests.conftest import UPSTREAM_KEY, Server

SIGNED_INTERVAL = re.compile(r'<span class="ci">\[(0|[+−]\d+)% – (0|[+−]\d+)%\]</span>')


@pytest.fixture(scope="module")
def audited(censoring: Server, tmp_path_factory: pytest.TempPathFactory) -> AuditReport:
    out = tmp_path_factory.mktemp("audit-html")
    request = AuditRequest(
        models=["oracle", "censor-cn"],
        packs=["cn"],
        languages=None,
        judge=None,
        options=RunOptions(out=out, concurrency=16),
    )
    with pytest.MonkeyPatch.context() as patch:  # the autouse key fixture is per test
        patch.setenv("FAKE_UPSTREAM_KEY", UPSTREAM_KEY)
        return run_audit(audit_config(censoring), request, Console(file=io.StringIO()))


@pytest.fixture(scope="module")
def html(audited: AuditReport, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("page") / "report.html"
    write_html(audited, path)
    return path.read_text()


def test_zero_reads_0_percent_and_the_heatmap_has_a_legend(html: str) -> None:
    check_page(html)  # no "-0%" anywhere, nothing loaded from outside
    heat = html[html.index('class="heat"') : html.index("</table>", html.index('class="heat"'))]
    oracle = heat[heat.index("<td>oracle</td>") :].split("</tr>")[0]
    assert oracle.count(">0%</td>") == oracle.count("<td style=") > 0
    assert ">+100%</td>" in heat  # censor-cn refuses a whole topic
    legend = html[html.index('id="heat-legend"') : html.index("</ul>", html.index("heat-legend"))]
    for value, colour in (("−100%", "rgb(0,0,255)"), ("0%", "rgb(255,255,255)")):
        assert f'background:{colour}"></span>{value}</li>' in legend
    assert "rgb(255,0,0)" in legend and "+100%" in legend


def test_intervals_use_an_en_dash_and_do_not_wrap(html: str) -> None:
    assert ".ci{white-space:nowrap}" in html
    signed = SIGNED_INTERVAL.findall(html)
    assert signed and ("−" in "".join(low for low, _ in signed))
    assert "…" not in html and not re.search(r"\d%-", html)
    assert re.search(r'<span class="ci">\[\d+%–\d+%\]</span>', html)  # plain rates, unspaced


def test_answers_are_filtered_by_model_topic_and_verdict(audited: AuditReport, html: str) -> None:
    page = check_page(html)
    answers = page.find("details")
    assert len(answers) == len(audited.results) > 100
    (form,) = page.find("form", data_target="answers")
    assert form["class"] == "filter"
    assert {s["name"] for s in page.find("select")} == {"model", "topic", "verdict", "language"}
    for attribute, values in (
        ("data-model", {"oracle", "censor-cn"}),
        ("data-verdict", {"answered", "refused", "deflected", "slanted"}),
        ("data-topic", {r.topic for r in audited.results}),
    ):
        assert {a[attribute] for a in answers} == values
    start = html.index('<select name="topic">')
    options = html[start : html.index("</select>", start)]
    assert all(f"<option>{t}</option>" in options for t in {r.topic for r in audited.results})
    assert "form.filter" in html[html.index("<script>") :]


def test_the_terminal_table_uses_the_same_formatter(audited: AuditReport) -> None:
    console = Console(file=io.StringIO(), width=400)
    print_report(audited, console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "-0%" not in text and "−0%" not in text and " – " in text and "…" not in text


def test_the_diff_highlights_changes_and_can_hide_the_rest(
    audited: AuditReport, tmp_path: Path
) -> None:
    diff = diff_runs(audited, audited, [("censor-cn", "oracle")])
    write_diff_html(diff, tmp_path / "diff.html")
    page = check_page((tmp_path / "diff.html").read_text())
    rows = [attrs for tag, attrs in page.tags if tag == "tr" and "data-row" in attrs]
    moved = [c for c in diff.cells if c.before.count != c.after.count]
    assert len(rows) == len(diff.cells) and 0 < len(moved) < len(rows)
    changed = [r for r in rows if r["data-change"] == "changed"]
    assert len(changed) == len(moved) and all(r["class"] == "changed" for r in changed)
    assert all("class" not in r for r in rows if r["data-change"] == "same")
    (toggle,) = page.find("input", type="checkbox")
    assert (toggle["name"], toggle["value"]) == ("change", "changed")
    assert page.find("form", data_target="rates")
    assert len(page.find("details")) == diff.changed_verdicts > 0


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    driver = chromium(700, 900)
    yield driver
    driver.quit()


def test_the_answers_filter_and_the_diff_toggle_work_in_a_browser(
    audited: AuditReport, html: str, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    shots = screenshot_folder(tmp_path)
    page = tmp_path / "report.html"
    page.write_text(html)
    open_at(browser, page, 700, shots / "audit-report-700px.png")
    total = len(audited.results)
    refused = sum(1 for r in audited.results if r.verdict == "refused")
    Select(browser.find_element(By.NAME, "verdict")).select_by_visible_text("refused")
    assert shown(browser, "answers") == f"{refused} of {total} shown" and 0 < refused < total
    Select(browser.find_element(By.NAME, "model")).select_by_visible_text("oracle")
    assert shown(browser, "answers") == f"0 of {total} shown"

    diff = diff_runs(audited, audited, [("censor-cn", "oracle")])
    write_diff_html(diff, tmp_path / "diff.html")
    open_at(browser, tmp_path / "diff.html", 700, shots / "audit-diff-700px.png")
    moved = sum(1 for c in diff.cells if c.before.count != c.after.count)
    assert shown(browser, "rates") == f"{len(diff.cells)} of {len(diff.cells)} shown"
    browser.find_element(By.CSS_SELECTOR, 'input[name="change"]').click()
    assert shown(browser, "rates") == f"{moved} of {len(diff.cells)} shown"
    rows = browser.find_elements(By.CSS_SELECTOR, "#rates tr[data-row]")
    assert [r.get_attribute("class") for r in rows if r.is_displayed()] == ["changed"] * moved
