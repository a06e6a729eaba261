"""`entrepot fingerprint take|check|history MODEL`: is the model behind an alias still the one
that was measured?"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Annotated, TypeVar

import orjson
import typer
from rich.markup import escape

from entrepot.cli.common import ConfigOption, console, load
from entrepot.exceptions import ConfigError, GatewayError

if TYPE_CHECKING:
    from entrepot.fingerprint.session import FingerprintRequest

fingerprint_app = typer.Typer(
    help="Fingerprint a model with canary prompts; check later that it was not swapped.",
    no_args_is_help=True,
)

T = TypeVar("T")

Model = Annotated[str, typer.Argument(help="The model alias.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
GatewayUrl = Annotated[
    str | None, typer.Option("--gateway", help="Ask through a running gateway at this URL.")
]
ApiKeyEnv = Annotated[str, typer.Option(help="Env var with the gateway key.")]
Key = Annotated[
    str | None,
    typer.Option(
        "--key",
        help="Ask under this client key (by name): its models, limits and budget. "
        "Default: the anonymous principal cli:fingerprint.",
    ),
]


def _request(
    model: str, key: str | None, gateway: str | None, api_key_env: str
) -> FingerprintRequest:
    from entrepot.fingerprint.session import FingerprintRequest

    return FingerprintRequest(
        model=model,
        key_name=key,
        gateway_url=gateway,
        api_key_env=api_key_env if gateway else None,
    )


def _run(step: Callable[[Callable[[int, int], None]], T], quiet: bool) -> T:
    """Run a take or check with a live count of answers (none under `--json`, whose output is
    the document alone); a bad configuration or a refused canary (policy, key, budget) exits 2
    with its message."""
    status = console.status("asking the canaries")

    def progress(done: int, total: int) -> None:
        status.update(f"asking the canaries: {done}/{total} answers")

    try:
        with nullcontext() if quiet else status:
            return step(progress)
    except (ConfigError, GatewayError) as exc:
        console.print(f"[red]fingerprint stopped, nothing stored: {escape(str(exc))}[/red]")
        raise typer.Exit(2) from None


@fingerprint_app.command()
def take(
    model: Model,
    key: Key = None,
    gateway: GatewayUrl = None,
    api_key_env: ApiKeyEnv = "ENTREPOT_API_KEY",
    json: Json = False,
    config_path: ConfigOption = None,
) -> None:
    """Store MODEL's fingerprint: its answers to the canary prompts.

    Each canary is asked twice (temperature 0, a fixed seed, short answers), so the take knows
    how much the model agrees with itself."""
    from entrepot.fingerprint import report, session

    config = load(config_path)
    request = _request(model, key, gateway, api_key_env)
    result = _run(lambda progress: session.take(config, request, progress), json)
    if json:
        document = {**report.run_document(result.run), "self_agreement": result.noise}
        typer.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(report.take_text(result))


@fingerprint_app.command()
def check(
    model: Model,
    key: Key = None,
    gateway: GatewayUrl = None,
    api_key_env: ApiKeyEnv = "ENTREPOT_API_KEY",
    json: Json = False,
    config_path: ConfigOption = None,
) -> None:
    """Compare MODEL with its newest fingerprint; exit 1 if it was probably swapped.

    The canaries are asked again, twice, and the noise floor (how much the model agrees with
    itself) is measured from both runs."""
    from entrepot.fingerprint import report, session

    config = load(config_path)
    request = _request(model, key, gateway, api_key_env)
    result = _run(lambda progress: session.check(config, request, progress), json)
    if json:
        document = report.check_document(result)
        typer.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(report.check_text(result))
    if result.agreement.substituted:
        raise typer.Exit(1)


@fingerprint_app.command()
def history(model: Model, json: Json = False, config_path: ConfigOption = None) -> None:
    """Every take and check of MODEL, oldest first, with its date and verdict."""
    from entrepot.fingerprint import report
    from entrepot.store import fingerprints
    from entrepot.store.db import open_engine

    engine = open_engine(load(config_path).store)
    try:
        runs = fingerprints.history(engine, model)
    finally:
        engine.dispose()
    if json:
        documents = [report.run_document(run) for run in runs]
        typer.echo(orjson.dumps(documents, option=orjson.OPT_INDENT_2).decode())
        return
    if not runs:
        typer.echo(f"no fingerprint of {model} yet")
    for run in runs:
        typer.echo(report.history_line(run))
