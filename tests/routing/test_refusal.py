"""The refusal classifier on the serving path, a stream's held-back window, and the router's
handling of a refusal (the next deployment, its circuit untouched), in isolation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from entrepot.api.holdback import Held
from entrepot.api.streaming import OpenedStream
from entrepot.config import BreakerConfig, Config, ModelConfig, RouteConfig
from entrepot.exceptions import ModelRefusedError, UpstreamRejectedError
from entrepot.routing.refusal import completion_refusal, host_filtered
from entrepot.routing.router import Router
from entrepot.routing.table import Deployment, RoutingTable
from entrepot.types import JSON, Attempt


def whole(content: str | None, finish: str = "stop", **message: Any) -> JSON:
    choice = {"index": 0, "message": {"role": "assistant", "content": content, **message}}
    return {"choices": [{**choice, "finish_reason": finish}]}


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (whole("That's beyond my current scope. Let’s talk about something else."), "canned"),
        (whole("I'm sorry, but I can't share that."), "refusal phrase"),
        (whole("抱歉，我无法回答这个问题。"), "refusal phrase"),
        (whole(""), "empty answer"),
        (whole(None), "empty answer"),
        (whole("Here is", "content_filter"), "finish_reason content_filter"),
        (whole(None, refusal="I can't assist with that."), "refusal field"),
        (whole("<think>\n\n</think>\n\nI cannot answer that question."), "refusal phrase"),
    ],
)
def test_refusals_in_a_complete_answer(answer: JSON, why: str) -> None:
    found = completion_refusal(answer)
    assert found is not None and found.startswith(why)


@pytest.mark.parametrize(
    "answer",
    [
        whole("Paris. " + "It is lovely in spring. " * 13 + "I can't stress that enough."),
        whole("<think>I can't recall; let me think.</think>Paris."),
        whole(None, "tool_calls", tool_calls=[{"id": "c", "type": "function"}]),
        {"choices": [whole("I cannot.")["choices"][0], {**whole("Paris")["choices"][0]}]},
        {"object": "list", "data": [{"embedding": [0.1]}]},
        {"choices": []},
    ],
    ids=["phrase-late", "thought", "tool-call", "one-choice-answers", "embedding", "no-choice"],
)
def test_answers_that_are_no_refusal(answer: JSON) -> None:
    assert completion_refusal(answer) is None


def test_host_filter_errors() -> None:
    assert host_filtered("400 upstream_rejected: upstream x: Content Exists Risk")
    assert host_filtered("data_inspection_failed: Input data may contain inappropriate content")
    assert not host_filtered("upstream x failed: 500 upstream exploded")


def chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> JSON:
    if content is not None:
        delta["content"] = content
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def held(chunks: list[JSON], window: int, fail: Exception | None = None) -> Held:
    async def upstream() -> AsyncIterator[JSON]:
        for item in chunks[1:]:
            yield item
        if fail is not None:
            raise fail

    stream = Held(OpenedStream(chunks[0], upstream(), {"messages": []}))
    await stream.fill(window)
    return stream


async def relayed(stream: Held) -> list[JSON]:
    opened = stream.release()
    return [opened.first, *[c async for c in opened.chunks]] if opened.first else []


def test_a_stream_is_held_for_its_window_then_relayed_chunk_for_chunk() -> None:
    words = [chunk(f" w{i}") for i in range(6)]
    chunks = [chunk("", role="assistant"), *words, chunk(None, "stop")]

    async def hold_then_relay() -> list[JSON]:
        stream = await held(chunks, window=3)
        assert len(stream.chunks) == 4 and not stream.ended  # the role chunk and three words
        assert stream.refusal() is None
        return await relayed(stream)

    assert asyncio.run(hold_then_relay()) == chunks


@pytest.mark.parametrize(
    ("chunks", "why"),
    [
        ([chunk("", role="assistant"), chunk(None, "stop")], "empty answer"),
        ([chunk("I can't"), chunk(" help"), chunk(" with"), chunk(" that")], "refusal phrase"),
        ([chunk("Here"), chunk(None, "content_filter")], "finish_reason content_filter"),
        ([chunk("", role="assistant"), chunk(refusal="I can't assist.")], "refusal field"),
    ],
)
def test_a_refusal_in_the_window_is_caught(chunks: list[JSON], why: str) -> None:
    found = asyncio.run(held(chunks, window=3)).refusal()
    assert found is not None and found.startswith(why)


def test_nothing_visible_yet_is_not_an_empty_answer() -> None:
    thinking = [chunk("<think>"), chunk("I can't"), chunk(" recall"), chunk(" this")]
    assert asyncio.run(held(thinking, window=3)).refusal() is None
    reasoning = [chunk(reasoning_content=f"step {i}") for i in range(5)]
    assert asyncio.run(held(reasoning, window=3)).refusal() is None


def test_a_failure_in_the_window_is_a_refusal_only_from_a_content_filter() -> None:
    filtered = UpstreamRejectedError("upstream x: Content Exists Risk", status_code=400)
    assert "host filter" in str(asyncio.run(held([chunk("a")], 3, filtered)).refusal())
    broken = UpstreamRejectedError("upstream x: bad gateway", status_code=400)
    stream = asyncio.run(held([chunk("a")], 3, broken))
    assert stream.refusal() is None
    with pytest.raises(UpstreamRejectedError):
        asyncio.run(relayed(stream))  # raised where the relay meets it, after what came before


def deployments() -> tuple[Config, list[Deployment]]:
    models = [
        ModelConfig(
            alias="m", name=name, provider="openai_compatible", target="t", base_url="http://x/v1"
        )
        for name in ("a", "b")
    ]
    config = Config(
        models=models,
        routes={"m": RouteConfig(backoff_seconds=0)},
        breaker=BreakerConfig(failure_threshold=1, cooldown_seconds=10),
    )
    return config, RoutingTable(config).resolve("m")


def test_a_refusal_moves_on_without_touching_the_circuit() -> None:
    config, table = deployments()
    attempts: list[Attempt] = []

    async def operation(deployment: Deployment) -> str:
        if deployment.name == "a":
            raise ModelRefusedError("a", "canned refusal")
        return "answer"

    result, chosen = asyncio.run(Router(config).call("m", table, operation, attempts))
    assert (result, chosen.name) == ("answer", "b")
    assert [a.as_json() for a in attempts] == [
        {"deployment": "a", "outcome": "refused", "reason": "canned refusal"},
        {"deployment": "b", "outcome": "ok", "reason": None},
    ]
    assert table[0].breaker.state == "closed" and table[0].in_flight == 0  # threshold is 1


def test_refused_everywhere_ends_with_the_refusal() -> None:
    config, table = deployments()

    async def operation(deployment: Deployment) -> str:
        raise ModelRefusedError(deployment.name, "empty answer")

    with pytest.raises(ModelRefusedError):
        asyncio.run(Router(config).call("m", table, operation, []))
    assert [d.breaker.state for d in table] == ["closed", "closed"]
