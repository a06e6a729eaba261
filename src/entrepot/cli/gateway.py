"""`entrepot serve`: run the gateway, after refusing what would make it unsafe or a fleet that
does not agree on limits — a public bind without authentication, several workers without the
shared backend, missing model files — before anything is loaded or bound."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer
import uvicorn
from rich.markup import escape

from entrepot.cli.banner import print_banner
from entrepot.cli.common import ConfigOption, console, load
from entrepot.cli.preflight import check_port, missing_files, missing_keys
from entrepot.config import Config, ModelConfig, is_loopback
from entrepot.exceptions import ConfigError


def check_bind(config: Config, host: str) -> None:
    """Refuse to expose the gateway beyond this machine without authentication."""
    server = config.server
    if not is_loopback(host) and not (server.admin_key() and server.require_client_keys):
        raise ConfigError(
            f"refusing to bind {host}: a non-loopback address needs an admin key"
            f" (${server.admin_key_env}) and server.require_client_keys: true"
        )


def serve(
    config_path: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Serve only local deployments; no outbound traffic.")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(min=1, help="Worker processes (more than 1 needs shared.backend: redis)."),
    ] = 1,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Serve the OpenAI-compatible API."""
    from entrepot.api.factory import OFFLINE_ENV, configured
    from entrepot.shadow.serve import WORKER_APP, gateway_app

    config = configured(load(config_path), offline)
    host = host or config.server.host
    port = config.server.port if port is None else port
    served = [m for m in config.models if m.is_local or not config.policy.offline]
    try:
        check_bind(config, host)
        check_workers(config, workers)
        if missing := missing_files(served):
            raise ConfigError("\n".join(missing))
        # One worker is served from here; several build their own from the environment.
        app = gateway_app(config) if workers == 1 else WORKER_APP
        check_port(host, port)  # models load in uvicorn's start-up, before it binds
        print_banner(config, host, port, _refused_warnings(served), console)
    except ConfigError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None
    if workers > 1:
        if config_path is not None:
            os.environ["ENTREPOT_CONFIG"] = str(config_path.resolve())
        os.environ[OFFLINE_ENV] = "1" if offline else "0"
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        factory=workers > 1,
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        access_log=False,
        server_header=False,  # no advertising of the server software to every client
        timeout_graceful_shutdown=30,
    )


def _refused_warnings(models: list[ModelConfig]) -> list[str]:
    """A model without its key still lets the gateway start (the others serve); said here."""
    return [f"{problem}: its requests will fail" for problem in missing_keys(models)]


def check_workers(config: Config, workers: int) -> None:
    """Several workers are a fleet: without the shared backend each would keep its own limits,
    budgets and circuits, and a key could spend its budget once per worker."""
    if workers > 1 and config.shared.backend != "redis":
        raise ConfigError(
            f"--workers {workers} needs shared.backend: redis (and ${config.shared.redis_url_env}),"
            " so that limits and budgets hold across workers; or serve with --workers 1"
        )
    if workers > 1:
        config.shared.redis_url()  # its absence is said here, once, not by every worker
