"""`entrepot bench`: run tasks on several models, then report quality with intervals and cost."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.markup import escape

from entrepot.cli.common import (
    TABLE,
    ConfigOption,
    FormatOption,
    console,
    human_console,
    load,
    output_format,
)
from entrepot.cli.preflight import check_run
from entrepot.exceptions import ConfigError, GatewayError
from entrepot.listing import Column, Listing, show

if TYPE_CHECKING:
    from entrepot.bench.schema import BenchReport

T = TypeVar("T")


def bench(
    tasks: Annotated[
        list[str] | None, typer.Argument(help="Task files (YAML/JSONL) or pack:NAME.")
    ] = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated model aliases.")] = None,
    reference: Annotated[str | None, typer.Option(help="The model others are compared to.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight per model.")] = 8,
    repeat: Annotated[int, typer.Option(min=1)] = 1,
    limit: Annotated[
        int | None, typer.Option(min=1, help="The first N items of each task.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory for results and reports.")] = Path(
        "bench-out"
    ),
    fail_under: Annotated[
        float | None, typer.Option(help="Exit 1 if any model scores below this.")
    ] = None,
    gateway: Annotated[str | None, typer.Option(help="Run through a gateway at this URL.")] = None,
    api_key_env: Annotated[str, typer.Option(help="Env var with the gateway key.")] = (
        "ENTREPOT_API_KEY"
    ),
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="Run under this client key (by name): its models, limits and budget. "
            "Default: the anonymous principal cli:bench.",
        ),
    ] = None,
    judge: Annotated[str | None, typer.Option(help="Model alias for LLM-as-judge.")] = None,
    embed_model: Annotated[
        str | None, typer.Option(help="Embedding model alias for similarity grading.")
    ] = None,
    rpm: Annotated[float | None, typer.Option(help="Requests per minute per model.")] = None,
    hardware_cost: Annotated[
        list[str] | None, typer.Option(help="MODEL=USD_PER_HOUR for local models.")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    max_tokens: Annotated[int, typer.Option(min=1, help="Default answer length cap.")] = 512,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Forget the answers already in --out; ask all again.")
    ] = False,
    publish: Annotated[
        bool,
        typer.Option(
            "--publish",
            help="Store the results (per model × task, relative to --reference) as evidence"
            " for good_enough routes.",
        ),
    ] = False,
    list_packs: Annotated[bool, typer.Option("--list", help="List built-in packs.")] = False,
    schema: Annotated[
        bool, typer.Option("--schema", help="Print the report's JSON Schema.")
    ] = False,
    config_path: ConfigOption = None,
    fmt: FormatOption = TABLE,
) -> None:
    """Run tasks on several models: quality with confidence intervals, and cost."""
    from entrepot.bench.packs import list_packs as packs
    from entrepot.bench.report import failed_models, summary_listing
    from entrepot.bench.runner import RunOptions
    from entrepot.bench.session import BenchRequest, run_bench

    if schema:
        import orjson

        from entrepot.bench.schema import BenchReport

        schema_json = BenchReport.model_json_schema(by_alias=True)
        typer.echo(orjson.dumps(schema_json, option=orjson.OPT_INDENT_2).decode())
        return
    if list_packs:
        listing = Listing(
            [
                Column("pack", lambda r: f"pack:{r['pack']}"),
                Column("items", lambda r: str(r["items"]), numeric=True),
                Column("what it tests", lambda r: r["description"]),
            ],
            rows=[
                {"pack": p.name, "items": p.items, "description": p.description} for p in packs()
            ],
        )
        show(listing, console, output_format(fmt))
        return
    if not tasks or not models:
        console.print("[red]give task files (or pack:NAME) and --models[/red]")
        raise typer.Exit(2)
    costs = hardware_costs(hardware_cost or [])
    aliases = [m.strip() for m in models.split(",") if m.strip()]
    request = BenchRequest(
        tasks=tasks,
        models=aliases,
        reference=reference or aliases[0],
        options=RunOptions(
            out=out,
            concurrency=concurrency,
            repeat=repeat,
            requests_per_minute=rpm,
            seed=seed,
            max_tokens=max_tokens,
            fresh=fresh,
        ),
        limit=limit,
        gateway_url=gateway,
        api_key_env=api_key_env if gateway else None,
        key_name=key,
        judge=judge,
        embed_model=embed_model,
        hardware_costs=costs,
        publish=publish,
    )
    shown = output_format(fmt)
    talk = human_console(shown)
    config = load(config_path)

    def checked_run() -> BenchReport:
        if gateway is None:  # through a gateway, the gateway holds the models' keys and files
            check_run(config, [*aliases, request.reference, judge, embed_model])
        return run_bench(config, request, talk)

    report = run_reported(checked_run, out)
    if shown != "table":
        show(summary_listing(report), console, shown)
    failed = failed_models(report)
    if failed:
        names = ", ".join(m.model for m in failed)
        talk.print(f"[red]no answers from {names}: see why above[/red]")
        raise typer.Exit(1)
    scores = [m.score.estimate for m in report.models if m.score is not None]
    if fail_under is not None and any(score < fail_under for score in scores):
        talk.print(f"[red]a model scored below {fail_under}[/red]")
        raise typer.Exit(1)


def hardware_costs(entries: list[str]) -> dict[str, Decimal]:
    """`--hardware-cost MODEL=USD_PER_HOUR` options, each checked: a typo is a usage error
    naming the option, never a traceback."""
    costs = {}
    for entry in entries:
        alias, _, text = entry.partition("=")
        try:
            rate = Decimal(text.strip())
        except InvalidOperation:
            rate = Decimal("NaN")
        if not alias.strip() or not rate.is_finite() or rate < 0:
            raise typer.BadParameter(
                f"{entry!r}: expected MODEL=USD_PER_HOUR with a number of at least 0,"
                " e.g. local/smollm2-135m-instruct=0.05",
                param_hint="--hardware-cost",
            )
        costs[alias.strip()] = rate
    return costs


def run_reported(run: Callable[[], T], out: Path) -> T:
    """Run a bench or audit into `out`: a bad configuration or a refused run exits 2 with its
    message, and Ctrl-C exits 130 saying what was kept and how to resume."""
    try:
        return run()
    except (ConfigError, GatewayError) as exc:
        console.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        raise _interrupted(out) from None


def _interrupted(out: Path) -> typer.Exit:
    """Ctrl-C: what was kept, and the command that resumes (the same one, minus `--fresh`)."""
    from entrepot.bench.runner import kept_answers

    program = "python -m entrepot" if Path(sys.argv[0]).name == "__main__.py" else "entrepot"
    again = shlex.join([a for a in sys.argv[1:] if a != "--fresh"])
    console.print(
        f"\n[yellow]interrupted: {kept_answers(out)} answers kept in {out}.[/yellow]"
        f" Resume (asking only the rest) with:\n  {escape(program + ' ' + again)}",
        soft_wrap=True,
    )
    return typer.Exit(130)
