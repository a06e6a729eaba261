"""From classified answers to the audit report: rates with 95% intervals per model × jurisdiction
× topic × language, the same rates on the pack's control questions, and their difference — the
part of a model's refusals that its topic, not its general caution, explains.

Rendered as a terminal table, versioned JSON and one self-contained HTML file (a heatmap as a
coloured table with its legend, every answer behind a fold, filtered by model, topic and verdict
with a small inline script; no external assets).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from entrepot.audit.judge import RUBRIC, RUBRIC_VERSION
from entrepot.audit.schema import (
    VERDICTS,
    Agreement,
    AuditReport,
    Cell,
    ControlCell,
    ModelInfo,
    Pack,
    PackInfo,
    ProbeResult,
    Rate,
    Verdict,
)
from entrepot.bench.html import environment
from entrepot.bench.stats import cohen_kappa, rate_difference, wilson
from entrepot.ledger.display import count, money, percent, percent_interval, signed_percent
from entrepot.listing import Column, Listing, Row, show

NANOS = 1e9
ALL_TOPICS = "all"
TEMPLATES = environment("entrepot.audit")
HEAT_LEGEND = (-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0)


def rate(count: int, n: int) -> Rate:
    return Rate(count=count, n=n, **wilson(count, n).model_dump())


def rates_of(results: Iterable[ProbeResult]) -> tuple[dict[Verdict, Rate], int, int]:
    """(rate per verdict, answers classified, errors) for a group of results."""
    classified, errors = [], 0
    for result in results:
        if result.refused_by_policy is not None:
            continue
        if result.verdict is None:
            errors += 1
        else:
            classified.append(result.verdict)
    n = len(classified)
    return {v: rate(classified.count(v), n) for v in VERDICTS}, n, errors


def _cell(
    key: tuple[str, str, str, str, str],
    group: list[ProbeResult],
    control: dict[Verdict, Rate] | None,
) -> Cell:
    model, pack, jurisdiction, topic, language = key
    rates, n, errors = rates_of(group)
    excess = {}
    for verdict, share in rates.items():
        base = control[verdict] if control else rate(0, 0)
        excess[verdict] = rate_difference((share.count, share.n), (base.count, base.n))
    return Cell(
        model=model,
        pack=pack,
        jurisdiction=jurisdiction,
        topic=topic,
        language=language,
        n=n,
        errors=errors,
        rates=rates,
        excess=excess,
    )


def agreement(results: list[ProbeResult], judge: str) -> Agreement:
    """Rules against judge over the answers both classified; judge failures and unparsed
    replies are counted, not silently dropped."""
    asked = [r for r in results if r.judge_verdict is not None or r.judge_detail is not None]
    both = [(r.rule_verdict, r.judge_verdict) for r in asked if r.rule_verdict and r.judge_verdict]
    confusion: dict[str, dict[str, int]] = {v: dict.fromkeys(VERDICTS, 0) for v in VERDICTS}
    for rule, judged in both:
        confusion[rule][judged] += 1
    same = sum(1 for rule, judged in both if rule == judged)
    return Agreement(
        judge=judge,
        rubric_version=RUBRIC_VERSION,
        n=len(both),
        agreement=rate(same, len(both)),
        kappa=cohen_kappa([(str(a), str(b)) for a, b in both]),
        confusion=confusion,
        judge_cost=sum(r.judge_cost_nanos for r in results) / NANOS,
        unparsed=len(asked) - len(both),
    )


def summarise(
    results: list[ProbeResult],
    packs: list[Pack],
    models: list[ModelInfo],
    judge: str | None = None,
) -> AuditReport:
    probes: dict[tuple[str, str, str, str, str], list[ProbeResult]] = defaultdict(list)
    by_pack: dict[tuple[str, str, str, str, str], list[ProbeResult]] = defaultdict(list)
    controls: dict[tuple[str, str, str], list[ProbeResult]] = defaultdict(list)
    for r in results:
        if r.control:
            controls[(r.model, r.pack, r.language)].append(r)
        else:
            probes[(r.model, r.pack, r.jurisdiction, r.topic, r.language)].append(r)
            by_pack[(r.model, r.pack, r.jurisdiction, ALL_TOPICS, r.language)].append(r)
    control_cells = []
    control_rates: dict[tuple[str, str, str], dict[Verdict, Rate]] = {}
    for key, group in controls.items():
        rates, n, errors = rates_of(group)
        control_rates[key] = rates
        model, pack, language = key
        control_cells.append(
            ControlCell(model=model, pack=pack, language=language, n=n, errors=errors, rates=rates)
        )

    def cells(groups: dict[tuple[str, str, str, str, str], list[ProbeResult]]) -> list[Cell]:
        return [
            _cell(key, group, control_rates.get((key[0], key[1], key[4])))
            for key, group in groups.items()
        ]

    languages = list(dict.fromkeys(r.language for r in results))
    used = {r.pack for r in results}
    return AuditReport(
        created_at=dt.datetime.now(dt.UTC),
        packs=[_pack_info(p, languages) for p in packs if p.name in used],
        languages=languages,
        models=models,
        cells=cells(probes),
        jurisdictions=cells(by_pack),
        controls=control_cells,
        agreement=agreement(results, judge) if judge else None,
        results=results,
    )


def _pack_info(pack: Pack, languages: list[str]) -> PackInfo:
    return PackInfo(
        name=pack.name,
        version=pack.version,
        jurisdiction=pack.jurisdiction,
        title=pack.title,
        languages=[lang for lang in pack.languages if lang in languages],
        topics=[t.id for t in pack.topics],
        probes=sum(len(t.probes) for t in pack.topics),
        controls=len(pack.controls),
    )


def not_answered_excess(cell: Cell) -> float:
    """The heatmap's value: how much more often than on controls the model did not answer."""
    return -cell.excess["answered"].estimate


def _shown(row: Row, verdict: Verdict) -> str:
    rate, extra = row["rates"][verdict], row["excess"][verdict]
    return (
        f"{percent(rate['estimate'])} {percent_interval(rate['low'], rate['high'])}"
        f" {signed_percent(extra['estimate'])}"
        f" {percent_interval(extra['low'], extra['high'], signed=True)}"
    )


def cells_listing(report: AuditReport) -> Listing:
    """Each model × pack × topic × language: rates and excess over controls, hotter in red."""
    cells = sorted(report.cells + report.jurisdictions, key=_order)
    return Listing(
        [
            Column("model", lambda r: r["model"]),
            Column("pack", lambda r: r["pack"]),
            Column("topic", lambda r: r["topic"]),
            Column("lang", lambda r: r["language"]),
            Column("n", lambda r: count(r["n"]), numeric=True),
            Column("err", lambda r: count(r["errors"]), numeric=True),
            *(Column(f"{v} · excess", partial(_shown, verdict=v), numeric=True)
              for v in ("refused", "deflected", "slanted")),
        ],
        title="Rate [95% CI] and excess over the pack's controls [95% CI]",
        rows=[{**c.model_dump(mode="json"), "heat": not_answered_excess(c)} for c in cells],
        style=_heat_style,
    )  # fmt: skip


def _heat_style(row: Row) -> str:
    heat = row["heat"]
    return "bold red" if heat >= 0.5 else "red" if heat >= 0.2 else "yellow" if heat >= 0.1 else ""


def controls_listing(report: AuditReport) -> Listing:
    """The control questions' rates: the baseline the cells' excess is measured against."""
    return Listing(
        [
            Column("model", lambda r: r["model"]),
            Column("pack", lambda r: r["pack"]),
            Column("lang", lambda r: r["language"]),
            Column("n", lambda r: count(r["n"]), numeric=True),
            *(Column(v, partial(_rate, verdict=v), numeric=True)
              for v in ("refused", "deflected", "slanted", "answered")),
        ],
        title="Control questions (the baseline subtracted above)",
        rows=[c.model_dump(mode="json") for c in report.controls],
    )  # fmt: skip


def _rate(row: Row, verdict: str) -> str:
    rate = row["rates"][verdict]
    return f"{percent(rate['estimate'])} {percent_interval(rate['low'], rate['high'])}"


def _order(cell: Cell) -> tuple[str, str, str, bool, str]:
    return (cell.model, cell.pack, cell.language, cell.topic == ALL_TOPICS, cell.topic)


def print_report(report: AuditReport, console: Console) -> None:
    show(cells_listing(report), console)
    show(controls_listing(report), console)
    for model in report.models:
        dated = f"prices of {model.price_date}" if model.price_date else "prices undated"
        console.print(
            f"• {model.alias} ({model.provider} at {model.host}, processed in"
            f" {model.jurisdiction}): run cost {money(model.total_cost, model.currency)}"
            f" ({model.cost_basis}, {dated})"
        )
    for alias, (refused, why) in policy_refusals(report.results).items():
        console.print(
            f"[yellow]{alias}: {count(refused)} probe(s) refused by policy, not classified:"
            f"[/yellow] {escape(why)}"
        )
    if report.agreement is not None:
        a = report.agreement
        kappa = f"{a.kappa:.2f}" if a.kappa is not None else "undefined"
        console.print(
            f"• rules and judge {a.judge} (rubric v{a.rubric_version}) agree on"
            f" {percent(a.agreement.estimate)}"
            f" {percent_interval(a.agreement.low, a.agreement.high)} of"
            f" {a.n} answers, Cohen's κ {kappa}; {a.unparsed} judge replies unusable;"
            f" judge cost {money(a.judge_cost)}"
        )


def policy_refusals(results: list[ProbeResult]) -> dict[str, tuple[int, str]]:
    """Per model, how many calls the gateway's policy refused and its most frequent reason:
    no model saw those questions, so they are neither a finding nor a model's error."""
    found: dict[str, Counter[str]] = defaultdict(Counter)
    for result in results:
        if result.refused_by_policy is not None:
            found[result.model][result.refused_by_policy] += 1
    return {
        model: (reasons.total(), reasons.most_common(1)[0][0]) for model, reasons in found.items()
    }


def _colour(value: float) -> str:
    """White at no excess, deepening red towards +100%; blue where controls fared worse."""
    value = max(-1.0, min(1.0, value))
    fade = round(255 * (1 - abs(value)))
    return f"rgb(255,{fade},{fade})" if value >= 0 else f"rgb({fade},{fade},255)"


def write_html(report: AuditReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = sorted(report.cells + report.jurisdictions, key=_order)
    columns = list(dict.fromkeys((c.pack, c.topic, c.language) for c in cells))
    heat: dict[str, dict[tuple[str, str, str], Cell]] = defaultdict(dict)
    for cell in cells:
        heat[cell.model][(cell.pack, cell.topic, cell.language)] = cell
    path.write_text(
        TEMPLATES.get_template("audit_report.html.j2").render(
            r=report,
            cells=cells,
            columns=columns,
            heat=heat,
            excess=not_answered_excess,
            colour=_colour,
            legend=HEAT_LEGEND,
            topics=sorted({r.topic for r in report.results}),
            shown=("refused", "deflected", "slanted"),
            verdicts=VERDICTS,
            rubric=RUBRIC,
        )
    )
