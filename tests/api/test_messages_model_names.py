"""Claude model names through the Messages API on a gateway whose `model_names` map them: Haiku
names to the local model, everything else to an OpenAI-compatible upstream. Answers carry the
name the client asked for; the ledger records both names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.api.test_messages import check_sequence, sse, strict_message
from tests.conftest import LOCAL, UPSTREAM_KEY, Server, fake_model, start_gateway, usage_record

HELLO: list[Any] = [{"role": "user", "content": "hello there"}]
HAIKU = "claude-3-5-haiku-latest"
SONNET = "claude-sonnet-4-5"


@pytest.fixture(scope="module")
def mapped(tmp_path_factory: pytest.TempPathFactory, fake_openai: Server) -> Iterator[Server]:
    config = {
        "store": {"ledger_flush_seconds": 0.05},
        "models": [
            {
                "alias": LOCAL,
                "provider": "llama_cpp",
                "target": "bundled:smollm2-135m-instruct",
                "local": {"n_threads": 2},
            },
            fake_model(fake_openai, "fake/echo", "echo-model"),
        ],
        "model_names": [
            {"match": "claude-*haiku*", "alias": LOCAL},
            {"match": "*", "alias": "fake/echo"},
        ],
    }
    tmp = tmp_path_factory.mktemp("messages-names")
    server = start_gateway(tmp, "messages-names", config, {"FAKE_UPSTREAM_KEY": UPSTREAM_KEY})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def claude(mapped: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=mapped.url, api_key="anonymous", max_retries=0, timeout=120)


@pytest.mark.parametrize(("name", "alias"), [(HAIKU, LOCAL), (SONNET, "fake/echo")])
def test_claude_names_are_served_by_their_aliases(
    claude: anthropic.Anthropic, mapped: Server, name: str, alias: str
) -> None:
    raw = claude.messages.with_raw_response.create(model=name, max_tokens=8, messages=HELLO)
    message = strict_message(raw.http_response.json())
    assert message.model == name
    assert raw.headers["x-entrepot-deployment"].endswith(alias)
    row = usage_record(mapped, raw.headers["x-request-id"])
    assert (row["endpoint"], row["model_alias"], row["requested_model"]) == (
        "messages",
        alias,
        name,
    )
    assert row["completion_tokens"] == message.usage.output_tokens


def test_a_stream_carries_the_claude_name(mapped: Server) -> None:
    body = {"model": HAIKU, "max_tokens": 8, "messages": HELLO}
    events, headers = sse(mapped, "anonymous", body)
    assert check_sequence(events).model == HAIKU
    row = usage_record(mapped, headers["x-request-id"])
    assert (row["model_alias"], row["requested_model"], row["stream"]) == (LOCAL, HAIKU, 1)


def test_counting_follows_the_mapping(claude: anthropic.Anthropic) -> None:
    local = claude.messages.count_tokens(model=LOCAL, messages=HELLO).input_tokens
    assert claude.messages.count_tokens(model=HAIKU, messages=HELLO).input_tokens == local
    # The echo's estimate: a quarter of the bytes of "user" and "hello there", plus 4.
    assert claude.messages.count_tokens(model=SONNET, messages=HELLO).input_tokens == 8
    assert local != 8
