"""`entrepot bench --publish`: a run's results as evidence in the store, which `good_enough`
routes choose their model by.

One row per model × task: the score with its interval, its quality relative to the run's
reference as the *paired* interval (both models' scores on the same resampled items, as the
report compares them), the items it rests on, and what an item cost in the run's prices, with
the fingerprint of those prices so a router can tell when the configuration prices the model
otherwise since.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict

from sqlalchemy import Engine

from entrepot.bench.report import item_scores
from entrepot.bench.runner import BenchModel
from entrepot.bench.schema import BenchReport, ItemResult
from entrepot.bench.stats import bootstrap_mean, paired_ratio
from entrepot.exceptions import ConfigError, GatewayError
from entrepot.routing.good_enough import check_task, price_fingerprint
from entrepot.store.evidence import Evidence, publish


def check_publishable(models: list[str], reference: str | None, tasks: set[str]) -> None:
    """Before anything is asked: evidence is relative to a reference the run measures, and for
    tasks a request can name (see `check_task`)."""
    if reference not in models:
        raise ConfigError(
            f"--publish: the reference {reference!r} is not one of --models; evidence is"
            " quality relative to a model measured in the same run"
        )
    for task in sorted(tasks):
        try:
            check_task(task, "task")
        except GatewayError as exc:
            raise ConfigError(f"--publish: task {task!r}: {exc.message}") from None


def publish_report(engine: Engine, report: BenchReport, models: list[BenchModel]) -> list[Evidence]:
    rows = evidence_rows(report, models, dt.datetime.now(dt.UTC))
    publish(engine, rows)
    return rows


def evidence_rows(
    report: BenchReport, models: list[BenchModel], now: dt.datetime
) -> list[Evidence]:
    """The rows of one run, for every model and task with a score."""
    assert report.reference is not None, "checked by check_publishable"
    run_id = uuid.uuid4().hex
    by_task: dict[str, list[ItemResult]] = defaultdict(list)
    for result in report.results:
        by_task[result.task].append(result)
    rows = []
    for task, results in sorted(by_task.items()):
        base = item_scores(results, report.reference)
        for model in models:
            row = _row(run_id, now, task, model, report.reference, results, base)
            if row is not None:
                rows.append(row)
    return rows


def _row(
    run_id: str,
    now: dt.datetime,
    task: str,
    model: BenchModel,
    reference: str,
    results: list[ItemResult],
    base: dict[str, float],
) -> Evidence | None:
    scores = item_scores(results, model.alias)
    if not scores:
        return None
    score = bootstrap_mean(list(scores.values()))
    shared = sorted(set(base) & set(scores))
    relative = None
    if shared and sum(base[i] for i in shared):
        relative = paired_ratio([base[i] for i in shared], [scores[i] for i in shared])
    own = [r for r in results if r.model == model.alias]
    answered = [r for r in own if r.error is None and r.refused_by_policy is None]
    per_hour = model.hardware.per_hour if model.hardware is not None else None
    cost = None
    if model.cost_basis != "unpriced" and answered:
        cost = round(sum(r.cost_nanos or 0 for r in own) / len(answered))
    return Evidence(
        id=f"ev_{uuid.uuid4().hex}",
        run_id=run_id,
        published_at=now,
        task=task,
        model_alias=model.alias,
        reference_alias=reference,
        items=len(scores),
        score=score.estimate,
        score_low=score.low,
        score_high=score.high,
        relative=relative.estimate if relative else None,
        relative_low=relative.low if relative else None,
        relative_high=relative.high if relative else None,
        cost_per_item_nanos=cost,
        currency=model.currency,
        price_date=model.price_date,
        price_fingerprint=price_fingerprint(model.price, per_hour),
    )
