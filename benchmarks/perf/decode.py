"""Local decode speed: the bundled model through the gateway against llama-cpp-python called
directly, same weights, same context size and threads, greedy decoding of the same prompt.

Each side runs alone (the other is idle), a few times; the median tokens/s is kept. Both include
the prompt's evaluation, which llama-cpp-python's prefix cache makes near-free after the first run.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from llama_cpp import Llama
from tests.conftest import start_gateway

from entrepot.config import BUNDLED_ALIAS, BUNDLED_TARGET
from entrepot.providers.local_generation import resolve_weights

MESSAGES = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
N_CTX = 2048


@dataclass(frozen=True)
class DecodeResult:
    direct_tokens_per_second: float
    gateway_tokens_per_second: float
    tokens: int
    threads: int

    @property
    def ratio(self) -> float:
        return self.gateway_tokens_per_second / self.direct_tokens_per_second


def _direct(threads: int, max_tokens: int, runs: int) -> tuple[float, int]:
    llm = Llama(
        model_path=str(resolve_weights(BUNDLED_TARGET)),
        n_ctx=N_CTX,
        n_threads=threads,
        verbose=False,
    )
    rates, tokens = [], 0
    for _ in range(runs + 1):
        started = time.perf_counter()
        answer = llm.create_chat_completion(MESSAGES, max_tokens=max_tokens, temperature=0)
        elapsed = time.perf_counter() - started
        tokens = answer["usage"]["completion_tokens"]  # type: ignore[index]
        rates.append(tokens / elapsed)
    del llm
    return statistics.median(rates[1:]), tokens


def _through_gateway(tmp: Path, threads: int, max_tokens: int, runs: int) -> float:
    config = {
        "models": [
            {
                "alias": BUNDLED_ALIAS,
                "provider": "llama_cpp",
                "target": BUNDLED_TARGET,
                "local": {"n_ctx": N_CTX, "n_threads": threads},
            }
        ]
    }
    gateway = start_gateway(tmp, "entrepot-local", config)
    try:
        rates = []
        with httpx.Client(timeout=300) as client:
            for _ in range(runs + 1):
                started = time.perf_counter()
                response = client.post(
                    gateway.url + "/v1/chat/completions",
                    json={
                        "model": BUNDLED_ALIAS,
                        "messages": MESSAGES,
                        "max_tokens": max_tokens,
                        "temperature": 0,
                    },
                )
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                rates.append(response.json()["usage"]["completion_tokens"] / elapsed)
        return statistics.median(rates[1:])
    finally:
        gateway.stop()


def measure_decode(tmp: Path, threads: int, max_tokens: int = 256, runs: int = 5) -> DecodeResult:
    direct, tokens = _direct(threads, max_tokens, runs)
    through = _through_gateway(tmp, threads, max_tokens, runs)
    return DecodeResult(direct, through, tokens, threads)
