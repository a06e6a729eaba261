"""What a route's `on_refusal: fallback` costs: time to the first byte of a streamed answer with
and without the hold-back, against a fake upstream sending one word every `--pace` ms, and the
CPU the classifier takes per complete answer.

    .venv/bin/python benchmarks/refusal_holdback.py [--pace 20] [--requests 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import UPSTREAM_KEY, fake_model, start_fake, start_gateway

from entrepot.routing.refusal import completion_refusal

WINDOWS = (None, 0, 8, 32, 64)  # None: the setting off


def first_byte(url: str, model: str) -> float:
    """Seconds from sending the request to the first line carrying answer text."""
    body = {"model": model, "messages": [{"role": "user", "content": "go"}], "stream": True}
    started = time.perf_counter()
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as response:
        for line in response.iter_lines():
            if '"content":"word' in line:
                return time.perf_counter() - started
    raise RuntimeError("no text streamed")


def alias(window: int | None) -> str:
    return "plain" if window is None else f"held-{window}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pace", type=int, default=20, help="ms between the upstream's words")
    parser.add_argument("--requests", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="entrepot-holdback-"))
    fake = start_fake(tmp, "refusing_upstream", "/v1/models")
    models = [fake_model(fake, alias(w), f"paced-{args.pace}") for w in WINDOWS]
    routes: dict[str, Any] = {
        alias(w): {"on_refusal": "fallback", "refusal_holdback_tokens": w}
        for w in WINDOWS
        if w is not None
    }
    config = {"models": models, "routes": routes}
    gateway = start_gateway(tmp, "gateway", config, {"FAKE_UPSTREAM_KEY": UPSTREAM_KEY})
    try:
        table = Table(title=f"time to first byte, upstream at one word per {args.pace} ms")
        for column in ("hold-back (tokens)", "median ms", "min ms", "added ms"):
            table.add_column(column, justify="right")
        times: dict[int | None, list[float]] = {window: [] for window in WINDOWS}
        for window in WINDOWS:
            first_byte(gateway.url, alias(window))  # warm up
        for _ in range(args.requests):  # round-robin, so a busy moment costs every window alike
            for window in WINDOWS:
                times[window].append(first_byte(gateway.url, alias(window)))
        plain = 0.0
        for window in WINDOWS:
            median = statistics.median(times[window]) * 1000
            plain = median if window is None else plain
            label = "off" if window is None else str(window)
            added = "" if window is None else f"{median - plain:.0f}"
            table.add_row(label, f"{median:.0f}", f"{min(times[window]) * 1000:.0f}", added)
        Console().print(table)
    finally:
        gateway.stop()
        fake.stop()
    answer = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "The capital is Paris. " * 40},
                "finish_reason": "stop",
            }
        ]
    }
    runs = 20_000
    seconds = timeit.timeit(lambda: completion_refusal(answer), number=runs)
    print(f"classifying a complete 880-character answer: {seconds / runs * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
