"""Completions, embeddings, models, health, metrics and the admin API through the SDK and HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, LOCAL, Server, admin, usage_record
from tests.schemas import validate


@pytest.mark.parametrize("model", [LOCAL, "fake/echo"])
def test_completions(client: openai.OpenAI, model: str) -> None:
    raw = client.completions.with_raw_response.create(model=model, prompt="Once upon", max_tokens=8)
    body = raw.http_response.json()
    validate(body, "CreateCompletionResponse")
    assert body["model"] == model and body["choices"][0]["text"]
    assert body["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize("model", [LOCAL, "fake/echo"])
def test_streamed_completions(client: openai.OpenAI, model: str) -> None:
    stream = client.completions.create(
        model=model,
        prompt="Once upon",
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    # The spec has no stream schema for legacy completions and its response schema forbids the
    # null finish_reason that OpenAI itself sends mid-stream; validate every chunk but that field.
    for chunk in chunks:
        data = chunk.model_dump(exclude_unset=True)
        for choice in data["choices"]:
            if choice["finish_reason"] is None:
                choice["finish_reason"] = "stop"
        validate(data, "CreateCompletionResponse")
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_embeddings_through_an_upstream(gateway: Server, client: openai.OpenAI) -> None:
    raw = client.embeddings.with_raw_response.create(
        model="fake/embedder", input=["alpha beta", "gamma"]
    )
    body = raw.http_response.json()
    validate(body, "CreateEmbeddingResponse")
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert len(body["data"][0]["embedding"]) == 8
    record = usage_record(gateway, raw.headers["x-request-id"])
    assert record["endpoint"] == "embeddings" and record["prompt_tokens"] == 3
    # text-embedding-3-small from the catalogue: 3 tokens x $0.02/1M = 60 nanos.
    assert record["cost_nanos"] == 60 and record["price_date"] == "2025-10-01"


def test_local_embeddings(client: openai.OpenAI) -> None:
    raw = client.embeddings.with_raw_response.create(model="local/embed", input="a cat")
    body = raw.http_response.json()
    validate(body, "CreateEmbeddingResponse")
    vector = body["data"][0]["embedding"]
    assert len(vector) == 576
    assert abs(sum(v * v for v in vector) - 1.0) < 1e-3


def test_chat_model_refuses_embeddings_clearly(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=LOCAL, input="x")
    assert "embeddings" in caught.value.message
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="fake/claude", input="x")


def test_bad_embedding_input(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="fake/embedder", input="")
    assert caught.value.body["param"] == "input"  # type: ignore[index]


def test_models(gateway: Server, client: openai.OpenAI) -> None:
    raw = client.models.with_raw_response.list()
    validate(raw.http_response.json(), "ListModelsResponse")
    ids = [m.id for m in raw.parse()]
    assert LOCAL in ids and "fake/claude" in ids
    one = client.models.retrieve("fake/echo")
    assert one.id == "fake/echo" and one.owned_by == "openai_compatible@US"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_health_and_metrics(gateway: Server, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="fake/echo", messages=[{"role": "user", "content": "x"}])
    assert httpx.get(gateway.url + "/health").json()["status"] == "ok"
    assert httpx.get(gateway.url + "/metrics").status_code == 401
    text = admin(gateway).get("/metrics").text
    assert 'entrepot_requests_total{endpoint="chat",model="fake/echo",status="200"}' in text
    assert 'entrepot_tokens_total{kind="prompt",model="fake/echo"}' in text
    assert "entrepot_request_duration_seconds_bucket" in text
    assert 'entrepot_cost_total{currency="USD",model="fake/echo"}' in text


def test_admin_api_requires_the_admin_key(gateway: Server, client_key: str) -> None:
    for key in (None, client_key, "wrong"):
        headers = {"authorization": f"Bearer {key}"} if key else {}
        response = httpx.get(gateway.url + "/admin/keys", headers=headers)
        assert response.status_code == 401
        validate(response.json(), "ErrorResponse")


def test_admin_keys_and_usage(gateway: Server) -> None:
    with admin(gateway) as http:
        created = http.post(
            "/admin/keys",
            json={"name": "budgeted", "budget": {"amount": "12.5", "period": "day"}},
        )
        assert created.status_code == 201
        assert created.json()["budget"] == {
            "amount": "12.500000",
            "currency": "USD",
            "period": "day",
        }
        secret = created.json()["key"]
        listed = http.get("/admin/keys").json()["data"]
        assert "budgeted" in [k["name"] for k in listed]
        assert secret not in http.get("/admin/keys").text
        duplicate = http.post("/admin/keys", json={"name": "budgeted"})
        assert duplicate.status_code == 400 and duplicate.json()["error"]["param"] == "name"
        usage = http.get("/admin/usage", params={"by": "key"}).json()
        assert any(row["group"] == "tests" and row["requests"] > 0 for row in usage["data"])
        assert http.get("/admin/usage", params={"by": "planet"}).status_code == 400
        assert http.delete("/admin/keys/does-not-exist").status_code == 404
        for bad in ({"amount": "NaN"}, {"amount": "lots"}, {"amount": 1, "period": "century"}):
            refused = http.post("/admin/keys", json={"name": "bad-budget", "budget": bad})
            assert refused.status_code == 400, refused.text
        empty = http.post("/admin/keys", json={"name": "nothing", "allowed_models": []})
        assert empty.status_code == 400
    assert ADMIN_KEY not in gateway.log.read_text()


def test_metrics_are_open_without_an_admin_key(zero_config_gateway: Server) -> None:
    """Only possible on loopback: binding elsewhere requires an admin key."""
    response = httpx.get(zero_config_gateway.url + "/metrics")
    assert response.status_code == 200 and "entrepot_requests_total" in response.text
