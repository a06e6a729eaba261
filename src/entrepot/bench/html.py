"""The HTML reports: one self-contained file each, opened offline from a mail attachment.

Style, charts (inline SVG) and the small filtering script are written into the page; nothing is
loaded from anywhere. The templates live in `templates/` beside this module (the audit adds its
own folder and shares the style and the script), with the number formatters of
`entrepot.ledger.display` as filters, so the reports and the terminal write figures alike.

The bench report's matrix has one row per item: its prompt and expected answer, then each
model's answer with its score (mean over repeats) or its error. Texts longer than `TEXT_LIMIT`
are cut in the page (report.json has them whole), which keeps a run of 1,000 items on five
models to a few megabytes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jinja2
from markupsafe import Markup

from entrepot.bench.charts import colours, scatter_svg, task_bars_svg
from entrepot.bench.schema import BenchReport, ItemResult, TaskItem
from entrepot.ledger.display import count, money, percent, percent_interval, signed_percent

TEXT_LIMIT = 1500


def environment(*packages: str) -> jinja2.Environment:
    """Templates of `packages` (searched first), then the bench's shared ones, with the
    number formatters as filters."""
    loaders = [jinja2.PackageLoader(p, "templates") for p in (*packages, "entrepot.bench")]
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True)
    env.filters.update(
        money=money,
        count=count,
        percent=percent,
        signed=signed_percent,
        interval=percent_interval,
        css_string=css_string,
    )
    return env


def css_string(text: str) -> Markup:
    """`text` as a CSS string literal that cannot close its quote or the style element."""
    safe = "".join(c if c.isalnum() or c in " -_.,:/" else f"\\{ord(c):x} " for c in text)
    return Markup(f'"{safe}"')


TEMPLATES = environment()


@dataclass(frozen=True, slots=True)
class Answer:
    """One model's answer to one item (the first repeat's text; the score over all repeats)."""

    text: str
    score: float | None
    error: str | None
    refused: str | None

    @property
    def grade(self) -> str:
        """The cell's class: right, wrong, partly right, failed or refused."""
        if self.error or self.refused:
            return "err"
        if self.score is None:
            return ""
        return "good" if self.score >= 0.999 else "bad" if self.score <= 0.001 else "part"


@dataclass(frozen=True, slots=True)
class Row:
    item_id: str
    task: str
    prompt: str
    expected: str
    answers: list[Answer | None]
    flags: str


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + " … (cut; whole in report.json)"


def _prompt(item: TaskItem) -> str:
    users = [m.get("content") for m in item.chat_messages() if m.get("role") == "user"]
    content = users[-1] if users else item.chat_messages()[-1].get("content")
    return _cut(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False))


def _expected(item: TaskItem) -> str:
    if item.expected is None:
        return item.grader.pattern or item.grader.rubric or "—"
    value = item.expected
    return _cut(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))


def _answer(results: list[ItemResult]) -> Answer:
    scores = [r.score for r in results if r.score is not None]
    first = results[0]
    return Answer(
        text=_cut(first.answer or ""),
        score=sum(scores) / len(scores) if scores else None,
        error=first.error,
        refused=first.refused_by_policy,
    )


def matrix(report: BenchReport, items: Iterable[TaskItem]) -> list[Row]:
    """One row per item, in the tasks' order, with what the filter selects on as `flags`."""
    known = {item.id: item for item in items}
    grouped: dict[str, dict[str, list[ItemResult]]] = defaultdict(lambda: defaultdict(list))
    for result in report.results:
        grouped[result.item_id][result.model].append(result)
    rows = []
    for item_id, by_model in grouped.items():
        answers = [
            _answer(by_model[m.model]) if m.model in by_model else None for m in report.models
        ]
        given = [a for a in answers if a is not None]
        scores = {a.score for a in given if a.score is not None}
        flags = {
            "error": any(a.error or a.refused for a in given),
            "wrong": any(s < 0.999 for s in scores),
            "disagree": len(scores) > 1,
        }
        item = known.get(item_id)
        rows.append(
            Row(
                item_id=item_id,
                task=next(iter(by_model.values()))[0].task,
                prompt=_prompt(item) if item else "—",
                expected=_expected(item) if item else "—",
                answers=answers,
                flags=" ".join(name for name, on in flags.items() if on),
            )
        )
    return rows


def write_html(report: BenchReport, path: Path, items: Iterable[TaskItem] = ()) -> None:
    """The report page; `items` give the matrix its prompts and expected answers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page = TEMPLATES.get_template("bench_report.html.j2")
    path.write_text(
        page.render(
            r=report,
            rows=matrix(report, items),
            colours=colours(report.models),
            scatter=scatter_svg(report.models),
            bars=task_bars_svg(report.models),
        )
    )
