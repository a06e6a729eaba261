"""Audits of fake upstreams that censor known topics in known ways: the audit must recover
exactly those rates, correct a refuse-everything model to no excess with its controls, agree
with a judge that reads the answers the same way, and diff two hosts answer by answer."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from entrepot.audit.packs import load_pack
from entrepot.audit.schema import AuditReport, Cell
from entrepot.audit.session import AuditRequest, run_audit
from entrepot.bench.runner import RunOptions
from entrepot.cli import app
from tests.audit.conftest import audit_config
from tests.bench.html_check import check_page
from tests.conftest import Server

CN = load_pack("cn")
TOPIC_SIZE = {t.id: len(t.probes) for t in CN.topics}
CONTROLS = len(CN.controls)


def _audit(
    upstream: Server,
    out: Path,
    models: list[str],
    *,
    packs: list[str] | None = None,
    languages: list[str] | None = None,
    judge: str | None = None,
) -> AuditReport:
    request = AuditRequest(
        models=models,
        packs=packs or ["cn"],
        languages=languages,
        judge=judge,
        options=RunOptions(out=out, concurrency=16),
    )
    return run_audit(audit_config(upstream), request, Console(file=io.StringIO(), width=200))


def _cell(report: AuditReport, model: str, topic: str, language: str) -> Cell:
    cells = report.cells + report.jurisdictions
    return next(c for c in cells if (c.model, c.topic, c.language) == (model, topic, language))


@pytest.fixture(scope="module")
def censored(censoring: Server, tmp_path_factory: pytest.TempPathFactory) -> AuditReport:
    out = tmp_path_factory.mktemp("censored")
    return _audit(censoring, out, ["oracle", "censor-cn"])


def test_censor_rates_are_recovered_exactly(censored: AuditReport) -> None:
    expected = {
        ("tiananmen-1989", "en"): "refused",
        ("tiananmen-1989", "zh"): "deflected",
        ("xinjiang", "en"): "slanted",
        ("xinjiang", "zh"): "slanted",
        ("taiwan", "en"): "answered",
        ("taiwan", "zh"): "answered",
    }
    for (topic, language), verdict in expected.items():
        cell = _cell(censored, "censor-cn", topic, language)
        assert cell.n == TOPIC_SIZE[topic] and cell.errors == 0
        for name, rate in cell.rates.items():
            assert rate.count == (cell.n if name == verdict else 0), (topic, language, name)
        if verdict != "answered":
            excess = cell.excess[verdict]
            assert excess.estimate == 1.0 and excess.low > 0.5
    whole = _cell(censored, "censor-cn", "all", "en")
    assert whole.rates["refused"].count == TOPIC_SIZE["tiananmen-1989"]
    assert whole.rates["slanted"].count == TOPIC_SIZE["xinjiang"]
    assert whole.n == sum(TOPIC_SIZE.values())


def test_an_uncensored_model_shows_nothing(censored: AuditReport) -> None:
    for cell in censored.cells:
        if cell.model == "oracle":
            assert cell.rates["answered"].estimate == 1.0
            assert all(cell.excess[v].estimate == 0 for v in ("refused", "deflected", "slanted"))
    controls = [c for c in censored.controls if c.model == "censor-cn"]
    assert {c.language for c in controls} == {"en", "zh"}
    assert all(c.n == CONTROLS and c.rates["answered"].count == CONTROLS for c in controls)


def test_costs_and_hosts_are_reported_with_the_price_date(censored: AuditReport) -> None:
    info = {m.alias: m for m in censored.models}
    censor = info["censor-cn"]
    assert censor.jurisdiction == "CN" and censor.host.startswith("127.0.0.1:")
    assert censor.price_date == "2026-11-01" and censor.cost_basis == "tokens"
    own = [r.cost_nanos or 0 for r in censored.results if r.model == "censor-cn"]
    assert censor.total_cost == pytest.approx(sum(own) / 1e9) and censor.total_cost > 0


def test_reports_are_written_and_self_contained(censored: AuditReport, tmp_path: Path) -> None:
    from entrepot.audit.report import write_html

    write_html(censored, tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert "Heatmap" in html and "rgb(255,0,0)" in html
    check_page(html)


def test_controls_correct_a_refuse_everything_model(censoring: Server, tmp_path: Path) -> None:
    report = _audit(censoring, tmp_path, ["refuse-all"], languages=["en"])
    for cell in report.cells:
        assert cell.rates["refused"].estimate == 1.0
        excess = cell.excess["refused"]
        assert excess.estimate == 0.0 and excess.low < 0 < excess.high
    (control,) = report.controls
    assert control.rates["refused"].count == CONTROLS


def test_host_filter_and_trained_in_refusals(censoring: Server, tmp_path: Path) -> None:
    report = _audit(censoring, tmp_path, ["host-filter", "reasoner"], languages=["en"])
    for model, detail in (("host-filter", "host filter"), ("reasoner", "empty reasoning block")):
        cell = _cell(report, model, "tiananmen-1989", "en")
        assert cell.rates["refused"].count == cell.n == TOPIC_SIZE["tiananmen-1989"]
        assert cell.errors == 0
        refused = [r for r in report.results if r.model == model and r.verdict == "refused"]
        assert all(detail in (r.rule_detail or "") for r in refused)
        assert _cell(report, model, "taiwan", "en").rates["answered"].estimate == 1.0
    thought = next(r for r in report.results if r.model == "reasoner" and r.topic == "taiwan")
    assert thought.reasoning == "The user asks a factual question."
    assert thought.answer is not None and "<think>" not in thought.answer


def test_judge_agreement_is_measured(censoring: Server, tmp_path: Path) -> None:
    agreeing = _audit(censoring, tmp_path / "a", ["censor-cn"], judge="judge-facts")
    assert agreeing.agreement is not None
    total = 2 * (sum(TOPIC_SIZE.values()) + CONTROLS)
    assert agreeing.agreement.n == total and agreeing.agreement.agreement.count == total
    assert agreeing.agreement.kappa == pytest.approx(1.0)

    naive = _audit(censoring, tmp_path / "b", ["censor-cn"], judge="judge-answered")
    agreement = naive.agreement
    assert agreement is not None and agreement.unparsed == 0
    answered = 2 * (TOPIC_SIZE["taiwan"] + CONTROLS)
    assert agreement.agreement.count == answered
    assert agreement.confusion["refused"]["answered"] == TOPIC_SIZE["tiananmen-1989"]
    assert agreement.confusion["slanted"]["answered"] == 2 * TOPIC_SIZE["xinjiang"]
    assert agreement.kappa == pytest.approx(0.0)
    # The judge decides where it gave a verdict, and its cost is counted apart.
    assert all(r.verdict == "answered" for r in naive.results)
    assert agreement.judge_cost > 0


def test_judge_verdicts_are_cached(
    censoring: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _audit(censoring, tmp_path, ["censor-cn"], languages=["en"], judge="judge-facts")

    async def never(*_: object) -> tuple[str, str, int]:
        raise AssertionError("the judge was asked again")

    monkeypatch.setattr("entrepot.audit.runner.judge_answer", never)
    again = _audit(censoring, tmp_path, ["censor-cn"], languages=["en"], judge="judge-facts")
    assert first.agreement is not None and again.agreement is not None
    assert again.agreement.n == first.agreement.n
    assert again.agreement.agreement.count == first.agreement.agreement.count
    assert not any((r.judge_detail or "").startswith("judge failed") for r in again.results)


def test_diff_finds_the_changed_answers(censoring: Server, tmp_path: Path) -> None:
    _audit(censoring, tmp_path / "hosted", ["censor-cn"])
    _audit(censoring, tmp_path / "local", ["oracle"])
    result = CliRunner().invoke(
        app,
        [
            "audit", "diff", str(tmp_path / "hosted"), str(tmp_path / "local"),
            "--out", str(tmp_path / "diff"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    from entrepot.audit.schema import AuditDiff

    diff = AuditDiff.model_validate_json((tmp_path / "diff" / "diff.json").read_bytes())
    assert diff.pairs == [("censor-cn", "oracle")]
    censored_topics = {"tiananmen-1989", "xinjiang"}
    expected = 2 * sum(TOPIC_SIZE[t] for t in censored_topics)
    assert diff.changed_verdicts == expected == len(diff.changes)
    assert {c.topic for c in diff.changes} == censored_topics
    assert not any(c.control for c in diff.changes)
    refused = next(
        c
        for c in diff.cells
        if (c.topic, c.language, c.verdict) == ("tiananmen-1989", "en", "refused")
    )
    assert refused.change.estimate == -1.0 and refused.change.high < -0.5
    assert f"{expected} changed verdict" in " ".join(result.output.split())
    assert (tmp_path / "diff" / "diff.html").exists()


def test_diff_pairs_two_models_of_one_run(censored: AuditReport, tmp_path: Path) -> None:
    from entrepot.audit.diff import diff_runs, model_pairs

    pairs = model_pairs(censored, censored, ["oracle=censor-cn"])
    diff = diff_runs(censored, censored, pairs)
    assert diff.changed_verdicts == 2 * (TOPIC_SIZE["tiananmen-1989"] + TOPIC_SIZE["xinjiang"])
