"""`route --explain` against serving, through one real gateway: for the same key, model and
request, the explanation names the deployment the request is served by, or the refusal (status
and code) the client gets — the key's allow-list for the model asked for and for the reroute
target, and a half-open circuit whose probe is in flight."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import (
    ADMIN_KEY,
    UPSTREAM_KEY,
    Server,
    create_key,
    fake_model,
    start_gateway,
    usage_record,
)

IBAN = "Pay it to GB82 WEST 1234 5698 7654 32"
COOLDOWN_SECONDS = 0.5


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_openai: Server) -> Iterator[Server]:
    config = {
        "server": {"require_client_keys": True},
        "store": {"ledger_flush_seconds": 0.05},
        "breaker": {"failure_threshold": 1, "cooldown_seconds": COOLDOWN_SECONDS},
        "policy": {
            "rules": {"confidential": {"allow": ["local"]}},
            "reroute_alias": "local/echo",
        },
        "models": [
            fake_model(fake_openai, "cloud/echo", "echo-model", name="cloud-echo"),
            fake_model(
                fake_openai, "local/echo", "echo-model", name="local-echo", jurisdiction="local"
            ),
            fake_model(fake_openai, "gated", "gate", name="gated"),
        ],
    }
    env = {"ENTREPOT_ADMIN_KEY": ADMIN_KEY, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
    server = start_gateway(tmp_path_factory.mktemp("explain"), "explain", config, env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keys(gateway: Server) -> dict[str, str]:
    return {
        "everything": create_key(gateway, "everything"),
        "cloud-only": create_key(gateway, "cloud-only", allowed_models=["cloud/echo", "gated"]),
    }


def _body(model: str, text: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


def explain(gateway: Server, key_name: str, model: str, text: str = "Hello") -> dict[str, Any]:
    response = httpx.post(
        gateway.url + "/admin/route/explain",
        json={"model": model, "key": key_name, "request": _body(model, text)},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    explained: dict[str, Any] = response.json()
    return explained


def serve(gateway: Server, key: str, model: str, text: str = "Hello") -> httpx.Response:
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        json=_body(model, text),
        headers={"authorization": f"Bearer {key}"},
        timeout=60,
    )


def assert_agree(explained: dict[str, Any], served: httpx.Response) -> None:
    admitted = [c for c in explained["candidates"] if c["admitted"]]
    if served.status_code == 200:
        assert explained.get("refusal") is None
        first = next(c for c in admitted if c["order"] == 1)
        assert first["deployment"] == served.headers["x-entrepot-deployment"]
        return
    assert admitted == [], served.text
    refusal = explained.get("refusal") or {}
    error = served.json()["error"]
    assert (refusal.get("status"), refusal.get("code")) == (served.status_code, error["code"])


@pytest.mark.parametrize(
    ("key_name", "model", "text", "status"),
    [
        ("cloud-only", "cloud/echo", "Hello", 200),
        ("cloud-only", "local/echo", "Hello", 403),  # outside the key's allow-list
        ("everything", "cloud/echo", IBAN, 200),  # rerouted to the local model
        ("cloud-only", "cloud/echo", IBAN, 403),  # the reroute target is outside the allow-list
    ],
    ids=["allowed", "model-not-allowed", "rerouted", "reroute-not-allowed"],
)
def test_explain_and_serve_agree(
    gateway: Server, keys: dict[str, str], key_name: str, model: str, text: str, status: int
) -> None:
    explained = explain(gateway, key_name, model, text)
    served = serve(gateway, keys[key_name], model, text)
    assert served.status_code == status, served.text
    assert_agree(explained, served)


def test_the_refusals_say_why(gateway: Server) -> None:
    forbidden = explain(gateway, "cloud-only", "local/echo")
    assert forbidden["refusal"]["code"] == "model_not_allowed"
    assert forbidden["candidates"] == []
    sensitive = explain(gateway, "cloud-only", "cloud/echo", IBAN)
    assert sensitive["refusal"]["code"] == "egress_denied"
    assert [c["alias"] for c in sensitive["candidates"]] == ["cloud/echo"]
    assert sensitive["notes"] == ["key 'cloud-only' may not use 'local/echo'"]
    rerouted = explain(gateway, "everything", "cloud/echo", IBAN)
    assert rerouted["alias"] == "local/echo" and rerouted["data_class"] == "confidential"


def _gate(fake: Server, state: str | None = None) -> dict[str, Any]:
    if state is None:
        gate: dict[str, Any] = httpx.get(fake.url + "/gate").json()
    else:
        gate = httpx.post(fake.url + "/gate", json={"state": state}).json()
    return gate


def test_a_half_open_circuit_with_its_probe_in_flight(
    gateway: Server, keys: dict[str, str], fake_openai: Server
) -> None:
    key = keys["cloud-only"]
    _gate(fake_openai, "fail")
    try:
        assert serve(gateway, key, "gated").status_code == 502  # opens the circuit
        time.sleep(COOLDOWN_SECONDS + 0.2)  # half-open: the next request is the probe
        _gate(fake_openai, "hold")
        with ThreadPoolExecutor(max_workers=1) as pool:
            probe = pool.submit(serve, gateway, key, "gated")
            deadline = time.monotonic() + 30
            while _gate(fake_openai)["held"] == 0:
                assert time.monotonic() < deadline, "the probe never reached the upstream"
                time.sleep(0.02)
            explained = explain(gateway, "cloud-only", "gated")
            served = serve(gateway, key, "gated")
            assert served.status_code == 503
            assert_agree(explained, served)
            (row,) = explained["candidates"]
            assert (row["circuit"], row["admitted"]) == ("half-open", False)
            record = usage_record(gateway, served.headers["x-request-id"])
            (skipped,) = json.loads(record["attempts"])
            assert skipped == {"deployment": "gated", "outcome": "skipped", "reason": row["reason"]}
            assert "probe is already in flight" in row["reason"]
            _gate(fake_openai, "open")
            assert probe.result().status_code == 200
        explained = explain(gateway, "cloud-only", "gated")
        served = serve(gateway, key, "gated")
        assert served.status_code == 200
        assert_agree(explained, served)
    finally:
        _gate(fake_openai, "open")
