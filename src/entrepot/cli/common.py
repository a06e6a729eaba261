"""What every command shares: the console, the `--config` option and loading the config."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from entrepot.config import Config, load_config
from entrepot.exceptions import ConfigError
from entrepot.ledger import hardware
from entrepot.listing import FORMATS, Format

console = Console()

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Path to entrepot.yaml.", show_default=False)
]

OutputFormat = Enum("OutputFormat", {f: f for f in FORMATS}, type=str)  # type: ignore[misc]
TABLE = OutputFormat("table")
FormatOption = Annotated[
    OutputFormat,
    typer.Option("--format", help="table (whole at any width), json or csv.", show_default=True),
]


def output_format(value: OutputFormat) -> Format:
    """The `--format` choice, as the listing module names it."""
    return next(f for f in FORMATS if f == value.value)


def human_console(fmt: Format) -> Console:
    """Where a run's progress and messages go: the terminal's output for a table, the error
    stream when `--format json|csv` keeps the output for the data alone."""
    return console if fmt == "table" else Console(stderr=True)


def load(config_path: Path | None) -> Config:
    """The configuration, or exit 2 with the validation errors printed."""
    try:
        config = load_config(config_path)
        hardware.check(config)
        return config
    except ConfigError as exc:
        console.print(f"[red]configuration error[/red]\n{exc}")
        raise typer.Exit(2) from None
