"""What OpenAI-compatible servers get wrong, set right: tool-call deltas in OpenAI's shape, `n`
honoured, and error messages without the servers' paths and tracebacks. Unit checks, then a real
gateway in front of the fake upstream, called with the official client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from entrepot.providers.http import MESSAGE_LIMIT, clean_message
from entrepot.providers.upstream_quirks import ToolCallDeltas, merged_usage
from tests.conftest import ADMIN_KEY, UPSTREAM_KEY, Server, create_key, fake_model, start_gateway
from tests.conftest import usage_record as ledger_row
from tests.fakes.openai_upstream import TRACEBACK

# --- the tool-call delta normaliser ----------------------------------------------------------


def _fixed(deltas: list[list[dict[str, Any]]], choice: int = 0) -> list[list[dict[str, Any]]]:
    fixer = ToolCallDeltas()
    for calls in deltas:
        fixer.fix(choice, calls)
    return deltas


def _call(index: int | None, name: str, arguments: str, **more: Any) -> dict[str, Any]:
    call = {"id": f"call_{name}", "type": "function", **more}
    call["function"] = {"name": name, "arguments": arguments}
    return call if index is None else {"index": index, **call}


def test_name_id_and_type_come_only_in_a_calls_first_delta() -> None:
    deltas = _fixed([[_call(0, "f", "")], [_call(0, "f", '{"a"')], [_call(1, "g", "{}")]])
    assert deltas == [
        [_call(0, "f", "")],
        [{"index": 0, "function": {"arguments": '{"a"'}}],
        [_call(1, "g", "{}")],
    ]


def test_each_choice_has_calls_of_its_own() -> None:
    fixer = ToolCallDeltas()
    first, second = [_call(0, "f", "")], [_call(0, "f", "")]
    fixer.fix(0, first)
    fixer.fix(1, second)
    assert first == second == [_call(0, "f", "")]


def test_deltas_without_an_index_get_one() -> None:
    deltas = _fixed(
        [
            [_call(None, "f", "")],
            [{"function": {"arguments": "{}"}}],
            [_call(None, "g", "")],
            [{"function": {"arguments": "[]"}}],
            [_call(None, "g", "!")],  # the id it opened with: the same call
        ]
    )
    assert [call["index"] for calls in deltas for call in calls] == [0, 0, 1, 1, 1]
    assert "id" not in deltas[4][0] and "name" not in deltas[4][0]["function"]
    whole = _fixed([[_call(None, "f", "{}"), _call(None, "g", "{}")]])
    assert [call["index"] for call in whole[0]] == [0, 1]
    assert whole[0][1]["function"]["name"] == "g"


def test_usage_of_several_calls_adds_up() -> None:
    one = {"prompt_tokens": 3, "completion_tokens": 2, "completion_tokens_details": {"x": 1}}
    assert merged_usage([one, one]) == {
        "prompt_tokens": 6,
        "completion_tokens": 4,
        "completion_tokens_details": {"x": 2},
    }
    assert merged_usage([one, None]) is None


# --- the message cleaner ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (TRACEBACK, "RuntimeError: tokenizer failed on …"),
        ("failed in /opt/app/handler.py: boom\nmore detail", "failed in …: boom"),
        ('File "worker.py", line 7, in main: KeyError', "… KeyError"),
        (r"cannot open C:\Users\me\models\m.gguf: missing", "cannot open …: missing"),
        ("bad input Traceback (most recent call last): ...", "bad input"),
        ("model org/model-7b not found at https://x.example/v1/chat", None),
        ("  \n ", "no error message"),
    ],
)
def test_an_upstream_message_loses_paths_tracebacks_and_later_lines(
    raw: str, clean: str | None
) -> None:
    assert clean_message(raw) == (raw if clean is None else clean)


def test_an_upstream_message_is_kept_short() -> None:
    cleaned = clean_message("word " * 200)
    assert len(cleaned) == MESSAGE_LIMIT and cleaned.endswith("…")


# --- through a gateway -----------------------------------------------------------------------

QUIRKS = ["llamacpp-tool-stream", "tool-call-no-index", "tool-call-whole"]
WEATHER: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
ASK: list[Any] = [{"role": "user", "content": "what is the weather"}]
PRICE = {"input_per_1m": "1000", "output_per_1m": "2000", "currency": "USD", "as_of": "2026-11-01"}


@pytest.fixture(scope="module")
def quirky(tmp_path_factory: pytest.TempPathFactory, fake_openai: Server) -> Iterator[Server]:
    targets = [*QUIRKS, "ignores-n", "caps-n-2", "empty-choices", "fails-on-refill"]
    targets += ["error-with-traceback", "midstream-traceback"]
    config = {
        "server": {"require_client_keys": True},
        "store": {"ledger_flush_seconds": 0.05},
        "default_route": {"max_attempts": 1},
        "breaker": {"failure_threshold": 1000},
        "models": [fake_model(fake_openai, f"q/{t}", t, price=PRICE) for t in targets],
    }
    env = {"ENTREPOT_ADMIN_KEY": ADMIN_KEY, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
    server = start_gateway(tmp_path_factory.mktemp("quirks"), "quirks", config, env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sdk(quirky: Server) -> openai.OpenAI:
    key = create_key(quirky, "quirks")
    return openai.OpenAI(base_url=quirky.url + "/v1", api_key=key, max_retries=0, timeout=30)


def _received(fake: Server, target: str) -> int:
    return int(httpx.get(f"{fake.url}/received/{target}").json())


@pytest.mark.parametrize("target", QUIRKS)
def test_streamed_tool_calls_reach_the_client_in_openais_shape(
    sdk: openai.OpenAI, target: str
) -> None:
    calls: dict[int, dict[str, str]] = {}
    stream = sdk.chat.completions.create(
        model=f"q/{target}", messages=ASK, tools=WEATHER, stream=True
    )
    for chunk in stream:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if delta.index not in calls:
                assert delta.id and delta.type == "function" and delta.function
                calls[delta.index] = {"id": delta.id, "name": "", "arguments": ""}
            else:
                assert delta.id is None and delta.type is None
            assert delta.function is not None
            calls[delta.index]["name"] += delta.function.name or ""
            calls[delta.index]["arguments"] += delta.function.arguments or ""
    assert [call["name"] for call in calls.values()] == ["get_weather", "get_weather"]
    assert [json.loads(call["arguments"]) for call in calls.values()] == [
        {"city": "Paris"},
        {"city": "Rome"},
    ]
    assert [call["id"] for call in calls.values()] == ["call_1", "call_2"]


def test_choices_an_upstream_left_out_are_asked_for_again(
    sdk: openai.OpenAI, fake_openai: Server
) -> None:
    before = _received(fake_openai, "ignores-n")
    answer = sdk.chat.completions.create(model="q/ignores-n", messages=ASK, n=3, seed=5)
    assert _received(fake_openai, "ignores-n") - before == 3
    assert [choice.index for choice in answer.choices] == [0, 1, 2]
    texts = [choice.message.content for choice in answer.choices]
    assert texts == [f"echo: what is the weather (seed {seed})" for seed in (5, 6, 7)]
    one = sdk.chat.completions.create(model="q/ignores-n", messages=ASK, seed=5).usage
    assert answer.usage and one
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        3 * one.prompt_tokens,
        3 * one.completion_tokens,
    )


def test_a_further_call_asks_only_for_the_choices_still_missing(
    sdk: openai.OpenAI, fake_openai: Server
) -> None:
    before = _received(fake_openai, "caps-n-2")
    answer = sdk.chat.completions.create(model="q/caps-n-2", messages=ASK, n=5)
    assert [choice.index for choice in answer.choices] == [0, 1, 2, 3, 4]
    assert _received(fake_openai, "caps-n-2") - before == 3  # 2 + 2 + 1 choices


@pytest.mark.parametrize("n", [1, 3])
def test_an_upstream_that_answers_no_choice_is_not_asked_again(
    sdk: openai.OpenAI, fake_openai: Server, n: int
) -> None:
    """No choice at all is a failed generation, not an ignored `n`: asked again, the same
    deployment would generate again for a request that gets nothing from it."""
    before = _received(fake_openai, "empty-choices")
    with pytest.raises(openai.InternalServerError) as failed:
        sdk.chat.completions.create(model="q/empty-choices", messages=ASK, n=n)
    assert failed.value.status_code == 502
    assert f"answered 0 of the {n} choices" in failed.value.message
    assert _received(fake_openai, "empty-choices") - before == 1


def test_the_calls_that_answered_are_billed_when_a_further_one_fails(
    quirky: Server, sdk: openai.OpenAI
) -> None:
    """An upstream that ignores `n` answered one choice, then failed the call for the rest:
    the request fails, and the choice it generated is billed as it reported it."""
    with pytest.raises(openai.InternalServerError) as failed:
        sdk.chat.completions.create(model="q/fails-on-refill", messages=ASK, n=3)
    row = ledger_row(quirky, failed.value.response.headers["x-request-id"])
    assert row["status"] == 502
    # As the upstream reported for its one answer: 4 prompt words, 5 answer words.
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_reported"]) == (4, 5, 1)
    assert row["cost_nanos"] > 0


def test_a_stream_with_too_few_choices_ends_in_an_error_and_is_billed(
    quirky: Server, sdk: openai.OpenAI
) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="q/ignores-n", messages=ASK, n=2, stream=True
    )
    text = ""
    with pytest.raises(openai.APIError) as failed:
        for chunk in raw.parse():
            text += "".join(choice.delta.content or "" for choice in chunk.choices)
    assert text == "echo: what is the weather"  # what was sent before the error
    assert "streamed 1 of the 2 choices" in str(failed.value)
    row = ledger_row(quirky, raw.headers["x-request-id"])
    assert row["status"] == 502
    # As the upstream reported: 4 prompt words, 5 answer words.
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_reported"]) == (4, 5, 1)


def _assert_clean(message: str) -> None:
    assert "RuntimeError: tokenizer failed on …" in message
    assert "Traceback" not in message and "/srv" not in message and ".py" not in message


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_traceback_reaches_the_client_as_one_clean_line(
    quirky: Server, stream: bool
) -> None:
    response = httpx.post(
        quirky.url + "/v1/chat/completions",
        json={"model": "q/error-with-traceback", "messages": ASK, "stream": stream},
        headers={"authorization": f"Bearer {create_key(quirky, f'traceback-{stream}')}"},
        timeout=30,
    )
    assert response.status_code == 502
    _assert_clean(response.json()["error"]["message"])


def test_a_traceback_mid_stream_reaches_the_client_as_one_clean_line(
    sdk: openai.OpenAI,
) -> None:
    with pytest.raises(openai.APIError) as failed:
        list(sdk.chat.completions.create(model="q/midstream-traceback", messages=ASK, stream=True))
    _assert_clean(str(failed.value))


def test_too_few_choices_never_open_the_circuit(
    tmp_path_factory: pytest.TempPathFactory, fake_openai: Server
) -> None:
    """An upstream that ignores `n` cannot serve that request, but it is not down: a client
    asking for `n` > 1 again and again must not take it away from every other client."""
    config = {
        "store": {"ledger_flush_seconds": 0.05},
        "breaker": {"failure_threshold": 1, "cooldown_seconds": 60},
        "models": [fake_model(fake_openai, "q/ignores-n", "ignores-n")],
    }
    env = {"FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
    server = start_gateway(tmp_path_factory.mktemp("incapable"), "incapable", config, env)
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="-", max_retries=0)
        for _ in range(3):
            with pytest.raises(openai.APIError, match="streamed 1 of the 2 choices"):
                for _chunk in client.chat.completions.create(
                    model="q/ignores-n", messages=ASK, n=2, stream=True
                ):
                    pass
        answer = client.chat.completions.create(model="q/ignores-n", messages=ASK)
        assert answer.choices[0].message.content == "echo: what is the weather"
    finally:
        server.stop()
