"""The `entrepot` command. Thin: each module parses one area's arguments and calls the packages
that do the work."""

from __future__ import annotations

from typing import Annotated

import typer

from entrepot import __version__
from entrepot.cli.audit import audit_app
from entrepot.cli.bench import bench
from entrepot.cli.fingerprint import fingerprint_app
from entrepot.cli.gateway import check_bind, serve
from entrepot.cli.keys import keys_app
from entrepot.cli.models import models_app
from entrepot.cli.reconcile import reconcile
from entrepot.cli.route import route
from entrepot.cli.shadow import shadow_app
from entrepot.cli.usage import usage

app = typer.Typer(help="Entrepôt: a neutral port for AI models.", no_args_is_help=True)


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"entrepot {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Entrepôt: a neutral port for AI models."""


app.command()(serve)
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.command()(route)
app.command()(bench)
app.add_typer(audit_app, name="audit")
app.add_typer(fingerprint_app, name="fingerprint")
app.command()(usage)
app.command()(reconcile)
app.add_typer(shadow_app, name="shadow")

__all__ = ["app", "check_bind"]
