"""A route's `on_refusal: fallback` through a real gateway on loopback, with the official OpenAI
and Anthropic clients, against a fake upstream whose first deployment refuses (a canned refusal,
a refusal phrase, an empty answer, `finish_reason: content_filter`, a content-filter error) and
whose second answers — streamed and not, by each door; the refused generation billed to the
nano, the record flagged, the refusal counted in /metrics; and with the setting off, or on an
answer that is no refusal, nothing changed.

Token counts are the fake's word counts. Refusing deployments cost 1000/2000 per million input
and output tokens (1_000_000 and 2_000_000 nanos a token), answering ones 3000/5000."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import (
    ADMIN_KEY,
    UPSTREAM_KEY,
    Server,
    admin,
    create_key,
    fake_model,
    start_fake,
    start_gateway,
    usage_record,
)
from tests.fakes.refusing_upstream import ANSWER, CANNED, LATE, PACED

REFUSING = {"input_per_1m": "1000", "output_per_1m": "2000", "as_of": "2026-11-01"}
ANSWERING = {"input_per_1m": "3000", "output_per_1m": "5000", "as_of": "2026-11-01"}
A_IN, A_OUT, B_IN, B_OUT = 1_000_000, 2_000_000, 3_000_000, 5_000_000
QUESTION = "What is the capital of France?"  # 6 words
ANSWER_WORDS = 9
# kind of refusal -> words the refusing model generated
KINDS = {"canned": 10, "phrase": 9, "empty": 0, "filtered": 2, "filter-error": 0}
PACE_MS = 20
FALLBACK = {"on_refusal": "fallback", "backoff_seconds": 0}


@pytest.fixture(scope="module")
def refusing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_fake(tmp_path_factory.mktemp("refusing"), "refusing_upstream", "/v1/models")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, refusing: Server) -> Iterator[Server]:
    def model(alias: str, target: str, name: str, price: dict[str, str]) -> dict[str, Any]:
        return fake_model(refusing, alias, target, name=name, price=price)

    def pair(alias: str, refuser: str, prefix: str) -> list[dict[str, Any]]:
        return [
            model(alias, refuser, f"{prefix}-refuses", REFUSING),
            model(alias, "answers", f"{prefix}-answers", ANSWERING),
        ]

    models = [m for kind in KINDS for m in pair(f"guarded/{kind}", kind, kind)]
    models += pair("plain/canned", "canned", "plain-canned")
    models += pair("guarded/late", "late", "late")
    models += pair("guarded/long-refusal", "long-refusal", "long")
    models += [
        model("guarded/alone", "canned", "alone-refuses", REFUSING),
        model("guarded/answers", "answers", "guarded-answers", ANSWERING),
        model("plain/answers", "answers", "plain-answers", ANSWERING),
        model("timing/guarded", f"paced-{PACE_MS}", "paced-guarded", ANSWERING),
        model("timing/plain", f"paced-{PACE_MS}", "paced-plain", ANSWERING),
    ]
    routes: dict[str, Any] = {f"guarded/{kind}": FALLBACK for kind in KINDS}
    routes |= {alias: FALLBACK for alias in ("guarded/alone", "guarded/answers", "timing/guarded")}
    routes["guarded/late"] = {**FALLBACK, "refusal_holdback_tokens": 4}
    routes["guarded/long-refusal"] = {**FALLBACK, "refusal_holdback_tokens": 8}
    config = {
        "server": {"require_client_keys": True},
        "store": {"ledger_flush_seconds": 0.05},
        "default_route": {"backoff_seconds": 0},
        "routes": routes,
        "models": models,
    }
    env = {"ENTREPOT_ADMIN_KEY": ADMIN_KEY, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
    server = start_gateway(tmp_path_factory.mktemp("guarded"), "guarded", config, env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def key(guarded: Server) -> str:
    return create_key(guarded, "refusals")


@pytest.fixture(scope="module")
def client(guarded: Server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=guarded.url + "/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def claude(guarded: Server, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=guarded.url, api_key=key, max_retries=0, timeout=30)


def ask(client: openai.OpenAI, model: str, stream: bool) -> tuple[str, str, str]:
    """(the answer's text, the deployment that answered, the request id)."""
    messages: Any = [{"role": "user", "content": QUESTION}]
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=messages, stream=stream
    )
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        text = raw.parse().choices[0].message.content or ""
    return text, raw.headers["x-entrepot-deployment"], raw.headers["x-request-id"]


def attempts(row: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["deployment"], a["outcome"]) for a in json.loads(row["attempts"])]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_refusal_falls_back_to_the_next_deployment_and_both_are_billed(
    guarded: Server, client: openai.OpenAI, kind: str, stream: bool
) -> None:
    text, deployment, request_id = ask(client, f"guarded/{kind}", stream)
    assert (text, deployment) == (ANSWER, f"{kind}-answers")
    row = usage_record(guarded, request_id)
    assert row["refused_by_model"] == 1 and row["status"] == 200
    assert attempts(row) == [(f"{kind}-refuses", "refused"), (f"{kind}-answers", "ok")]
    refused_words = KINDS[kind]
    refused_prompt = 0 if kind == "filter-error" else 6  # a filter error generated nothing
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        refused_prompt + 6,
        refused_words + ANSWER_WORDS,
    )
    refused_cost = refused_prompt * A_IN + refused_words * A_OUT
    assert row["cost_nanos"] == refused_cost + 6 * B_IN + ANSWER_WORDS * B_OUT
    assert (row["usage_reported"], row["usage_estimated"]) == (1, 0)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_with_the_setting_off_a_refusal_is_the_answer_as_before(
    guarded: Server, client: openai.OpenAI, stream: bool
) -> None:
    text, deployment, request_id = ask(client, "plain/canned", stream)
    assert (text, deployment) == (CANNED, "plain-canned-refuses")
    row = usage_record(guarded, request_id)
    assert row["refused_by_model"] == 0
    assert attempts(row) == [("plain-canned-refuses", "ok")]
    assert row["cost_nanos"] == 6 * A_IN + 10 * A_OUT


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_refusal_with_no_deployment_left_is_the_answer_billed_once(
    guarded: Server, client: openai.OpenAI, stream: bool
) -> None:
    text, deployment, request_id = ask(client, "guarded/alone", stream)
    assert (text, deployment) == (CANNED, "alone-refuses")
    row = usage_record(guarded, request_id)
    assert row["refused_by_model"] == 1 and row["status"] == 200
    assert attempts(row) == [("alone-refuses", "refused")]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (6, 10)
    assert row["cost_nanos"] == 6 * A_IN + 10 * A_OUT


def test_a_streamed_refusal_after_the_hold_back_window_reaches_the_client_unchanged(
    guarded: Server, client: openai.OpenAI
) -> None:
    """The documented limit: the window is 4 tokens here, the canned refusal comes after 10
    words. The same answer whole is caught, as a canned refusal counts anywhere in it."""
    text, deployment, request_id = ask(client, "guarded/late", stream=True)
    assert (text, deployment) == (LATE, "late-refuses")
    row = usage_record(guarded, request_id)
    assert row["refused_by_model"] == 0 and attempts(row) == [("late-refuses", "ok")]
    assert ask(client, "guarded/late", stream=False)[:2] == (ANSWER, "late-answers")


def test_a_refusal_caught_mid_stream_is_closed_and_billed_by_the_gateways_count(
    guarded: Server, refusing: Server, client: openai.OpenAI
) -> None:
    text, deployment, request_id = ask(client, "guarded/long-refusal", stream=True)
    assert (text, deployment) == (ANSWER, "long-answers")
    seen = httpx.get(refusing.url + "/received/long-refusal").json()
    assert seen["closed"] and not seen["completed"]
    row = usage_record(guarded, request_id)
    assert row["refused_by_model"] == 1
    # Read before closing: 8 pieces ("I", " can't", " help", " with", " that.", " reason0",
    # " reason1", " reason2"), 47 bytes -> 12 tokens; the prompt as sent, "user" + 30 bytes
    # -> 9 tokens plus 4 for the message. The answer's own report: 6 and 9.
    assert (row["prompt_tokens"], row["completion_tokens"]) == (13 + 6, 12 + ANSWER_WORDS)
    assert row["cost_nanos"] == 13 * A_IN + 12 * A_OUT + 6 * B_IN + ANSWER_WORDS * B_OUT
    assert (row["usage_reported"], row["usage_estimated"]) == (1, 1)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_an_answer_that_is_no_refusal_is_byte_identical_with_the_guard_on(
    guarded: Server, key: str, stream: bool
) -> None:
    def body(model: str) -> bytes:
        request = {"model": model, "messages": [{"role": "user", "content": QUESTION}]}
        response = httpx.post(
            guarded.url + "/v1/chat/completions",
            json={**request, "stream": stream},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert response.status_code == 200
        return response.content

    plain = body("plain/answers")
    assert body("guarded/answers") == plain.replace(b"plain/answers", b"guarded/answers")
    assert ANSWER.split()[-1].encode() in plain


def refusals_counted(guarded: Server, alias: str, deployment: str) -> float:
    text = admin(guarded).get("/metrics").text
    line = f'entrepot_refusals_total{{deployment="{deployment}",model="{alias}"}} '
    found = re.search(re.escape(line) + r"(\S+)", text)
    return float(found[1]) if found else 0.0


def test_refusals_are_counted_per_model_in_metrics(guarded: Server, client: openai.OpenAI) -> None:
    before = refusals_counted(guarded, "guarded/phrase", "phrase-refuses")
    request_id = ask(client, "guarded/phrase", stream=False)[2]
    usage_record(guarded, request_id)  # the record is observed once it is written
    assert refusals_counted(guarded, "guarded/phrase", "phrase-refuses") == before + 1
    assert refusals_counted(guarded, "guarded/phrase", "phrase-answers") == 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_responses_door_falls_back_too(
    guarded: Server, client: openai.OpenAI, stream: bool
) -> None:
    raw = client.responses.with_raw_response.create(
        model="guarded/canned", input=QUESTION, stream=stream
    )
    if stream:
        events = list(raw.parse())
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    else:
        text = raw.parse().output_text
    assert text == ANSWER
    row = usage_record(guarded, raw.headers["x-request-id"])
    assert row["refused_by_model"] == 1
    assert attempts(row) == [("canned-refuses", "refused"), ("canned-answers", "ok")]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_messages_door_falls_back_too(
    guarded: Server, claude: anthropic.Anthropic, stream: bool
) -> None:
    messages: Any = [{"role": "user", "content": QUESTION}]
    if stream:
        with claude.messages.stream(
            model="guarded/empty", max_tokens=100, messages=messages
        ) as events:
            text = events.get_final_text()
            request_id = events.response.headers["x-request-id"]
    else:
        raw = claude.messages.with_raw_response.create(
            model="guarded/empty", max_tokens=100, messages=messages
        )
        block = raw.parse().content[0]
        assert block.type == "text"
        text, request_id = block.text, raw.headers["x-request-id"]
    assert text == ANSWER
    row = usage_record(guarded, request_id)
    assert row["refused_by_model"] == 1
    assert attempts(row) == [("empty-refuses", "refused"), ("empty-answers", "ok")]


def first_byte_seconds(guarded: Server, key: str, model: str) -> float:
    """Time from sending a streamed request to the first byte of the answer's text."""
    request = {"model": model, "messages": [{"role": "user", "content": "go"}], "stream": True}
    headers = {"Authorization": f"Bearer {key}"}
    started = time.perf_counter()
    with httpx.stream(
        "POST", guarded.url + "/v1/chat/completions", json=request, headers=headers, timeout=30
    ) as response:
        for line in response.iter_lines():
            if '"content":"word' in line:
                return time.perf_counter() - started
    raise AssertionError("no text streamed")


def test_the_hold_back_delays_the_first_byte_by_the_window(guarded: Server, key: str) -> None:
    """The upstream sends a word every 20 ms; the window is 32 tokens, so the first byte waits
    for 32 words (at least 0.64 s) where it took one word without the guard."""
    plain = min(first_byte_seconds(guarded, key, "timing/plain") for _ in range(3))
    held = min(first_byte_seconds(guarded, key, "timing/guarded") for _ in range(3))
    assert held >= 32 * PACE_MS / 1000
    assert plain < held - 0.3
    assert len(PACED.split()) > 32  # the window closes before the answer ends


def test_a_budget_reserves_a_generation_for_every_deployment_a_refusal_may_reach(
    guarded: Server,
) -> None:
    """100 output tokens at 5000 per million, and the body's bytes as prompt tokens at 3000:
    about 0.8 USD at worst for one generation, so a budget of 1 admits it on a model with one
    deployment — but not the two a route falling back on refusals may pay for (max_attempts 3,
    two deployments)."""
    key = create_key(guarded, "refusal-budget", budget={"amount": "1", "period": "month"})
    client = openai.OpenAI(base_url=guarded.url + "/v1", api_key=key, max_retries=0)
    messages: Any = [{"role": "user", "content": QUESTION}]
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="guarded/canned", messages=messages, max_tokens=100)
    assert refused.value.status_code == 402
    answer = client.chat.completions.create(
        model="plain/answers", messages=messages, max_tokens=100
    )
    assert answer.choices[0].message.content
