"""The servers under load, each one worker on loopback in front of the same mock upstream."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import httpx
import yaml
from benchmarks.perf.load import Target
from tests.conftest import ADMIN_KEY, ROOT, Server, free_port, start_gateway, start_server

UPSTREAM_KEY = "perf-upstream-key"
LITELLM_VENV = ROOT / ".venv" / "litellm"
LITELLM_MASTER_KEY = "sk-perf-master-key"
PRICE = {"input_per_1m": "0.27", "output_per_1m": "1.10", "as_of": "2026-11-01"}


def start_floor(tmp: Path, upstream: str) -> Server:
    port = free_port()
    log = tmp / "floor.log"
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "benchmarks.perf.floor:app",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    process = start_server(
        args, f"http://127.0.0.1:{port}/v1/models", log, {"FLOOR_UPSTREAM": upstream}
    )
    return Server(f"http://127.0.0.1:{port}", process, log)


def start_litellm(tmp: Path, upstream: str) -> Server:
    """LiteLLM's proxy from its own virtualenv, with a master key and no database."""

    def model(name: str, base: str) -> dict[str, Any]:
        return {
            "model_name": name,
            "litellm_params": {
                "model": "openai/perf-model",
                "api_base": base,
                "api_key": UPSTREAM_KEY,
            },
        }

    config = {
        "model_list": [
            model("perf/echo", upstream + "/v1"),
            model("perf/stream", upstream + "/stream/v1"),
        ],
        "general_settings": {"master_key": LITELLM_MASTER_KEY},
        "litellm_settings": {"telemetry": False},
    }
    path = tmp / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp / "litellm.log"
    args = [
        str(LITELLM_VENV / "bin" / "litellm"),
        "--config",
        str(path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
        "--telemetry",
        "False",
    ]
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    process = start_server(args, f"http://127.0.0.1:{port}/health/liveliness", log, env)
    return Server(f"http://127.0.0.1:{port}", process, log)


def entrepot_config(upstream: str) -> dict[str, Any]:
    """The real hot path: two EU deployments behind one alias with fallback, prices for the ledger,
    an egress policy with the data-class detector on, and client keys required."""

    def deployment(name: str, alias: str, base: str) -> dict[str, Any]:
        return {
            "alias": alias,
            "name": name,
            "provider": "openai_compatible",
            "target": "perf-model",
            "base_url": base,
            "api_key_env": "PERF_UPSTREAM_KEY",
            "jurisdiction": "eu",
            "price": PRICE,
        }

    return {
        "server": {"require_client_keys": True},
        "models": [
            deployment("perf-eu-primary", "perf/echo", upstream + "/v1"),
            deployment("perf-eu-fallback", "perf/echo", upstream + "/v1"),
            deployment("perf-eu-stream", "perf/stream", upstream + "/stream/v1"),
        ],
        "routes": {"perf/echo": {"strategy": "fallback", "max_attempts": 2}},
        "policy": {
            "rules": {"internal": {"allow": ["eu", "local"]}, "confidential": {"allow": ["local"]}}
        },
    }


def checkout_source(revision: str, tmp: Path) -> Path:
    """The package source of an earlier commit, unpacked beside the run: served from there, it
    is the baseline measured in the same run as the working tree, on the same noisy machine."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "src"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    destination = tmp / f"baseline-{revision}"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(destination, filter="data")
    return destination / "src"


def start_entrepot(
    tmp: Path,
    upstream: str,
    name: str = "entrepot",
    source: Path | None = None,
    *,
    config: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    options: list[str] | None = None,
) -> tuple[Server, str]:
    """Entrepôt and a client key with a model allow-list, a budget and rate limits; `source`
    serves another copy of the package (a baseline) with the same configuration. `config` adds
    to (or replaces sections of) the configuration, `env` and `options` to the server's."""
    env = {"ENTREPOT_ADMIN_KEY": ADMIN_KEY, "PERF_UPSTREAM_KEY": UPSTREAM_KEY, **(env or {})}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    server = start_gateway(
        tmp, name, {**entrepot_config(upstream), **(config or {})}, env, options=options
    )
    created = httpx.post(
        server.url + "/admin/keys",
        json={
            "name": "perf",
            "allowed_models": ["perf/echo", "perf/stream"],
            "budget": {"amount": 1_000_000, "period": "month"},
            "requests_per_minute": 100_000_000,
            "tokens_per_minute": 1_000_000_000,
        },
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    created.raise_for_status()
    return server, str(created.json()["key"])


def targets(
    mock: str,
    floor: Server,
    litellm: Server | None,
    entrepot: Server,
    key: str,
    baseline: tuple[Server, str] | None = None,
) -> list[tuple[Target, Target]]:
    """Each target's (JSON, streaming) pair, in table order."""
    pairs = [
        (
            Target("direct", mock, "perf-model", UPSTREAM_KEY),
            Target("direct", mock + "/stream", "perf-model", UPSTREAM_KEY),
        ),
        (
            Target("floor", floor.url, "perf-model", UPSTREAM_KEY),
            Target("floor", floor.url + "/stream", "perf-model", UPSTREAM_KEY),
        ),
    ]
    if litellm is not None:
        pairs.append(
            (
                Target("litellm", litellm.url, "perf/echo", LITELLM_MASTER_KEY),
                Target("litellm", litellm.url, "perf/stream", LITELLM_MASTER_KEY),
            )
        )
    if baseline is not None:
        server, baseline_key = baseline
        pairs.append(
            (
                Target("baseline", server.url, "perf/echo", baseline_key),
                Target("baseline", server.url, "perf/stream", baseline_key),
            )
        )
    pairs.append(
        (
            Target("entrepot", entrepot.url, "perf/echo", key),
            Target("entrepot", entrepot.url, "perf/stream", key),
        )
    )
    return pairs
