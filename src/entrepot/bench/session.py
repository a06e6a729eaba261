"""One `entrepot bench` invocation: load tasks, run them on the models with a live progress
display, then write the JSON and HTML reports and print the table and headlines.

Every call goes through a gateway: in-process, the pipeline of one built from the configuration
(see `through_gateway`), or a running one by URL."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from entrepot.bench.judge import make_embed, make_judge
from entrepot.bench.report import print_report, summarise, write_html, write_json
from entrepot.bench.runner import BenchModel, BenchRunner, RunOptions, bench_models
from entrepot.bench.schema import BenchReport, ItemResult
from entrepot.bench.tasks import load_tasks
from entrepot.bench.through_gateway import InProcessGateway
from entrepot.config import Config
from entrepot.exceptions import ConfigError

KEY_WITH_GATEWAY = (
    "--key names a client key for in-process runs; through a gateway, the key is the secret in "
    "--api-key-env"
)


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
    helpers = [a for a in (request.judge, request.embed_model) if a]
    through: InProcessGateway | None = None
    if request.gateway_url is None:
        through = InProcessGateway(config, [*request.models, *helpers], "bench", request.key_name)
        models = through.models(request.models, request.hardware_costs)
        helper_models = {m.alias: m for m in through.models(helpers)}
    else:
        if request.key_name is not None:
            raise ConfigError(KEY_WITH_GATEWAY)
        models = bench_models(
            config,
            request.models,
            gateway_url=request.gateway_url,
            api_key_env=request.api_key_env,
            hardware_costs=request.hardware_costs,
        )
        helper_models = {
            m.alias: m
            for m in bench_models(
                config, helpers, gateway_url=request.gateway_url, api_key_env=request.api_key_env
            )
        }
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
    scores: dict[str, list[float]] = defaultdict(list)
    costs: dict[str, int] = defaultdict(int)
    basis = {m.alias: m.cost_basis for m in models}

    def on_result(result: ItemResult) -> None:
        if result.score is not None:
            scores[result.model].append(result.score)
        costs[result.model] += result.cost_nanos or 0
        done = scores[result.model]
        mean = sum(done) / len(done) if done else 0.0
        cost = (
            "cost from busy time at the end"
            if basis[result.model] == "hardware"
            else f"${costs[result.model] / 1e9:.4f}"
        )
        status = f"score {mean:.2f} · {cost}"
        progress.update(bars[result.model], advance=1, status=status)

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
    write_html(report, out / "report.html")
    print_report(report, console)
    console.print(f"reports: {out / 'report.json'} · {out / 'report.html'}")
    return report


async def _run(
    runner: BenchRunner, helpers: list[BenchModel], through: InProcessGateway | None
) -> list[ItemResult]:
    """The judge and embedding models serve the graders, outside the models under test."""
    async with through or contextlib.nullcontext():
        for helper in helpers:
            await helper.provider.start()
        try:
            return await runner.run()
        finally:
            for helper in helpers:
                await helper.provider.close()
