"""Stored responses through the running gateway: read back, listed, deleted and continued only
by the key that created them; `store: false` keeps nothing; expired responses are gone; tool
call round trips by `previous_response_id` and by sending the items back."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.api.test_responses import WEATHER_TOOL, create, upstream_body
from tests.conftest import (
    ADMIN_KEY,
    LOCAL,
    Server,
    create_key,
    fake_model,
    start_gateway,
    usage_record,
)
from tests.schemas import validate

DAY = 86_400


@pytest.fixture(scope="module")
def other(gateway: Server) -> openai.OpenAI:
    """A second key's client: another owner."""
    key = create_key(gateway, "responses-other")
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=60)


def stored_rows(gateway: Server, response_id: str) -> int:
    assert gateway.data_dir is not None
    with sqlite3.connect(gateway.data_dir / "entrepot.db") as db:
        (count,) = db.execute(
            "SELECT count(*) FROM responses WHERE id = ?", (response_id,)
        ).fetchone()
    return int(count)


def listing(gateway: Server, key: str, response_id: str, **params: Any) -> dict[str, Any]:
    """A response's input items as sent, checked against the spec."""
    raw = httpx.get(
        f"{gateway.url}/v1/responses/{response_id}/input_items",
        params=params,
        headers={"Authorization": f"Bearer {key}"},
    )
    assert raw.status_code == 200, raw.text
    body: dict[str, Any] = raw.json()
    validate(body, "ResponseItemList")
    return body


def text_of(item: Any) -> str:
    return str(item.model_dump()["content"][0]["text"])


def test_a_response_reads_back_as_it_was_answered(
    gateway: Server, client: openai.OpenAI, client_key: str
) -> None:
    body, _ = create(client, model="fake/echo", input="remember me")
    raw = httpx.get(
        f"{gateway.url}/v1/responses/{body['id']}",
        headers={"Authorization": f"Bearer {client_key}"},
    )
    assert raw.status_code == 200 and raw.json() == body
    assert client.responses.retrieve(body["id"]).output_text == "echo: remember me"


def test_input_items_are_listed_in_openais_shape(
    gateway: Server, client: openai.OpenAI, client_key: str
) -> None:
    inputs = [{"role": "user", "content": f"message {i}"} for i in range(5)]
    body, _ = create(client, model="fake/echo", input=inputs)
    listed = listing(gateway, client_key, body["id"])
    texts = [item["content"][0]["text"] for item in listed["data"]]
    assert texts == [f"message {i}" for i in reversed(range(5))]  # newest first by default
    assert listed["has_more"] is False
    assert (listed["first_id"], listed["last_id"]) == (
        listed["data"][0]["id"],
        listed["data"][-1]["id"],
    )
    page = client.responses.input_items.list(body["id"], order="asc", limit=2)
    assert [text_of(item) for item in page.data] == ["message 0", "message 1"]
    assert page.has_more is True
    rest = client.responses.input_items.list(body["id"], order="asc", after=page.data[-1].id)
    assert [text_of(item) for item in rest.data] == ["message 2", "message 3", "message 4"]
    assert rest.has_more is False
    every = [item.id for item in client.responses.input_items.list(body["id"], limit=1)]
    assert every == [item["id"] for item in listed["data"]]  # the SDK pages through all
    bad = httpx.get(
        f"{gateway.url}/v1/responses/{body['id']}/input_items",
        params={"limit": 0},
        headers={"Authorization": f"Bearer {client_key}"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


def test_delete_returns_openais_deletion_object(
    gateway: Server, client: openai.OpenAI, client_key: str
) -> None:
    body, _ = create(client, model="fake/echo", input="delete me")
    url = f"{gateway.url}/v1/responses/{body['id']}"
    headers = {"Authorization": f"Bearer {client_key}"}
    deleted = httpx.delete(url, headers=headers)
    assert deleted.json() == {"id": body["id"], "object": "response", "deleted": True}
    assert stored_rows(gateway, body["id"]) == 0
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(body["id"])
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(body["id"])


def test_store_false_keeps_nothing(gateway: Server, client: openai.OpenAI) -> None:
    body, _ = create(client, model="fake/echo", input="forget me", store=False)
    assert body["store"] is False
    assert stored_rows(gateway, body["id"]) == 0
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(body["id"])
    with client.responses.stream(model="fake/echo", input="forget me too", store=False) as stream:
        final = stream.get_final_response()
    assert stored_rows(gateway, final.id) == 0


def test_another_key_cannot_read_delete_list_or_continue(
    gateway: Server, client: openai.OpenAI, other: openai.OpenAI
) -> None:
    body, _ = create(client, model="fake/echo", input="mine only")
    with pytest.raises(openai.NotFoundError) as read:
        other.responses.retrieve(body["id"])
    assert read.value.body == {  # exactly as for an id that never existed
        "message": f"Response with id {body['id']!r} not found.",
        "type": "invalid_request_error",
        "param": None,
        "code": "not_found",
    }
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(body["id"])
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(body["id"])
    with pytest.raises(openai.NotFoundError) as continued:
        other.responses.with_raw_response.create(
            model="fake/echo", input="and then?", previous_response_id=body["id"]
        )
    error: Any = continued.value.body
    assert error["param"] == "previous_response_id"
    assert error["code"] == "previous_response_not_found"
    record = usage_record(gateway, continued.value.response.headers["x-request-id"])
    assert record["status"] == 404 and record["deployment"] is None
    assert record["cost_nanos"] is None and record["completion_tokens"] == 0
    assert client.responses.retrieve(body["id"]).id == body["id"]  # still there for its owner


def test_expired_responses_are_neither_read_nor_continued(
    gateway: Server, client: openai.OpenAI
) -> None:
    body, _ = create(client, model="fake/echo", input="old news")
    assert gateway.data_dir is not None
    with sqlite3.connect(gateway.data_dir / "entrepot.db") as db:
        db.execute(
            "UPDATE responses SET created_at = created_at - ? WHERE id = ?",
            (30 * DAY + 60, body["id"]),
        )
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(body["id"])
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="fake/echo", input="more", previous_response_id=body["id"])


def test_previous_response_id_continues_the_conversation(
    gateway: Server, client: openai.OpenAI, client_key: str, fake_openai: Server
) -> None:
    first, _ = create(client, model="fake/echo", instructions="Be terse.", input="first turn")
    second, _ = create(
        client, model="fake/echo", input="second turn", previous_response_id=first["id"]
    )
    assert second["previous_response_id"] == first["id"]
    assert second["instructions"] is None
    assert upstream_body(fake_openai)["messages"] == [  # instructions are not carried over
        {"role": "user", "content": "first turn"},
        {"role": "assistant", "content": "echo: first turn"},
        {"role": "user", "content": "second turn"},
    ]
    third, _ = create(
        client, model="fake/claude", input="third turn", previous_response_id=second["id"]
    )
    assert third["output"][0]["content"][0]["text"] == "echo: third turn"
    items = listing(gateway, client_key, third["id"], order="asc")["data"]
    assert [(item["type"], item["role"]) for item in items] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]


def test_a_tool_call_round_trip_by_previous_response_id(
    gateway: Server, client: openai.OpenAI, client_key: str, fake_openai: Server
) -> None:
    call_response, _ = create(
        client, model="fake/echo", input="what is the weather in Paris", tools=[WEATHER_TOOL]
    )
    (call,) = call_response["output"]
    assert call["type"] == "function_call" and call["id"].startswith("fc_")
    assert (call["call_id"], call["name"]) == ("call_1", "get_weather")
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert call_response["tools"] == [WEATHER_TOOL]
    answer, _ = create(
        client,
        model="fake/echo",
        previous_response_id=call_response["id"],
        input=[{"type": "function_call_output", "call_id": "call_1", "output": "sunny"}],
    )
    assert answer["output"][0]["content"][0]["text"] == "echo: what is the weather in Paris"
    sent = upstream_body(fake_openai)["messages"]
    assert sent[1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    items = listing(gateway, client_key, answer["id"], order="asc")["data"]
    assert [item["type"] for item in items] == ["message", "function_call", "function_call_output"]
    assert items[1] == call


def test_a_tool_call_round_trip_with_the_items_sent_back(client: openai.OpenAI) -> None:
    """Without storage: the client sends the call back with its output (store false)."""
    history: list[Any] = [{"role": "user", "content": "weather in Paris?"}]
    first, _ = create(client, model="fake/claude", input=history, tools=[WEATHER_TOOL], store=False)
    call = first["output"][-1]
    history += [
        call,
        {"type": "function_call_output", "call_id": call["call_id"], "output": "rain"},
    ]
    answer, _ = create(
        client, model="fake/claude", input=history, tools=[WEATHER_TOOL], store=False
    )
    assert answer["output"][0]["content"][0]["text"] == "echo: rain"


def test_a_local_model_tool_call_round_trip(client: openai.OpenAI) -> None:
    """Needs tool support for local models (a grammar forces the call when it is required)."""
    call_response, _ = create(
        client,
        model=LOCAL,
        input="What is the weather in Paris?",
        tools=[WEATHER_TOOL],
        tool_choice="required",
        max_output_tokens=60,
    )
    call = next(item for item in call_response["output"] if item["type"] == "function_call")
    assert call["name"] == "get_weather"
    answer, _ = create(
        client,
        model=LOCAL,
        previous_response_id=call_response["id"],
        input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}],
        tools=[WEATHER_TOOL],
        tool_choice="none",
        max_output_tokens=30,
    )
    assert answer["output"][-1]["type"] == "message"


# --- anonymous callers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def open_gateway(tmp_path_factory: pytest.TempPathFactory, fake_openai: Server) -> Iterator[Server]:
    """Keys not required: anonymous callers, and keyed ones, side by side."""
    tmp: Path = tmp_path_factory.mktemp("responses-open")
    config = {
        "server": {"require_client_keys": False},
        "models": [fake_model(fake_openai, "fake/echo", "echo-model")],
        "responses": {"retention_days": 7},
    }
    env = {"ENTREPOT_ADMIN_KEY": ADMIN_KEY, "FAKE_UPSTREAM_KEY": "test-upstream-key"}
    server = start_gateway(tmp, "responses-open", config, env)
    yield server
    server.stop()


def test_anonymous_callers_share_a_namespace_of_their_own(open_gateway: Server) -> None:
    anonymous = openai.OpenAI(base_url=open_gateway.url + "/v1", api_key="anything", max_retries=0)
    keyed = openai.OpenAI(
        base_url=open_gateway.url + "/v1", api_key=create_key(open_gateway, "k"), max_retries=0
    )
    theirs = anonymous.responses.create(model="fake/echo", input="anonymous")
    assert anonymous.responses.retrieve(theirs.id).output_text == "echo: anonymous"
    with pytest.raises(openai.NotFoundError):
        keyed.responses.retrieve(theirs.id)
    mine = keyed.responses.create(model="fake/echo", input="keyed")
    with pytest.raises(openai.NotFoundError):
        anonymous.responses.retrieve(mine.id)
    assert keyed.responses.retrieve(mine.id).id == mine.id
