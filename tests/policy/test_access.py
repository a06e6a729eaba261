"""A wrong model name is refused naming the models the key may use, in each door's own error
format, through a real gateway; the list stays bounded however many models are configured."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest

from entrepot.policy.access import SHOWN_MODELS, unknown_model
from entrepot.types import ApiKey
from tests.conftest import ADMIN_KEY, UPSTREAM_KEY, Server, create_key, fake_model, start_gateway

MODELS = ["fake/echo", "fake/echo-long-context", "fake/other"]
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_openai: Server) -> Iterator[Server]:
    config = {
        "server": {"require_client_keys": True},
        "models": [fake_model(fake_openai, alias, "echo-model") for alias in MODELS],
    }
    env = {"ENTREPOT_ADMIN_KEY": ADMIN_KEY, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
    server = start_gateway(tmp_path_factory.mktemp("access"), "access", config, env)
    yield server
    server.stop()


def _ask(gateway: Server, key: str, door: str, model: str) -> httpx.Response:
    paths = {
        "chat": "/v1/chat/completions",
        "responses": "/v1/responses",
        "messages": "/v1/messages",
    }
    body: dict[str, object] = {"model": model, "max_tokens": 8}
    body |= {"input": "hi"} if door == "responses" else {"messages": MESSAGES}
    headers = {"authorization": f"Bearer {key}", "x-api-key": key}
    return httpx.post(gateway.url + paths[door], json=body, headers=headers, timeout=30)


@pytest.mark.parametrize("door", ["chat", "responses", "messages"])
def test_an_unknown_model_lists_those_the_key_may_use(gateway: Server, door: str) -> None:
    key = create_key(gateway, f"open-{door}")
    response = _ask(gateway, key, door, "fake/ehco")
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    if door == "messages":
        assert response.json()["type"] == "error" and error["type"] == "not_found_error"
    else:
        assert error["code"] == "model_not_found" and error["param"] == "model"
    assert error["message"] == (
        "the model 'fake/ehco' does not exist or is not configured;"
        f" this key may use {', '.join(MODELS)}"
    )


def test_a_limited_key_is_told_its_own_models(gateway: Server) -> None:
    key = create_key(gateway, "limited", allowed_models=["fake/other"])
    response = _ask(gateway, key, "chat", "fake/echo")
    assert response.status_code == 403, response.text
    assert response.json()["error"]["message"] == (
        "key 'limited' may not use model 'fake/echo'; it may use fake/other"
    )


def test_the_list_is_bounded() -> None:
    aliases = [f"team/model-{i:03d}" for i in range(250)]
    message = unknown_model(None, "x" * 5000, aliases).message
    assert len(message) < 1000
    last = f"team/model-{SHOWN_MODELS - 1:03d}"
    assert f"team/model-{SHOWN_MODELS:03d}" not in message
    assert message.endswith(f"{last} (and {250 - SHOWN_MODELS} more: GET /v1/models lists them)")
    key = ApiKey(
        id=1, name="k", key_prefix="ek-", allowed_models=("team/model-001",), budget_amount=None,
        budget_currency=None, budget_period=None, created_at=dt.datetime.now(dt.UTC),
        revoked_at=None,
    )  # fmt: skip
    assert unknown_model(key, "x", aliases).message.endswith("this key may use team/model-001")
