"""`entrepot shadow report`: the live verdicts of the routes' shadows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import orjson
import typer

from entrepot.cli.common import TABLE, ConfigOption, FormatOption, console, load, output_format
from entrepot.listing import Listing, print_json, show
from entrepot.shadow import pairs
from entrepot.shadow.report import certificate, document, text, verdicts
from entrepot.store.db import open_engine

shadow_app = typer.Typer(help="Shadow verification on live traffic.", no_args_is_help=True)


@shadow_app.command()
def report(
    route: Annotated[str | None, typer.Option(help="Only this route.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write JSON here.")] = None,
    html_path: Annotated[
        Path | None, typer.Option("--html", help="Write an offline HTML certificate here.")
    ] = None,
    config_path: ConfigOption = None,
    fmt: FormatOption = TABLE,
) -> None:
    """Print each shadow's verdict: non-inferior, inferior or undecided, on how many requests,
    at what cost (and forget the answers kept past their route's retention)."""
    config = load(config_path)
    if route is not None and route not in config.routes:
        console.print(f"[yellow]route {route!r} is not in the configuration[/yellow]")
    engine = open_engine(config.store)
    # Answers past their retention go now too, not only while a gateway shadows traffic.
    now = dt.datetime.now(dt.UTC)
    for name, configured in config.routes.items():
        if configured.shadow is not None:
            pairs.purge(engine, name, configured.shadow.retention_days, now)
    found = verdicts(engine, config, route)
    outcomes = pairs.outcomes(engine, route)
    shown = output_format(fmt)
    if shown == "json":
        print_json(document(found, outcomes), console)
    elif shown == "csv":  # one row per verdict; the copies' counts are in the JSON
        show(Listing([], rows=[item.as_json() for item in found]), console, shown)
    else:
        print(text(found, outcomes))
    try:
        if json_path is not None:
            json_path.write_bytes(
                orjson.dumps(document(found, outcomes), option=orjson.OPT_INDENT_2)
            )
        if html_path is not None:
            html_path.write_text(certificate(found), encoding="utf-8")
    except OSError as exc:
        console.print(f"[red]cannot write {exc.filename}: {exc.strerror}[/red]")
        raise typer.Exit(2) from None
