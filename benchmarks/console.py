"""The console at 1,000,000 ledger rows: how long each page takes to render.

    .venv/bin/python benchmarks/console.py [--rows 1000000] [--days 30] [--store sqlite|postgresql]

1. A ledger of `--rows` records spread over the last `--days` days, written as the gateway writes
   them (multi-row INSERTs on SQLite, COPY on PostgreSQL, so the rollup triggers of migration
   0010 run for every row): 100 keys in 10 teams, a few keys doing most of the work (Pareto),
   each key mostly on its own model among 8 (two local, the others in the US, EU or CN), its own
   endpoint and data class (raised to confidential for one request in ten), streams with a time
   to first token, 3% errors, confidential requests rerouted to a local model, a fifth of them
   denied instead.
2. A real gateway (`entrepot serve`) on that store, logged in with the admin key, and each page
   fetched five times: the first (cold) fetch, and the median and slowest of the other four.
   The analytics pages at their default range (the last 7 days) and over the whole ledger.

The target is under one second for every page. SQLite is the default store; `--store
postgresql` runs a private server as tests do (tests/backing.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from entrepot.config import StoreConfig
from entrepot.store.db import open_engine
from entrepot.store.keys import KeyStore
from entrepot.store.tables import usage_hourly, usage_hourly_egress
from entrepot.store.usage import insert_rows, record_encoder
from entrepot.types import UsageRecord

ADMIN = "console-benchmark-admin-key"
KEYS, TEAMS = 100, 10
MODELS = {  # alias: jurisdiction
    "local-qwen": "local",
    "local-llama": "local",
    "gpt-4o-mini": "US",
    "claude-haiku": "US",
    "mistral-small": "EU",
    "deepseek-v3": "CN",
    "qwen-plus": "CN",
    "gpt-4o": "US",
}
ENDPOINTS = ("chat.completions", "chat.completions", "chat.completions", "responses", "messages")
CLASSES = ("internal", "internal", "public", "confidential")
CHUNK = 20_000
RULE = "data class 'confidential' allows only [local]; deployment '{}' is in {}"


def ledger(rows: int, days: int, seed: int = 17) -> list[UsageRecord]:
    """`rows` records, oldest first, over the last `days` days."""
    rng = random.Random(seed)
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    start = end - dt.timedelta(days=days)
    span = (end - start).total_seconds()
    remote = [m for m, j in MODELS.items() if j != "local"]
    out = []
    for i in range(rows):
        key = min(int(rng.paretovariate(1.2)) - 1, KEYS - 1)  # a few keys do most of the work
        model = list(MODELS)[key % len(MODELS)] if rng.random() < 0.8 else rng.choice(remote)
        # A key's own class, raised to confidential when the detector finds personal data.
        data_class = CLASSES[key % len(CLASSES)] if rng.random() < 0.9 else "confidential"
        status, error, attempts = rng.choices([200, 429, 502], [97, 2, 1])[0], None, None
        if data_class == "confidential" and MODELS[model] != "local":
            attempts = [{"deployment": model, "outcome": "excluded", "reason": None}]
            attempts[0]["reason"] = RULE.format(model, MODELS[model])
            if rng.random() < 0.2:
                status, error = 403, "egress_denied"
            else:
                model = "local-qwen"
                attempts.append({"deployment": model, "outcome": "ok", "reason": None})
        stream = rng.random() < 0.4
        latency = int(rng.lognormvariate(6.2, 0.8))
        local = MODELS[model] == "local"
        out.append(
            UsageRecord(
                request_id=f"bench-{i}",
                endpoint=ENDPOINTS[key % len(ENDPOINTS)] if rng.random() < 0.95 else "responses",
                stream=stream,
                created_at=start + dt.timedelta(seconds=span * i / rows),
                key_id=key + 1,
                key_name=f"key-{key}",
                team=f"team-{key % TEAMS}",
                model_alias=model,
                deployment=model,
                provider="llama_cpp" if local else "openai_compatible",
                jurisdiction=MODELS[model],
                prompt_tokens=rng.randrange(20, 2000),
                completion_tokens=0 if status != 200 else rng.randrange(1, 800),
                usage_reported=True,
                cost_nanos=rng.randrange(10_000, 5_000_000),
                currency="USD",
                latency_ms=latency,
                ttft_ms=int(latency * rng.uniform(0.1, 0.5)) if stream else None,
                status=status,
                error_type=error,
                data_class=data_class,
                attempts=attempts,
            )
        )
    return out


def fill(engine: Engine, records: list[UsageRecord]) -> float:
    encode = record_encoder(engine.dialect.name)
    started = time.perf_counter()
    for first in range(0, len(records), CHUNK):
        insert_rows(engine, [encode(r) for r in records[first : first + CHUNK]])
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(url: str, directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    models = [
        {
            "alias": alias,
            "provider": "openai_compatible",
            "target": alias,
            "base_url": "http://127.0.0.1:9/v1",
            "api_key_env": "BENCH_UPSTREAM_KEY",
            "jurisdiction": jurisdiction,
        }
        for alias, jurisdiction in MODELS.items()
    ]
    config = directory / "console.yaml"
    config.write_text(yaml.safe_dump({"store": {"url": url}, "models": models}))
    port = free_port()
    env = {
        **os.environ,
        "ENTREPOT_ADMIN_KEY": ADMIN,
        "BENCH_UPSTREAM_KEY": "unused",
        "ENTREPOT_DATA_DIR": str(directory),
    }
    args = [sys.executable, "-m", "entrepot", "serve", "--port", str(port), "--config", str(config)]
    log = (directory / "serve.log").open("wb")
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health").status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the gateway did not start: see {directory / 'serve.log'}")


def log_in(client: httpx.Client) -> None:
    form = client.get("/ui/login").text
    token = re.search(r'name="login_token" value="([^"]*)"', form)
    assert token is not None
    answer = client.post("/ui/login", data={"login_token": token.group(1), "admin_key": ADMIN})
    assert answer.status_code == 303, answer.text


def pages(days: int) -> list[tuple[str, str]]:
    today = dt.datetime.now(dt.UTC).date()
    whole = {"from": (today - dt.timedelta(days=days)).isoformat(), "to": today.isoformat()}
    query = "&".join(f"{k}={v}" for k, v in whole.items())
    return [
        ("Overview, last 7 days by model", "/ui/overview"),
        ("Overview, last 7 days by key", "/ui/overview?split=key"),
        (f"Overview, {days} days, hour asked (by day)", f"/ui/overview?{query}&grain=hour"),
        (f"Overview, {days} days by day", f"/ui/overview?{query}&grain=day"),
        ("Where data went, last 7 days", "/ui/data"),
        (f"Where data went, {days} days", f"/ui/data?{query}"),
        ("Requests, newest", "/ui/requests"),
        ("Requests, one key", "/ui/requests?key=key-42"),
        ("Requests, model + 5xx", "/ui/requests?model=gpt-4o&status=5xx"),
        ("Requests, confidential + 4xx", "/ui/requests?data_class=confidential&status=4xx"),
        ("Evaluations", "/ui/evaluations"),
        ("Keys and budgets (100 keys)", "/ui/keys"),
        ("Models", "/ui/models"),
    ]


def measure(client: httpx.Client, path: str, repeats: int = 5) -> tuple[float, float, float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        answer = client.get(path)
        times.append(time.perf_counter() - started)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:500])
    return times[0], statistics.median(times[1:]), max(times[1:])


def deep_page(client: httpx.Client) -> tuple[str, str]:
    """The requests list 200 pages back, by following "Older requests" links."""
    path = "/ui/requests"
    for _ in range(200):
        found = re.search(r'href="([^"]+)" rel="next"', client.get(path).text)
        assert found is not None
        path = found.group(1).replace("&amp;", "&")
    return "Requests, page 201 (keyset)", path


def rollup_sizes(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        hourly = conn.execute(select(func.count()).select_from(usage_hourly)).scalar_one()
        egress = conn.execute(select(func.count()).select_from(usage_hourly_egress)).scalar_one()
    return int(hourly), int(egress)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    out = Console()
    with tempfile.TemporaryDirectory(prefix="entrepot-console-") as tmp:
        directory = Path(tmp)
        backing = None
        if args.store == "postgresql":
            from tests.backing import new_database, start_postgres

            backing = start_postgres()
            url = new_database(backing.url)
        else:
            url = f"sqlite:///{directory / 'entrepot.db'}"
        engine = open_engine(StoreConfig(url=url))
        keys = KeyStore(engine)
        for i in range(KEYS):
            keys.create(f"key-{i}", team=f"team-{i % TEAMS}")
        records = ledger(args.rows, args.days)
        seconds = fill(engine, records)
        del records
        hourly, egress = rollup_sizes(engine)
        out.print(
            f"{args.rows:,} rows written in {seconds:.1f} s ({args.rows / seconds:,.0f} rows/s,"
            f" rollup triggers included) on {args.store}; usage_hourly: {hourly:,} rows,"
            f" usage_hourly_egress: {egress:,} rows"
        )
        engine.dispose()
        process, base = serve(url, directory)
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                log_in(client)
                table = Table(title=f"Console pages at {args.rows:,} ledger rows ({args.store})")
                for column in ("page", "first", "median", "slowest"):
                    table.add_column(column, justify="left" if column == "page" else "right")
                for name, path in [*pages(args.days), deep_page(client)]:
                    first, median, slowest = measure(client, path)
                    table.add_row(name, *(f"{t * 1000:,.0f} ms" for t in (first, median, slowest)))
                out.print(table)
        finally:
            process.terminate()
            process.wait(timeout=30)
            if backing is not None:
                backing.stop()


if __name__ == "__main__":
    main()
