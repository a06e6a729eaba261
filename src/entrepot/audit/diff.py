"""`entrepot audit diff`: two runs compared answer by answer.

The two sides are two hosts of the same weights (a hosted API against the same model served
here) or one model over time. Models are paired by alias when both runs have the same ones, by
position when each run has one, or explicitly (`--pair hosted=local`, which also compares two
models of the same run). For each pair the diff lists every probe whose verdict changed, counts
answers whose text changed at all, and gives each topic's rate change with a 95% interval.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console

from entrepot.audit.report import TEMPLATES, rates_of
from entrepot.audit.schema import (
    CENSORED,
    AuditDiff,
    AuditReport,
    CellChange,
    ChangedAnswer,
    ProbeResult,
)
from entrepot.bench.stats import rate_difference
from entrepot.exceptions import ConfigError
from entrepot.ledger.display import percent_interval, signed_percent
from entrepot.listing import Column, Listing, Row, show


def load_run(path: Path) -> AuditReport:
    """A run's report, from its folder or its `report.json`."""
    file = path / "report.json" if path.is_dir() else path
    try:
        return AuditReport.model_validate_json(file.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"no audit report at {file}") from None
    except ValidationError as exc:
        raise ConfigError(f"{file} is not an audit report: {exc.errors()[0]['msg']}") from None


def model_pairs(
    before: AuditReport, after: AuditReport, pairs: list[str] | None = None
) -> list[tuple[str, str]]:
    first = [m.alias for m in before.models]
    second = [m.alias for m in after.models]
    if pairs:
        chosen = []
        for pair in pairs:
            left, sep, right = pair.partition("=")
            if not sep or left not in first or right not in second:
                raise ConfigError(
                    f"--pair {pair!r}: expected BEFORE=AFTER with BEFORE in {first}"
                    f" and AFTER in {second}"
                )
            chosen.append((left, right))
        return chosen
    shared = [alias for alias in first if alias in second]
    if shared:
        return [(alias, alias) for alias in shared]
    if len(first) == 1 and len(second) == 1:
        return [(first[0], second[0])]
    raise ConfigError("the runs share no model alias; name the pairs with --pair BEFORE=AFTER")


Key = tuple[str, str, str]  # pack, probe, language


def _index(report: AuditReport, model: str) -> dict[Key, ProbeResult]:
    return {(r.pack, r.probe, r.language): r for r in report.results if r.model == model}


def diff_runs(
    before: AuditReport,
    after: AuditReport,
    pairs: list[tuple[str, str]],
    names: tuple[str, str] = ("before", "after"),
) -> AuditDiff:
    changes, cells = [], []
    compared = changed_text = 0
    for left, right in pairs:
        old, new = _index(before, left), _index(after, right)
        shared = [key for key in old if key in new]
        compared += len(shared)
        groups: dict[tuple[str, str, str], list[Key]] = defaultdict(list)
        for key in shared:
            a, b = old[key], new[key]
            groups[(a.pack, a.topic, a.language)].append(key)
            if (a.answer or a.error) != (b.answer or b.error):
                changed_text += 1
            if a.verdict != b.verdict:
                changes.append(
                    ChangedAnswer(
                        before_model=left,
                        after_model=right,
                        pack=a.pack,
                        topic=a.topic,
                        probe=a.probe,
                        language=a.language,
                        control=a.control,
                        question=a.question,
                        before=a.verdict,
                        after=b.verdict,
                        before_answer=a.answer or a.error,
                        after_answer=b.answer or b.error,
                    )
                )
        for (pack, topic, language), keys in groups.items():
            for verdict in CENSORED:
                was = rates_of(old[k] for k in keys)[0][verdict]
                now = rates_of(new[k] for k in keys)[0][verdict]
                cells.append(
                    CellChange(
                        before_model=left,
                        after_model=right,
                        pack=pack,
                        topic=topic,
                        language=language,
                        verdict=verdict,
                        before=was,
                        after=now,
                        change=rate_difference((now.count, now.n), (was.count, was.n)),
                    )
                )
    return AuditDiff(
        before=names[0],
        after=names[1],
        pairs=pairs,
        compared=compared,
        changed_verdicts=len(changes),
        changed_text=changed_text,
        changes=changes,
        cells=cells,
    )


def print_diff(diff: AuditDiff, console: Console, shown: int = 40) -> None:
    console.print(
        f"{diff.before} → {diff.after}: {diff.compared} answers compared,"
        f" {diff.changed_verdicts} changed verdict, {diff.changed_text} changed text"
    )
    moved = [c for c in diff.cells if c.before.count != c.after.count]
    if moved:
        show(_moved_listing(moved), console)
    if diff.changes:
        show(changes_listing(diff, shown), console)


def _moved_listing(moved: list[CellChange]) -> Listing:
    """The cells whose count moved, with the change's 95% interval."""
    return Listing(
        [
            Column("models", lambda r: f"{r['before_model']} → {r['after_model']}"),
            Column("pack", lambda r: r["pack"]),
            Column("topic", lambda r: r["topic"]),
            Column("lang", lambda r: r["language"]),
            Column("rate", lambda r: r["verdict"]),
            Column("before", lambda r: f"{r['before']['count']}/{r['before']['n']}", numeric=True),
            Column("after", lambda r: f"{r['after']['count']}/{r['after']['n']}", numeric=True),
            Column("change [95% CI]", _change_text, numeric=True),
        ],
        rows=[c.model_dump(mode="json") for c in moved],
    )


def _change_text(row: Row) -> str:
    change = row["change"]
    interval = percent_interval(change["low"], change["high"], signed=True)
    return f"{signed_percent(change['estimate'])} {interval}"


def changes_listing(diff: AuditDiff, shown: int) -> Listing:
    """The first `shown` changed verdicts, each question whole (the HTML page has them all)."""
    return Listing(
        [
            Column("probe", lambda r: f"{r['pack']}/{r['probe']}"),
            Column("lang", lambda r: r["language"]),
            Column("before", lambda r: r["before"] or "error"),
            Column("after", lambda r: r["after"] or "error"),
            Column("question", lambda r: r["question"]),
        ],
        title=f"Changed verdicts ({min(shown, len(diff.changes))} of {len(diff.changes)})",
        rows=[c.model_dump(mode="json") for c in diff.changes[:shown]],
    )


def write_diff_html(diff: AuditDiff, path: Path) -> None:
    """The diff page: rows whose rate moved highlighted, the others hidden on request."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TEMPLATES.get_template("audit_diff.html.j2").render(d=diff))
