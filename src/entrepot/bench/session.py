"""One `entrepot bench` invocation: load tasks, run them on the models with a live progress
display, then write the JSON and HTML reports and print the table and headlines.

Every call goes through a gateway: in-process, the pipeline of one built from the configuration
(see `through_gateway`), or a running one by URL."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from entrepot.bench.evidence import check_publishable, publish_report
from entrepot.bench.html import write_html
from entrepot.bench.judge import make_embed, make_judge
from entrepot.bench.report import print_report, summarise, write_json
from entrepot.bench.runner import BenchModel, BenchRunner, RunOptions
from entrepot.bench.schema import BenchReport, ItemResult
from entrepot.bench.tasks import load_tasks
from entrepot.bench.through_gateway import GatewayByUrl, InProcessGateway, open_gateway
from entrepot.config import Config
from entrepot.store.db import open_engine


@dataclass(slots=True)
class BenchRequest:
    tasks: list[str]
    models: list[str]
    reference: str | None
    options: RunOptions
    limit: int | None = None
    gateway_url: str | None = None
    api_key_env: str | None = None
    judge: str | None = None
    embed_model: str | None = None
    hardware_costs: dict[str, Decimal] | None = None
    key_name: str | None = None
    # Store the results as evidence for good_enough routes (see `bench.evidence`).
    publish: bool = False


@dataclass(slots=True)
class LiveTally:
    """One model's line in the live display. The mean is over the answers graded so far only:
    a failed call or a call the policy refused is no answer, so it is counted apart and never
    shown as a score of zero (a model with no answers says so)."""

    cost_basis: str
    currency: str
    scores: list[float] = field(default_factory=list)
    answered: int = 0
    errors: int = 0
    refused: int = 0
    cost_nanos: int = 0

    def add(self, result: ItemResult) -> None:
        if result.score is not None:
            self.scores.append(result.score)
        self.answered += result.answer is not None
        self.errors += result.error is not None
        self.refused += result.refused_by_policy is not None
        self.cost_nanos += result.cost_nanos or 0

    def status(self) -> str:
        if self.scores:
            parts = [f"score {sum(self.scores) / len(self.scores):.2f}"]
        else:
            parts = ["not scored" if self.answered else "no answers"]
        if self.errors:
            parts.append(f"errors: {self.errors}")
        if self.refused:
            parts.append(f"refused by policy: {self.refused}")
        if self.cost_basis == "hardware":
            parts.append("cost from busy time at the end")
        elif self.cost_basis == "tokens":
            parts.append(f"{self.cost_nanos / 1e9:.4f} {self.currency}")
        else:
            parts.append("unpriced")
        return " · ".join(parts)


def run_bench(config: Config, request: BenchRequest, console: Console) -> BenchReport:
    items = load_tasks(request.tasks)
    if request.limit is not None:
        taken: dict[str, int] = defaultdict(int)
        kept = []
        for item in items:
            if taken[item.task] < request.limit:
                kept.append(item)
                taken[item.task] += 1
        items = kept
    if request.publish:
        check_publishable(request.models, request.reference, {item.task for item in items})
    helpers = [a for a in (request.judge, request.embed_model) if a]
    through = open_gateway(
        config,
        "bench",
        [*request.models, *helpers],
        url=request.gateway_url,
        api_key_env=request.api_key_env,
        key_name=request.key_name,
    )
    models = through.models(request.models, request.hardware_costs)
    helper_models = {m.alias: m for m in through.models(helpers)}
    judge_model = helper_models.get(request.judge or "")
    embed_model = helper_models.get(request.embed_model or "")
    progress = Progress(
        TextColumn("{task.fields[model]:<28}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
        console=console,
    )
    per_model = len(items) * request.options.repeat
    bars = {
        m.alias: progress.add_task("", total=per_model, model=m.alias, status="") for m in models
    }
    tallies = {m.alias: LiveTally(m.cost_basis, m.currency) for m in models}

    def on_result(result: ItemResult) -> None:
        tally = tallies[result.model]
        tally.add(result)
        progress.update(bars[result.model], advance=1, status=tally.status())

    runner = BenchRunner(
        models,
        items,
        request.options,
        judge=make_judge(judge_model) if judge_model else None,
        embed=make_embed(embed_model) if embed_model else None,
        on_result=on_result,
    )
    with progress:
        results = asyncio.run(_run(runner, list(helper_models.values()), through))
    report = summarise(
        results,
        reference=request.reference,
        price_dates={m.alias: m.price_date for m in models},
        currencies={m.alias: m.currency for m in models},
        cost_basis={m.alias: m.cost_basis for m in models},
        tasks=sorted({item.task for item in items}),
        repeats=request.options.repeat,
    )
    out: Path = request.options.out
    write_json(report, out / "report.json")
    write_html(report, out / "report.html", items)
    print_report(report, console)
    if request.publish:
        rows = publish_report(open_engine(config.store), report, models)
        console.print(f"published {len(rows)} results (model × task) to the store")
    console.print(f"reports: {out / 'report.json'} · {out / 'report.html'}")
    return report


async def _run(
    runner: BenchRunner, helpers: list[BenchModel], through: InProcessGateway | GatewayByUrl
) -> list[ItemResult]:
    """The judge and embedding models serve the graders, outside the models under test."""
    async with through:
        for helper in helpers:
            await helper.provider.start()
        try:
            return await runner.run()
        finally:
            for helper in helpers:
                await helper.provider.close()
