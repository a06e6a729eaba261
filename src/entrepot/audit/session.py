"""One `entrepot audit` invocation: load the packs, ask every model every probe with a live
progress display, classify (rules, then the judge if one is named), then write the JSON and HTML
reports and print the table.

Every call goes through a gateway: in-process, the pipeline of one built from the configuration
(see `bench.through_gateway`), or a running one by URL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from entrepot.audit.packs import load_pack
from entrepot.audit.report import print_report, summarise, write_html
from entrepot.audit.runner import ProbeRef, collect, judge_results, needs_judge, select_probes
from entrepot.audit.schema import AuditReport, ModelInfo, ProbeResult
from entrepot.bench.report import write_json
from entrepot.bench.runner import BenchModel, RunOptions
from entrepot.bench.schema import ItemResult
from entrepot.bench.through_gateway import GatewayByUrl, InProcessGateway, open_gateway
from entrepot.config import Config


@dataclass(slots=True)
class AuditRequest:
    models: list[str]
    packs: list[str]
    options: RunOptions
    languages: list[str] | None = None
    limit: int | None = None
    judge: str | None = None
    gateway_url: str | None = None
    api_key_env: str | None = None
    key_name: str | None = None


def model_info(config: Config, model: BenchModel, results: list[ProbeResult]) -> ModelInfo:
    """Who answered: the configured deployment behind the alias, even when the audit ran
    through a gateway, since the host is what the audit compares."""
    deployment = config.model(model.alias) or model.config
    host = (
        "this machine (in-process)"
        if deployment.provider == "llama_cpp"
        else urlsplit(deployment.base_url or "").netloc
    )
    own = [r.cost_nanos or 0 for r in results if r.model == model.alias]
    return ModelInfo(
        alias=model.alias,
        provider=deployment.provider,
        host=host,
        jurisdiction=deployment.jurisdiction,
        total_cost=sum(own) / 1e9,
        currency=model.currency,
        price_date=model.price_date,
        cost_basis=model.cost_basis,
    )


def run_audit(config: Config, request: AuditRequest, console: Console) -> AuditReport:
    packs = [load_pack(ref) for ref in request.packs]
    refs = select_probes(packs, request.languages, request.limit)
    judges = [request.judge] if request.judge else []
    through = open_gateway(
        config,
        "audit",
        [*request.models, *judges],
        url=request.gateway_url,
        api_key_env=request.api_key_env,
        key_name=request.key_name,
    )
    models = through.models(request.models)
    judge = next(iter(through.models(judges)), None)
    progress = Progress(
        TextColumn("{task.fields[model]:<28}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=console,
    )
    bars = {m.alias: progress.add_task("", total=len(refs), model=m.alias) for m in models}
    if judge is not None:
        bars[f"judge:{judge.alias}"] = progress.add_task(
            "", total=None, model=f"judge {judge.alias}"
        )

    def answered(result: ItemResult) -> None:
        progress.update(bars[result.model], advance=1)

    def judging(count: int) -> None:
        assert judge is not None
        progress.update(bars[f"judge:{judge.alias}"], total=count)

    def judged(_result: ProbeResult) -> None:
        assert judge is not None
        progress.update(bars[f"judge:{judge.alias}"], advance=1)

    with progress:
        results = asyncio.run(
            _run(models, refs, request.options, judge, answered, judging, judged, through)
        )
    report = summarise(
        results,
        packs,
        [model_info(config, m, results) for m in models],
        judge=judge.alias if judge else None,
    )
    out: Path = request.options.out
    write_json(report, out / "report.json")
    write_html(report, out / "report.html")
    print_report(report, console)
    console.print(f"reports: {out / 'report.json'} · {out / 'report.html'}")
    return report


async def _run(
    models: list[BenchModel],
    refs: list[ProbeRef],
    options: RunOptions,
    judge: BenchModel | None,
    answered: Callable[[ItemResult], object],
    judging: Callable[[int], object],
    judged: Callable[[ProbeResult], object],
    through: InProcessGateway | GatewayByUrl,
) -> list[ProbeResult]:
    async with through:
        results = await collect(models, refs, options, answered)
        if judge is not None:
            judging(sum(1 for r in results if needs_judge(r)))
            await judge_results(judge, refs, results, options.out, options.concurrency, judged)
    return results
