"""The in-process llama.cpp provider on the bundled model: its usage counts agree with
llama-cpp-python's own accounting, streams bill like plain answers, and a full queue is a clean
503 instead of a pile-up."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_cpp import Llama

from entrepot.config import BUNDLED_ALIAS, BUNDLED_TARGET, LocalOptions, ModelConfig
from entrepot.exceptions import InvalidRequestError, OverloadedError
from entrepot.providers.llama_cpp import LlamaCppProvider
from entrepot.providers.local_generation import resolve_weights

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three colours."},
]


def _provider(**local: Any) -> LlamaCppProvider:
    options = LocalOptions(n_threads=2, **local)
    return LlamaCppProvider(
        ModelConfig(alias=BUNDLED_ALIAS, provider="llama_cpp", target=BUNDLED_TARGET, local=options)
    )


async def _with_provider(provider: LlamaCppProvider, work: Any) -> Any:
    await provider.start()
    try:
        return await work(provider)
    finally:
        await provider.close()


def test_usage_matches_llama_cpp_own_accounting() -> None:
    body = {"messages": MESSAGES, "max_tokens": 24, "temperature": 0}
    ours = asyncio.run(_with_provider(_provider(), lambda p: p.chat(body)))
    reference = Llama(str(resolve_weights(BUNDLED_TARGET)), n_ctx=2048, n_threads=2, verbose=False)
    theirs: Any = reference.create_chat_completion(
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=24,
        temperature=0,
    )
    assert ours["usage"]["prompt_tokens"] == theirs["usage"]["prompt_tokens"]
    assert ours["usage"]["completion_tokens"] == theirs["usage"]["completion_tokens"]
    assert ours["choices"][0]["message"]["content"] == theirs["choices"][0]["message"]["content"]


def test_stream_bills_exactly_like_a_plain_answer() -> None:
    body = {"messages": MESSAGES, "max_tokens": 20, "temperature": 0}

    async def both(provider: LlamaCppProvider) -> tuple[Any, list[Any]]:
        plain = await provider.chat(body)
        chunks = [c async for c in provider.stream_chat(body)]
        return plain, chunks

    plain, chunks = asyncio.run(_with_provider(_provider(), both))
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert streamed == plain["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]


def test_full_queue_is_refused_not_queued_forever() -> None:
    body = {"messages": MESSAGES, "max_tokens": 16, "temperature": 0}

    async def crowd(provider: LlamaCppProvider) -> list[Any]:
        return await asyncio.gather(
            *(provider.chat(body) for _ in range(3)), return_exceptions=True
        )

    results = asyncio.run(_with_provider(_provider(max_queue=0), crowd))
    refused = [r for r in results if isinstance(r, OverloadedError)]
    answered = [r for r in results if isinstance(r, dict)]
    assert len(answered) == 1 and len(refused) == 2
    assert refused[0].status_code == 503


def test_prompt_beyond_the_context_is_a_client_error() -> None:
    body = {"messages": [{"role": "user", "content": "word " * 600}], "max_tokens": 10}
    with pytest.raises(InvalidRequestError) as caught:
        asyncio.run(_with_provider(_provider(n_ctx=256), lambda p: p.chat(body)))
    assert caught.value.code == "context_length_exceeded"


def test_local_model_refuses_what_it_cannot_do() -> None:
    tools = [{"type": "custom", "custom": {"name": "f"}}]
    image = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]
    cases: list[dict[str, Any]] = [
        {"messages": MESSAGES, "tools": tools},
        {"messages": [{"role": "user", "content": image}]},
    ]
    for body in cases:
        with pytest.raises(InvalidRequestError):
            asyncio.run(_with_provider(_provider(), lambda p, b=body: p.chat(b)))
