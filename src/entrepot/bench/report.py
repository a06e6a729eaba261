"""From per-item results to the report: per-model summaries with intervals, comparisons with a
reference, the cost–quality frontier; written as versioned JSON and a terminal table (the HTML
page is `bench.html`'s)."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape

from entrepot.bench.schema import BenchReport, Comparison, ItemResult, ModelSummary
from entrepot.bench.stats import bootstrap_mean, headline, paired_ratio, pareto_frontier, percentile
from entrepot.ledger.display import count, latency, money
from entrepot.listing import Column, Listing, Row, show

NANOS = 1e9


def item_scores(results: list[ItemResult], model: str) -> dict[str, float]:
    """Mean score per item over repeats, so repeats sharpen an item rather than add items."""
    per_item: dict[str, list[float]] = defaultdict(list)
    for r in results:
        if r.model == model and r.score is not None:
            per_item[r.item_id].append(r.score)
    return {item: sum(s) / len(s) for item, s in per_item.items()}


def summarise(
    results: list[ItemResult],
    *,
    reference: str | None,
    price_dates: dict[str, str | None],
    currencies: dict[str, str],
    cost_basis: dict[str, str],
    tasks: list[str],
    repeats: int,
) -> BenchReport:
    """The report of one run. A failed call is an error, not a wrong answer: it is left out of
    the score, and a model with no answer at all gets no score and no place on the frontier."""
    models = list(dict.fromkeys(r.model for r in results))
    summaries = []
    for model in models:
        own = [r for r in results if r.model == model]
        answered = [r for r in own if r.error is None and r.refused_by_policy is None]
        latencies, queues = [r.latency_ms for r in answered], [r.queue_ms for r in answered]
        scores = item_scores(results, model)
        total = sum(r.cost_nanos or 0 for r in own) / NANOS
        correct = sum(scores.values())
        task_of = {r.item_id: r.task for r in own}
        per_task: dict[str, list[float]] = defaultdict(list)
        for item, score in scores.items():
            per_task[task_of[item]].append(score)
        errors = Counter(r.error for r in own if r.error is not None)
        refusals = Counter(r.refused_by_policy for r in own if r.refused_by_policy is not None)
        summaries.append(
            ModelSummary(
                model=model,
                items=len({r.item_id for r in own}),
                graded=sum(1 for r in own if r.score is not None),
                errors=errors.total(),
                score=bootstrap_mean(list(scores.values())) if scores else None,
                total_cost=total,
                cost_per_item=total / len(answered) if answered else 0.0,
                cost_per_correct=total / correct if correct else None,
                currency=currencies.get(model, "USD"),
                price_date=price_dates.get(model),
                cost_basis=cost_basis.get(model, "unpriced"),
                latency_p50_ms=percentile(latencies, 50),
                latency_p95_ms=percentile(latencies, 95),
                queue_p50_ms=percentile(queues, 50),
                queue_p95_ms=percentile(queues, 95),
                top_error=errors.most_common(1)[0][0] if errors else None,
                refused_by_policy=refusals.total(),
                top_refusal=refusals.most_common(1)[0][0] if refusals else None,
                prompt_tokens=sum(r.prompt_tokens for r in own),
                completion_tokens=sum(r.completion_tokens for r in own),
                judge_cost=sum(r.judge_cost_nanos for r in own) / NANOS,
                per_task={t: bootstrap_mean(s) for t, s in sorted(per_task.items())},
            )
        )
    scored = [(s.model, s.total_cost, s.score.estimate) for s in summaries if s.score is not None]
    frontier = pareto_frontier(scored)
    for summary in summaries:
        summary.on_frontier = summary.model in frontier
    return BenchReport(
        created_at=dt.datetime.now(dt.UTC),
        tasks=tasks,
        items=len({r.item_id for r in results}),
        repeats=repeats,
        reference=reference,
        models=summaries,
        comparisons=_compare(results, summaries, reference),
        results=results,
    )


def _compare(
    results: list[ItemResult], summaries: list[ModelSummary], reference: str | None
) -> list[Comparison]:
    by_model = {s.model: s for s in summaries}
    if reference not in by_model:
        return []
    assert reference is not None
    base = item_scores(results, reference)
    comparisons = []
    for summary in summaries:
        if summary.model == reference:
            continue
        theirs = item_scores(results, summary.model)
        shared = sorted(set(base) & set(theirs))
        if not shared or not sum(base[i] for i in shared):
            continue
        quality = paired_ratio([base[i] for i in shared], [theirs[i] for i in shared])
        ref_cost = by_model[reference].total_cost
        priced = summary.cost_basis != "unpriced" and by_model[reference].cost_basis != "unpriced"
        ratio = summary.total_cost / ref_cost if priced and ref_cost else None
        comparisons.append(
            Comparison(
                model=summary.model,
                reference=reference,
                quality_ratio=quality,
                cost_ratio=ratio,
                headline=headline(
                    summary.model, reference, quality, ratio, len(shared), summary.price_date
                ),
            )
        )
    return comparisons


def write_json(report: BaseModel, path: Path) -> None:
    """Any versioned report (bench, audit, audit diff) as indented JSON, by field alias."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.model_dump_json(indent=2, by_alias=True))


def summary_listing(report: BenchReport) -> Listing:
    """One row per model: what the terminal shows (whole at any width), and `--format json|csv`
    prints."""
    return Listing(
        [
            Column("model", lambda r: r["model"]),
            Column("score (95% CI)", _score_text, numeric=True),
            Column("items", lambda r: count(r["items"]), numeric=True),
            Column("errors", lambda r: count(r["errors"]), numeric=True),
            Column("total", _total_text, numeric=True),
            Column("per item", _per_item_text, numeric=True),
            Column("per correct", _per_correct_text, numeric=True),
            Column("p50/p95", lambda r: _pair(r, "latency", latency), numeric=True),
            Column("queue p50/p95", lambda r: _pair(r, "queue", latency), numeric=True),
            Column("tokens in/out", _tokens_text, numeric=True),
            Column("frontier", lambda r: "★" if r["on_frontier"] else ""),
        ],
        title=f"{report.items} items × {report.repeats} repeat(s): {', '.join(report.tasks)}",
        rows=[s.model_dump(mode="json", exclude={"per_task"}) for s in report.models],
    )


def _total_text(row: Row) -> str:
    basis = "" if row["cost_basis"] == "tokens" else f" ({row['cost_basis']})"
    return money(row["total_cost"], row["currency"]) + basis


def _per_correct_text(row: Row) -> str:
    per_correct = row["cost_per_correct"]
    return "—" if per_correct is None else money(per_correct, row["currency"])


def _per_item_text(row: Row) -> str:
    return money(row["cost_per_item"], row["currency"]) if _answered(row) else "—"


def _pair(row: Row, name: str, fmt: Callable[[float], str]) -> str:
    if not _answered(row):
        return "—"
    return f"{fmt(row[name + '_p50_ms'])} / {fmt(row[name + '_p95_ms'])}"


def _answered(row: Row) -> bool:
    """Whether the model answered anything: one that did not has no cost per item or latency
    to show (a zero would read as free and instant)."""
    return row["score"] is not None


def _tokens_text(row: Row) -> str:
    return f"{count(row['prompt_tokens'])} / {count(row['completion_tokens'])}"


def _score_text(row: Row) -> str:
    score = row["score"]
    if score is None:
        return "— (no answers)"
    return f"{score['estimate']:.3f} ({score['low']:.3f}–{score['high']:.3f})"


def failed_models(report: BenchReport) -> list[ModelSummary]:
    """Models that gave no answer at all, so they could not be scored: every call failed or
    was refused by policy. Either way the run measured nothing of them, which fails it."""
    return [s for s in report.models if s.score is None and (s.errors or s.refused_by_policy)]


def print_report(report: BenchReport, console: Console) -> None:
    show(summary_listing(report), console)
    for comparison in report.comparisons:
        console.print(f"• {comparison.headline}")
    judged = [s for s in report.models if s.judge_cost]
    for s in judged:
        console.print(f"  judge cost for {s.model}: {money(s.judge_cost, s.currency)}")
    unscored = failed_models(report)
    for s in report.models:
        if s.top_error is None:
            continue
        if s not in unscored:
            what = f"{s.errors} call(s) failed; scored on the rest"
        elif s.refused_by_policy:
            what = f"{s.errors} call(s) failed and the rest were refused by policy; not scored"
        else:
            what = f"every call failed ({s.errors}); not scored"
        console.print(f"[red]{s.model}: {what}. Most frequent error:[/red] {escape(s.top_error)}")
    for s in report.models:
        if s.top_refusal is not None:
            console.print(
                f"[yellow]{s.model}: {s.refused_by_policy} call(s) refused by policy, neither "
                f"scored nor counted as errors:[/yellow] {escape(s.top_refusal)}"
            )
    reused = sum(1 for r in report.results if r.cached)
    asked = len(report.results) - reused
    failed = sum(1 for r in report.results if not r.cached and r.error is not None)
    refused = sum(1 for r in report.results if r.refused_by_policy is not None)
    unanswered = [f"{failed} failed"] if failed else []
    unanswered += [f"{refused} refused by policy"] if refused else []
    console.print(
        f"answers: {reused} reused from earlier runs, {asked} asked"
        + (f" ({'; '.join(unanswered)}; a re-run asks them again)" if unanswered else "")
    )
