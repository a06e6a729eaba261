"""Local decode speed: the bundled model through the gateway against llama-cpp-python called
directly, same weights, same context size and threads, greedy decoding of the same prompt.

Each side runs alone (the other is idle), taking turns; the median tokens/s of each is kept, after
a first run that warms both. Both include the prompt's evaluation, which llama-cpp-python's prefix
cache makes near-free after the first run.
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


def _direct(llm: Llama, max_tokens: int) -> tuple[float, int]:
    started = time.perf_counter()
    answer = llm.create_chat_completion(MESSAGES, max_tokens=max_tokens, temperature=0)
    elapsed = time.perf_counter() - started
    tokens: int = answer["usage"]["completion_tokens"]  # type: ignore[index]
    return tokens / elapsed, tokens


def _through_gateway(client: httpx.Client, url: str, max_tokens: int) -> tuple[float, int]:
    body = {
        "model": BUNDLED_ALIAS,
        "messages": MESSAGES,
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    started = time.perf_counter()
    response = client.post(url + "/v1/chat/completions", json=body)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    tokens: int = response.json()["usage"]["completion_tokens"]
    return tokens / elapsed, tokens


def measure_decode(tmp: Path, threads: int, max_tokens: int = 256, runs: int = 7) -> DecodeResult:
    """Runs alternate between the two sides, so drift on a noisy machine hits both alike."""
    local = {"n_ctx": N_CTX, "n_threads": threads}
    model = {"alias": BUNDLED_ALIAS, "provider": "llama_cpp", "target": BUNDLED_TARGET}
    gateway = start_gateway(tmp, "entrepot-local", {"models": [{**model, "local": local}]})
    llm = Llama(model_path=str(resolve_weights(BUNDLED_TARGET)), verbose=False, **local)
    direct: list[float] = []
    through: list[float] = []
    try:
        with httpx.Client(timeout=300) as client:
            for run in range(runs + 1):
                direct_rate, tokens = _direct(llm, max_tokens)
                gateway_rate, gateway_tokens = _through_gateway(client, gateway.url, max_tokens)
                if gateway_tokens != tokens:
                    raise RuntimeError(
                        f"{gateway_tokens} tokens through the gateway, {tokens} direct"
                    )
                if run:
                    direct.append(direct_rate)
                    through.append(gateway_rate)
    finally:
        gateway.stop()
    return DecodeResult(statistics.median(direct), statistics.median(through), tokens, threads)
