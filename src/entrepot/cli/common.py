"""What every command shares: the console, the `--config` option and loading the config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from entrepot.config import Config, load_config
from entrepot.exceptions import ConfigError
from entrepot.ledger import hardware

console = Console()

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Path to entrepot.yaml.", show_default=False)
]


def load(config_path: Path | None) -> Config:
    """The configuration, or exit 2 with the validation errors printed."""
    try:
        config = load_config(config_path)
        hardware.check(config)
        return config
    except ConfigError as exc:
        console.print(f"[red]configuration error[/red]\n{exc}")
        raise typer.Exit(2) from None
