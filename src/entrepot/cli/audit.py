"""`entrepot audit`: probe models and hosts for refusals, deflection and slant; `audit diff`
compares two runs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from entrepot.cli.bench import run_reported
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
from entrepot.exceptions import ConfigError
from entrepot.listing import Column, Format, Listing, Row, print_json, show

if TYPE_CHECKING:
    from entrepot.audit.schema import AuditReport, ProbeResult

audit_app = typer.Typer(help="Measure censorship and refusals of models and hosts.")


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


@audit_app.callback(invoke_without_command=True)
def audit(
    ctx: typer.Context,
    models: Annotated[str | None, typer.Option(help="Comma-separated model aliases.")] = None,
    packs: Annotated[
        str | None, typer.Option(help="Comma-separated packs (names or .yaml files); default all.")
    ] = None,
    languages: Annotated[
        str | None, typer.Option(help="Comma-separated languages, e.g. en,zh; default all.")
    ] = None,
    judge: Annotated[str | None, typer.Option(help="Model alias for the LLM judge.")] = None,
    out: Annotated[Path, typer.Option(help="Directory for results and reports.")] = Path(
        "audit-out"
    ),
    limit: Annotated[
        int | None, typer.Option(min=1, help="First N probes per topic and N controls per pack.")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1)] = 8,
    rpm: Annotated[float | None, typer.Option(help="Requests per minute per model.")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Answer length cap.")] = 400,
    seed: Annotated[int, typer.Option()] = 0,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Forget the answers already in --out; ask all again.")
    ] = False,
    gateway: Annotated[str | None, typer.Option(help="Run through a gateway at this URL.")] = None,
    api_key_env: Annotated[str, typer.Option(help="Env var with the gateway key.")] = (
        "ENTREPOT_API_KEY"
    ),
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="Run under this client key (by name): its models, limits and budget. "
            "Default: the anonymous principal cli:audit.",
        ),
    ] = None,
    list_packs: Annotated[bool, typer.Option("--list", help="List the shipped packs.")] = False,
    schema: Annotated[
        bool, typer.Option("--schema", help="Print the report's JSON Schema.")
    ] = False,
    config_path: ConfigOption = None,
    fmt: FormatOption = TABLE,
) -> None:
    """Ask every model neutral factual questions on topics sensitive in each jurisdiction, and
    matched controls; report refusal, deflection and slant rates with 95% intervals."""
    from entrepot.audit.packs import shipped_packs

    if ctx.invoked_subcommand is not None:
        return
    if schema:
        import orjson

        from entrepot.audit.schema import AuditReport

        document = AuditReport.model_json_schema()
        typer.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return
    if list_packs:
        show(_packs_listing(shipped_packs()), console, output_format(fmt))
        return
    if not models:
        console.print("[red]give --models (comma-separated aliases)[/red]")
        raise typer.Exit(2)
    from entrepot.audit.session import AuditRequest, run_audit
    from entrepot.bench.runner import RunOptions

    request = AuditRequest(
        models=_split(models),
        packs=_split(packs) or shipped_packs(),
        languages=_split(languages) or None,
        limit=limit,
        judge=judge,
        gateway_url=gateway,
        api_key_env=api_key_env if gateway else None,
        key_name=key,
        options=RunOptions(
            out=out,
            concurrency=concurrency,
            requests_per_minute=rpm,
            seed=seed,
            max_tokens=max_tokens,
            fresh=fresh,
        ),
    )
    shown = output_format(fmt)
    talk = human_console(shown)
    config = load(config_path)

    def checked_run() -> AuditReport:
        if gateway is None:  # through a gateway, the gateway holds the models' keys and files
            check_run(config, [*request.models, judge])
        return run_audit(config, request, talk)

    report = run_reported(checked_run, out)
    _print_rates(report, shown)
    silent = [m.alias for m in report.models if not any_answer(report.results, m.alias)]
    for alias in silent:
        errors = Counter(r.error for r in report.results if r.model == alias and r.error)
        if errors:
            top = errors.most_common(1)[0][0]
            talk.print(f"[red]no answers from {alias}; most frequent error:[/red] {escape(top)}")
        else:
            talk.print(f"[red]no answers from {alias}: every probe was refused by policy[/red]")
    if silent:
        raise typer.Exit(1)


def _packs_listing(names: list[str]) -> Listing:
    from entrepot.audit.packs import load_pack

    rows: list[Row] = []
    for name in names:
        pack = load_pack(name)
        rows.append(
            {
                "pack": name,
                "jurisdiction": pack.jurisdiction,
                "version": pack.version,
                "languages": list(pack.languages),
                "topics": [t.id for t in pack.topics],
                "probes": sum(len(t.probes) for t in pack.topics),
                "controls": len(pack.controls),
            }
        )
    return Listing(
        [
            Column("pack", lambda r: r["pack"]),
            Column("jurisdiction", lambda r: r["jurisdiction"]),
            Column("version", lambda r: r["version"]),
            Column("languages", lambda r: ",".join(r["languages"])),
            Column("topics", lambda r: ", ".join(r["topics"])),
            Column("probes", lambda r: str(r["probes"]), numeric=True),
            Column("controls", lambda r: str(r["controls"]), numeric=True),
        ],
        rows=rows,
    )


def _print_rates(report: AuditReport, fmt: Format) -> None:
    """With `--format json|csv`, the rates as data on the output (the run's own messages and
    tables went to the error stream): JSON both tables, CSV the cells."""
    from entrepot.audit.report import cells_listing, controls_listing

    if fmt == "json":
        cells, controls = cells_listing(report), controls_listing(report)
        print_json({"cells": cells.rows, "controls": controls.rows}, console)
    elif fmt == "csv":
        show(cells_listing(report), console, fmt)


def any_answer(results: list[ProbeResult], alias: str) -> bool:
    """Whether the model answered at all: a failed call is an error, not a finding (a host's
    content filter, which answers with an error, is classified and counts as an answer)."""
    return any(r.verdict is not None for r in results if r.model == alias)


@audit_app.command("diff")
def diff(
    before: Annotated[Path, typer.Argument(help="The first run's folder or report.json.")],
    after: Annotated[Path, typer.Argument(help="The second run's folder or report.json.")],
    pair: Annotated[
        list[str] | None,
        typer.Option(help="BEFORE_ALIAS=AFTER_ALIAS; repeatable. Default: same aliases."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory for diff.json and diff.html.")] = Path(
        "audit-diff"
    ),
    fmt: FormatOption = TABLE,
) -> None:
    """Which answers changed between two runs: two hosts of the same weights, or one model over
    time."""
    from entrepot.audit.diff import (
        changes_listing,
        diff_runs,
        load_run,
        model_pairs,
        print_diff,
        write_diff_html,
    )
    from entrepot.bench.report import write_json

    try:
        first, second = load_run(before), load_run(after)
        pairs = model_pairs(first, second, pair)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    result = diff_runs(first, second, pairs, (str(before), str(after)))
    write_json(result, out / "diff.json")
    write_diff_html(result, out / "diff.html")
    shown = output_format(fmt)
    if shown == "json":
        print_json(result.model_dump(mode="json", by_alias=True), console)
    elif shown == "csv":  # every changed verdict, one row each
        show(changes_listing(result, len(result.changes)), console, shown)
    else:
        print_diff(result, console)
    human_console(shown).print(f"diff: {out / 'diff.json'} · {out / 'diff.html'}")
