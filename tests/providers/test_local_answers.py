"""The local provider answers like the API it imitates: no half characters, fresh samples unless
a seed is given, and the prompt billed once however many choices are asked for."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from entrepot.config import BUNDLED_ALIAS, BUNDLED_TARGET, LocalOptions, ModelConfig
from entrepot.providers.llama_cpp import LlamaCppProvider

# The bundled model answers this in Japanese, two byte-level tokens per character at temperature
# 0, so an odd max_tokens cuts a character in half.
JAPANESE = [{"role": "user", "content": "Translate to Japanese: good morning"}]
STORY = [{"role": "user", "content": "Tell me a story."}]


def _run(work: Callable[[LlamaCppProvider], Awaitable[Any]]) -> Any:
    options = LocalOptions(n_threads=1)
    provider = LlamaCppProvider(
        ModelConfig(alias=BUNDLED_ALIAS, provider="llama_cpp", target=BUNDLED_TARGET, local=options)
    )

    async def main() -> Any:
        await provider.start()
        try:
            return await work(provider)
        finally:
            await provider.close()

    return asyncio.run(main())


def _texts(answer: dict[str, Any]) -> list[str]:
    return [choice["message"]["content"] for choice in answer["choices"]]


def test_a_character_cut_by_max_tokens_is_held_back_not_replaced() -> None:
    async def answers(provider: LlamaCppProvider) -> tuple[Any, ...]:
        cut = {"messages": JAPANESE, "max_tokens": 5, "temperature": 0}
        plain = await provider.chat(cut)
        chunks = [c async for c in provider.stream_chat(cut)]
        longer = await provider.chat({**cut, "max_tokens": 6})
        stars = {"prompt": "Stars: 🌟🌟🌟", "max_tokens": 4, "temperature": 0}  # 3 tokens each
        completion = await provider.complete(stars)
        completion_chunks = [c async for c in provider.stream_complete(stars)]
        return plain, chunks, longer, completion, completion_chunks

    plain, chunks, longer, completion, completion_chunks = _run(answers)
    text = plain["choices"][0]["message"]["content"]
    deltas = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
    assert "\ufffd" not in text and not any("\ufffd" in d for d in deltas)
    assert "".join(deltas) == text and text and longer["choices"][0]["message"]["content"] != text
    assert longer["choices"][0]["message"]["content"].startswith(text)
    assert plain["usage"]["completion_tokens"] == 5  # the held-back token is still billed
    completed = completion["choices"][0]["text"]
    assert completed and "\ufffd" not in completed
    assert "".join(c["choices"][0]["text"] for c in completion_chunks if c["choices"]) == completed


def test_unseeded_sampling_differs_per_call_and_per_choice() -> None:
    body = {"messages": STORY, "max_tokens": 8, "temperature": 1.0, "n": 3}
    single = {**body, "n": 1}

    async def answers(provider: LlamaCppProvider) -> tuple[list[list[str]], list[str]]:
        choices = [_texts(await provider.chat(body)) for _ in range(2)]
        # The first choice too: one answer per call, each call sampled afresh (a fixed default
        # seed for the first choice made every single-answer call the same).
        singles = [_texts(await provider.chat(single))[0] for _ in range(4)]
        return choices, singles

    (first, second), singles = _run(answers)
    assert len(set(first)) > 1 and len(set(second)) > 1
    assert first != second
    assert len(set(singles)) > 1


def test_a_given_seed_stays_reproducible() -> None:
    body = {"messages": STORY, "max_tokens": 8, "temperature": 1.0, "n": 2, "seed": 42}

    async def twice(provider: LlamaCppProvider) -> list[list[str]]:
        streamed = [c async for c in provider.stream_chat(body)]
        joined = ["", ""]
        for chunk in streamed:
            for choice in chunk["choices"]:
                joined[choice["index"]] += choice["delta"].get("content", "")
        return [_texts(await provider.chat(body)), _texts(await provider.chat(body)), joined]

    first, second, streamed = _run(twice)
    assert first == second == streamed
    assert first[0] != first[1]


def test_n_choices_bill_the_prompt_once() -> None:
    chat = {"messages": STORY, "max_tokens": 3, "temperature": 0}
    text = {"prompt": "Once upon a time", "max_tokens": 3, "temperature": 0}

    async def usages(provider: LlamaCppProvider) -> list[tuple[Any, Any]]:
        pairs = []
        for single, stream in (
            (provider.chat, provider.stream_chat),
            (provider.complete, provider.stream_complete),
        ):
            body = chat if single == provider.chat else text
            one = (await single(body))["usage"]
            two = (await single({**body, "n": 2}))["usage"]
            streamed = [c async for c in stream({**body, "n": 2})][-1]["usage"]
            pairs += [(one, two), (one, streamed)]
        return pairs

    for one, two in _run(usages):
        assert two["prompt_tokens"] == one["prompt_tokens"]
        assert two["completion_tokens"] == 2 * one["completion_tokens"]
        assert two["total_tokens"] == two["prompt_tokens"] + two["completion_tokens"]
