"""From classified answers to the audit report: rates with 95% intervals per model × jurisdiction
× topic × language, the same rates on the pack's control questions, and their difference — the
part of a model's refusals that its topic, not its general caution, explains.

Rendered as a terminal table, versioned JSON and one self-contained HTML file (a heatmap as a
coloured table, every answer behind a fold; no scripts, no external assets).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from markupsafe import Markup
from rich.console import Console
from rich.table import Table

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
from entrepot.bench.report import STYLE, TEMPLATES
from entrepot.bench.stats import cohen_kappa, rate_difference, wilson

NANOS = 1e9
ALL_TOPICS = "all"


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


def _shown(cell: Cell, verdict: Verdict) -> str:
    rate, extra = cell.rates[verdict], cell.excess[verdict]
    return (
        f"{rate.estimate:.0%} [{rate.low:.0%}–{rate.high:.0%}]"
        f" {extra.estimate:+.0%} [{extra.low:+.0%}…{extra.high:+.0%}]"
    )


def render_table(report: AuditReport) -> Table:
    table = Table(
        "model", "pack", "topic", "lang", "n", "err",
        "refused · excess", "deflected · excess", "slanted · excess",
        title="Rate [95% CI] and excess over the pack's controls [95% CI]",
    )  # fmt: skip
    for cell in sorted(report.cells + report.jurisdictions, key=_order):
        heat = not_answered_excess(cell)
        style = (
            "bold red" if heat >= 0.5 else "red" if heat >= 0.2 else "yellow" if heat >= 0.1 else ""
        )
        table.add_row(
            cell.model,
            cell.pack,
            cell.topic,
            cell.language,
            str(cell.n),
            str(cell.errors),
            *(_shown(cell, v) for v in ("refused", "deflected", "slanted")),
            style=style,
        )
    return table


def _order(cell: Cell) -> tuple[str, str, str, bool, str]:
    return (cell.model, cell.pack, cell.language, cell.topic == ALL_TOPICS, cell.topic)


def print_report(report: AuditReport, console: Console) -> None:
    console.print(render_table(report))
    controls = Table("model", "pack", "lang", "n", "refused", "deflected", "slanted", "answered")
    for c in report.controls:
        controls.add_row(
            c.model,
            c.pack,
            c.language,
            str(c.n),
            *(f"{c.rates[v].estimate:.0%} [{c.rates[v].low:.0%}–{c.rates[v].high:.0%}]"
              for v in ("refused", "deflected", "slanted", "answered")),
        )  # fmt: skip
    controls.title = "Control questions (the baseline subtracted above)"
    console.print(controls)
    for model in report.models:
        dated = f"prices of {model.price_date}" if model.price_date else "prices undated"
        console.print(
            f"• {model.alias} ({model.provider} at {model.host}, processed in"
            f" {model.jurisdiction}): run cost {model.total_cost:.6f} {model.currency}"
            f" ({model.cost_basis}, {dated})"
        )
    if report.agreement is not None:
        a = report.agreement
        kappa = f"{a.kappa:.2f}" if a.kappa is not None else "undefined"
        console.print(
            f"• rules and judge {a.judge} (rubric v{a.rubric_version}) agree on"
            f" {a.agreement.estimate:.0%} [{a.agreement.low:.0%}–{a.agreement.high:.0%}] of"
            f" {a.n} answers, Cohen's κ {kappa}; {a.unparsed} judge replies unusable;"
            f" judge cost {a.judge_cost:.6f}"
        )


HTML = TEMPLATES.from_string(
    """<!doctype html><html><head><meta charset="utf-8"><title>Entrepôt audit</title>{{ style }}
<style>.heat td{text-align:center;min-width:5em}details{margin:.2em 0}
.answer{white-space:pre-wrap;background:#f6f6f6;padding:.4em;margin:.2em 0 .6em}</style>
</head><body><h1>Audit report</h1>
<p>Created {{ r.created_at.strftime("%Y-%m-%d %H:%M UTC") }} · report format v{{ r.version }} ·
languages {{ r.languages|join(", ") }}. Rates are shares of classified answers with 95% Wilson
intervals; <em>excess</em> is the rate minus the same model's rate on the pack's control
questions (95% Newcombe interval), so a model cautious about everything shows no excess.</p>
<h2>Packs</h2><table><tr><th>pack</th><th>jurisdiction</th><th>version</th><th>topics</th>
<th>probes</th><th>controls</th></tr>{% for p in r.packs %}<tr><td>{{ p.name }} — {{ p.title }}</td>
<td>{{ p.jurisdiction }}</td><td>{{ p.version }}</td><td>{{ p.topics|join(", ") }}</td>
<td>{{ p.probes }}</td><td>{{ p.controls }}</td></tr>{% endfor %}</table>
<h2>Models and hosts</h2><table><tr><th>model</th><th>provider</th><th>host</th>
<th>processed in</th><th>run cost</th><th>price date</th></tr>{% for m in r.models %}<tr>
<td>{{ m.alias }}</td><td>{{ m.provider }}</td><td>{{ m.host }}</td><td>{{ m.jurisdiction }}</td>
<td>{{ "%.6f"|format(m.total_cost) }} {{ m.currency }} ({{ m.cost_basis }})</td>
<td>{{ m.price_date or "undated" }}</td></tr>{% endfor %}</table>
<h2>Heatmap: excess of answers not given (refused + deflected + slanted) over controls</h2>
<table class="heat"><tr><th>model</th>{% for c in columns %}<th>{{ c[0] }}<br>{{ c[1] }}
<br>{{ c[2] }}</th>{% endfor %}</tr>{% for model in heat %}<tr><td>{{ model }}</td>
{% for c in columns %}{% set cell = heat[model].get(c) %}{% if cell %}
<td style="background:{{ colour(cell) }}" title="n={{ cell.n }}">{{ "%+.0f"|format(
-100 * cell.excess.answered.estimate) }}%</td>{% else %}<td>—</td>{% endif %}{% endfor %}</tr>
{% endfor %}</table>
<h2>Rates by topic</h2><table><tr><th>model</th><th>pack</th><th>topic</th><th>lang</th>
<th>n</th><th>errors</th>{% for v in shown %}<th>{{ v }}</th><th>excess</th>{% endfor %}</tr>
{% for c in cells %}<tr><td>{{ c.model }}</td><td>{{ c.pack }}</td><td>{{ c.topic }}</td>
<td>{{ c.language }}</td><td>{{ c.n }}</td><td>{{ c.errors }}</td>{% for v in shown %}
<td>{{ pct(c.rates[v].estimate) }} [{{ pct(c.rates[v].low) }}–{{ pct(c.rates[v].high) }}]</td>
<td>{{ signed(c.excess[v].estimate) }} [{{ signed(c.excess[v].low) }}…{{
signed(c.excess[v].high) }}]</td>{% endfor %}</tr>{% endfor %}</table>
<h2>Controls</h2><table><tr><th>model</th><th>pack</th><th>lang</th><th>n</th>
{% for v in verdicts %}<th>{{ v }}</th>{% endfor %}</tr>{% for c in r.controls %}<tr>
<td>{{ c.model }}</td><td>{{ c.pack }}</td><td>{{ c.language }}</td><td>{{ c.n }}</td>
{% for v in verdicts %}<td>{{ pct(c.rates[v].estimate) }} [{{ pct(c.rates[v].low) }}–{{
pct(c.rates[v].high) }}]</td>{% endfor %}</tr>{% endfor %}</table>
{% if r.agreement %}{% set a = r.agreement %}<h2>Rules and judge</h2>
<p>Judge {{ a.judge }}, rubric v{{ a.rubric_version }}: agreement {{ pct(a.agreement.estimate) }}
[{{ pct(a.agreement.low) }}–{{ pct(a.agreement.high) }}] on {{ a.n }} answers; Cohen's κ
{{ "%.2f"|format(a.kappa) if a.kappa is not none else "undefined" }}; {{ a.unparsed }} unusable
judge replies; judge cost {{ "%.6f"|format(a.judge_cost) }}.</p>
<table><tr><th>rules ↓ judge →</th>{% for v in verdicts %}<th>{{ v }}</th>{% endfor %}</tr>
{% for v in verdicts %}<tr><td>{{ v }}</td>{% for w in verdicts %}<td>{{ a.confusion[v][w] }}
</td>{% endfor %}</tr>{% endfor %}</table><pre>{{ rubric }}</pre>{% endif %}
<h2>Answers</h2>{% for x in r.results %}<details><summary>{{ x.model }} · {{ x.pack }}/{{
x.topic }}/{{ x.probe }} ({{ x.language }}): <b>{{ x.verdict or "error" }}</b></summary>
<p>{{ x.question }}</p><div class="answer">{{ x.answer or x.error or "" }}</div>
<p>rules: {{ x.rule_verdict }} — {{ x.rule_detail }}{% if x.judge_verdict or x.judge_detail %};
judge: {{ x.judge_verdict }} — {{ x.judge_detail }}{% endif %}</p></details>{% endfor %}
</body></html>"""
)


def _colour(cell: Cell) -> str:
    """White at no excess, deepening red towards 100%; blue where controls fared worse."""
    value = max(-1.0, min(1.0, not_answered_excess(cell)))
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
        HTML.render(
            r=report,
            style=Markup(STYLE),
            cells=cells,
            columns=columns,
            heat=heat,
            colour=_colour,
            shown=("refused", "deflected", "slanted"),
            verdicts=VERDICTS,
            rubric=RUBRIC,
            pct=lambda x: f"{x:.0%}",
            signed=lambda x: f"{x:+.0%}",
        )
    )
