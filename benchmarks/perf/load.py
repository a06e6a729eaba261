"""Load from a second process: wrk for throughput and latency, aiohttp for time to first byte.

wrk is driven by a generated Lua script that sets the request and prints its summary as one JSON
line, so nothing depends on the layout of wrk's human-readable report.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"errors": %d, "non2xx": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


PROMPT = "Say hello to the harbour master."
# The same request in each surface's format: (path, body without `model` and `stream`).
SURFACES = {
    "chat": ("/v1/chat/completions", {"messages": [{"role": "user", "content": PROMPT}]}),
    "responses": ("/v1/responses", {"input": PROMPT, "store": False}),
    "responses stored": ("/v1/responses", {"input": PROMPT}),
    "messages": (
        "/v1/messages",
        {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64},
    ),
}


@dataclass(frozen=True)
class Target:
    """One thing to load: where to send requests, in which surface's format (chat completions
    unless said otherwise), which model name, which key."""

    name: str
    url: str
    model: str
    key: str
    surface: str = "chat"

    @property
    def path(self) -> str:
        return SURFACES[self.surface][0]

    def body(self, stream: bool = False) -> bytes:
        return orjson.dumps({"model": self.model, **SURFACES[self.surface][1], "stream": stream})


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def wrk(
    target: Target,
    connections: int,
    seconds: float,
    tmp: Path,
    stream: bool = False,
) -> LoadResult:
    """Load `target` with one wrk thread for `seconds` (whole seconds: wrk's resolution)."""
    script = tmp / f"wrk-{target.name}.lua".replace(" ", "-")
    script.write_text(WRK_SCRIPT.format(body=target.body(stream).decode(), key=target.key))
    command = [
        shutil.which("wrk") or "/usr/bin/wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        target.url + target.path,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    summary = json.loads(output.strip().splitlines()[-1])
    return LoadResult(
        requests=summary["requests"],
        seconds=summary["duration_us"] / 1e6,
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        failures=summary["errors"] + summary["non2xx"],
    )


async def _first_byte_times(target: Target, count: int) -> list[float]:
    headers = {"Authorization": f"Bearer {target.key}", "Content-Type": "application/json"}
    body = target.body(stream=True)
    times: list[float] = []
    async with aiohttp.ClientSession(headers=headers) as session:
        for _ in range(count):
            started = time.perf_counter()
            async with session.post(target.url + target.path, data=body) as response:
                first = await response.content.readany()
                times.append(time.perf_counter() - started)
                if response.status != 200 or not first.startswith((b"data:", b"event:")):
                    raise RuntimeError(f"{target.name} did not stream: {response.status} {first!r}")
                await response.read()
    return times


def first_byte_ms(target: Target, count: int) -> float:
    """Median time from sending a streaming request to its first body byte, one connection."""
    asyncio.run(_first_byte_times(target, max(10, count // 10)))
    return statistics.median(asyncio.run(_first_byte_times(target, count))) * 1000
