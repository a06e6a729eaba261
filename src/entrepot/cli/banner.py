"""What `entrepot serve` says before it starts: where it listens, what it serves and where each
model processes data, where its data lives, who may call it, and what will not work."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import make_url

from entrepot import __version__
from entrepot.config import Config
from entrepot.store.db import data_directory, database_url


def print_banner(config: Config, host: str, port: int, warnings: list[str], out: Console) -> None:
    """The start-up banner; `warnings` (models that will be refused) in yellow after it."""
    shown_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    server = config.server
    out.print(f"[bold]Entrepôt {__version__}[/bold] on http://{shown_host}:{port}", highlight=False)
    admin = f"on (${server.admin_key_env}; console at /ui)" if server.admin_key() else "off"
    keys = (
        "client keys required"
        if server.require_client_keys
        else "no client key needed (loopback only)"
    )
    offline = config.policy.offline
    for model in config.models:
        note = " (not served: offline)" if offline and not model.is_local else ""
        out.print(
            f"  model {escape(model.alias)} → {escape(model.deployment)},"
            f" processed in {model.jurisdiction}{note}",
            highlight=False,
            soft_wrap=True,
        )
    out.print(f"  data directory: {escape(str(data_directory()))}", highlight=False, soft_wrap=True)
    url = make_url(database_url(config.store))
    out.print(
        f"  store: {escape(url.render_as_string(hide_password=True))}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"  keys: {keys} · admin API: {admin}", highlight=False, soft_wrap=True)
    for warning in warnings:
        out.print(f"[yellow]  warning: {escape(warning)}[/yellow]", highlight=False, soft_wrap=True)
