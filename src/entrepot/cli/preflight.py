"""Checks before work: what would otherwise fail minutes into a run, or after a model has spent a
minute loading, said at once with the name to fix.

`serve`, `bench` and `audit` check the models they will use: a local model's GGUF file (and LoRA
adapter) exists, and a remote model's key variable is set. A bench or audit run stops on a
missing key (every call would fail); a gateway starts and says which models will be refused,
since its other models serve. Providers are checked by the configuration itself. `serve` also
checks its port before anything loads.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path

from entrepot.config import BUNDLED_TARGET, Config, ModelConfig
from entrepot.exceptions import ConfigError


def missing_files(models: Iterable[ModelConfig]) -> list[str]:
    """Each local model's weights and adapter that are not on disk."""
    return [problem for model in models for problem in _files(model)]


def missing_keys(models: Iterable[ModelConfig]) -> list[str]:
    """Each remote model whose key variable is named but not set."""
    return [
        f"model {model.alias!r}: ${model.api_key_env} is not set (the key for {model.deployment})"
        for model in models
        if model.api_key_env is not None and not model.api_key()
    ]


def used_models(config: Config, names: Iterable[str]) -> list[ModelConfig]:
    """The deployments behind `names`: a model alias's, or a good_enough route's candidates and
    reference. A name neither is left to the command, which says so in its own words."""
    seen: dict[str, ModelConfig] = {}
    for name in names:
        for model in _deployments(config, name):
            seen.setdefault(model.deployment, model)
    return list(seen.values())


def check_run(config: Config, names: Iterable[str | None]) -> None:
    """Before a bench or audit run in process: every file there and every key set, or stop."""
    models = used_models(config, [n for n in names if n])
    problems = missing_files(models) + missing_keys(models)
    if problems:
        raise ConfigError("\n".join(problems))


def check_port(host: str, port: int) -> None:
    """The port is free, said before any model loads (uvicorn binds only after start-up)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on {host} is already in use (another gateway?):"
                    " stop it, or serve on another with --port"
                ) from None
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _deployments(config: Config, name: str) -> Iterator[ModelConfig]:
    direct = [m for m in config.models if m.alias == name]
    if direct:
        yield from direct
        return
    route = config.routes.get(name)
    if route is not None and route.strategy == "good_enough":
        for alias in (*route.candidates, route.reference):
            yield from (m for m in config.models if alias is not None and m.alias == alias)


def _files(model: ModelConfig) -> Iterator[str]:
    if model.provider != "llama_cpp":
        return
    for what, name in (("GGUF weights", model.target), ("LoRA adapter", model.adapter)):
        if name is None or name == BUNDLED_TARGET:
            continue
        path = Path(name).expanduser()
        if not path.is_file():
            yield f"model {model.alias!r}: {what} not found: {path}"
