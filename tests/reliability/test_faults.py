"""Each upstream fault, met by a client on the official SDK: a fallback answer where a healthy
deployment follows the faulty one, otherwise an error in OpenAI's format with the right status;
exactly one usage record per request, listing every attempt and billing what was generated (a
stream cut off mid-answer by the gateway's own count); and other clients served while an upstream
hangs or dribbles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from tests.conftest import Server, usage_record
from tests.fakes.openai_upstream import RETRY_AFTER_SECONDS
from tests.reliability.harness import (
    AFTER_FIRST_BYTE,
    BEFORE_FIRST_BYTE,
    GENERATED_UNSEEN,
    HEALTHY,
    OUTPUT_CAP,
    expected_cost_nanos,
    start_fault_gateway,
    wait_for_upstream_request,
)
from tests.schemas import validate

QUESTION = "hello there"
ANSWER = "echo: hello there"
TOKENS = (2, 3)


@pytest.fixture(scope="module")
def fault_gateway(
    tmp_path_factory: pytest.TempPathFactory, fake_openai: Server
) -> Iterator[Server]:
    server = start_fault_gateway(tmp_path_factory, fake_openai, "faults")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sdk(fault_gateway: Server) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=fault_gateway.url + "/v1", api_key="unused", max_retries=0, timeout=30
    )


@dataclass(frozen=True, slots=True)
class Answer:
    request_id: str
    deployment: str
    text: str
    prompt_tokens: int
    completion_tokens: int


def ask(sdk: openai.OpenAI, model: str, stream: bool, text: str = QUESTION) -> Answer:
    """One chat request; a stream asks for its usage so the client sees what it is billed."""
    messages: Any = [{"role": "user", "content": text}]
    if not stream:
        raw = sdk.chat.completions.with_raw_response.create(model=model, messages=messages)
        completion = raw.parse()
        assert completion.usage is not None
        return Answer(
            raw.headers["x-request-id"],
            raw.headers["x-entrepot-deployment"],
            completion.choices[0].message.content or "",
            completion.usage.prompt_tokens,
            completion.usage.completion_tokens,
        )
    raw_stream = sdk.chat.completions.with_raw_response.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    pieces: list[str] = []
    usage = None
    for chunk in raw_stream.parse():
        pieces += [choice.delta.content or "" for choice in chunk.choices]
        usage = chunk.usage or usage
    assert usage is not None
    return Answer(
        raw_stream.headers["x-request-id"],
        raw_stream.headers["x-entrepot-deployment"],
        "".join(pieces),
        usage.prompt_tokens,
        usage.completion_tokens,
    )


def attempt(deployment: str, reason: str | None = None) -> dict[str, Any]:
    return {"deployment": deployment, "outcome": "failed" if reason else "ok", "reason": reason}


def billed(record: dict[str, Any]) -> tuple[int, int, int | None]:
    return record["prompt_tokens"], record["completion_tokens"], record["cost_nanos"]


def assert_healthy_answer(sdk: openai.OpenAI) -> None:
    assert ask(sdk, HEALTHY, stream=False).text == ANSWER


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("fault", sorted(BEFORE_FIRST_BYTE))
def test_fault_without_fallback_is_an_openai_error(
    fault_gateway: Server, sdk: openai.OpenAI, fault: str, stream: bool
) -> None:
    status, code = BEFORE_FIRST_BYTE[fault]
    messages: Any = [{"role": "user", "content": QUESTION}]
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model=f"solo/{fault}", messages=messages, stream=stream)
    response = caught.value.response
    assert response.status_code == status
    body = response.json()
    validate(body, "ErrorResponse")
    assert body["error"]["code"] == code
    if fault == "rate-limited":
        assert isinstance(caught.value, openai.RateLimitError)
        assert response.headers["retry-after"] == RETRY_AFTER_SECONDS

    record = usage_record(fault_gateway, response.headers["x-request-id"])
    assert (record["status"], record["error_type"]) == (status, code)
    assert bool(record["stream"]) is stream
    # A failed generation is never sent to the same deployment again.
    assert json.loads(record["attempts"]) == [attempt(f"solo-{fault}", code)]
    if fault in GENERATED_UNSEEN:
        prompt = record["prompt_tokens"]
        cost = expected_cost_nanos(f"solo-{fault}", prompt, OUTPUT_CAP)
        assert billed(record) == (prompt, OUTPUT_CAP, cost) and prompt > 0
        assert record["usage_estimated"]
    else:
        assert billed(record) == (0, 0, None)
    assert_healthy_answer(sdk)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("fault", sorted(BEFORE_FIRST_BYTE))
def test_fallback_answers_and_what_was_generated_is_billed(
    fault_gateway: Server, sdk: openai.OpenAI, fault: str, stream: bool
) -> None:
    answer = ask(sdk, f"fallback/{fault}", stream)
    fallback = f"{fault}-fallback"
    assert (answer.text, answer.deployment) == (ANSWER, fallback)
    assert (answer.prompt_tokens, answer.completion_tokens) == TOKENS

    record = usage_record(fault_gateway, answer.request_id)
    assert (record["status"], record["error_type"], record["deployment"]) == (200, None, fallback)
    _, code = BEFORE_FIRST_BYTE[fault]
    assert json.loads(record["attempts"]) == [attempt(f"{fault}-first", code), attempt(fallback)]
    if fault in GENERATED_UNSEEN:  # the answer, and the first deployment's unseen generation
        prompt = record["prompt_tokens"] - TOKENS[0]
        first = expected_cost_nanos(f"{fault}-first", prompt, OUTPUT_CAP)
        answer_cost = expected_cost_nanos(fallback, *TOKENS)
        assert billed(record) == (TOKENS[0] + prompt, TOKENS[1] + OUTPUT_CAP, answer_cost + first)
        assert record["usage_estimated"]
    else:
        assert billed(record) == (*TOKENS, expected_cost_nanos(fallback, *TOKENS))


@pytest.mark.parametrize("alias", ["solo", "fallback"])
@pytest.mark.parametrize("fault", AFTER_FIRST_BYTE)
def test_fault_after_the_first_byte_ends_the_stream_with_an_error(
    fault_gateway: Server, sdk: openai.OpenAI, fault: str, alias: str
) -> None:
    messages: Any = [{"role": "user", "content": QUESTION}]
    raw = sdk.chat.completions.with_raw_response.create(
        model=f"{alias}/{fault}", messages=messages, stream=True
    )
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in raw.parse():
            received += [choice.delta.content or "" for choice in chunk.choices]
    assert "".join(received) == "echo: hello"
    validate({"error": caught.value.body}, "ErrorResponse")
    assert caught.value.code == "bad_gateway"

    # The client already holds part of this deployment's answer: no fallback may follow it.
    deployment = f"solo-{fault}" if alias == "solo" else f"{fault}-first"
    record = usage_record(fault_gateway, raw.headers["x-request-id"])
    assert (record["status"], record["error_type"]) == (502, "bad_gateway")
    assert record["deployment"] == deployment
    assert json.loads(record["attempts"]) == [attempt(deployment)]
    # Billed for what was generated, by the gateway's count (`ledger/estimate.py`): "echo:" and
    # " hello" are 2 chunks, 11 bytes -> 3 tokens; the prompt, "user" and "hello there", is
    # 15 bytes -> 4 tokens plus 4 for the message.
    assert billed(record) == (8, 3, expected_cost_nanos(deployment, 8, 3))
    assert record["usage_estimated"] == 1
    assert_healthy_answer(sdk)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_an_answer_sent_byte_by_byte_arrives_whole(
    fault_gateway: Server, sdk: openai.OpenAI, stream: bool
) -> None:
    answer = ask(sdk, "solo/slow-bytes", stream)
    assert (answer.text, answer.prompt_tokens, answer.completion_tokens) == (ANSWER, *TOKENS)
    record = usage_record(fault_gateway, answer.request_id)
    assert (record["status"], record["error_type"]) == (200, None)
    assert json.loads(record["attempts"]) == [attempt("solo-slow-bytes")]
    assert billed(record) == (*TOKENS, expected_cost_nanos("solo-slow-bytes", *TOKENS))


@pytest.mark.parametrize(
    ("model", "stream"),
    [("solo/hang", False), ("solo/hang", True), ("solo/slow-bytes", True)],
    ids=["hang-json", "hang-stream", "slow-stream"],
)
def test_other_clients_are_served_while_an_upstream_holds_a_request(
    fault_gateway: Server, fake_openai: Server, sdk: openai.OpenAI, model: str, stream: bool
) -> None:
    held_text = f"held {model} {stream}"
    with ThreadPoolExecutor(max_workers=1) as pool:
        held = pool.submit(ask, sdk, model, stream, held_text)
        wait_for_upstream_request(fake_openai, held_text)
        served = [ask(sdk, HEALTHY, s, f"meanwhile {i}") for i, s in enumerate([False, True])]
        still_held = not held.done()
        failure = held.exception()
    assert still_held
    assert [a.text for a in served] == ["echo: meanwhile 0", "echo: meanwhile 1"]
    for answer in served:
        assert usage_record(fault_gateway, answer.request_id)["status"] == 200
    if model == "solo/hang":
        assert isinstance(failure, openai.APIStatusError) and failure.status_code == 504
        record = usage_record(fault_gateway, failure.response.headers["x-request-id"])
        assert record["status"] == 504
    else:
        assert failure is None
        assert held.result().text == f"echo: {held_text}"
