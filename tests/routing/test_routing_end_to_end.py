"""Routing, egress policy, limits and the cache through a real gateway: fallbacks on 500,
timeouts and resets; no retry after the first byte; a circuit breaker that opens and recovers;
sensitive data rerouted to the bundled local model; deny rules as 403s naming the rule; budgets
that never overshoot under concurrency; a cache hit that is identical and free."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import (
    ADMIN_KEY,
    LOCAL,
    UPSTREAM_KEY,
    Server,
    create_key,
    fake_model,
    free_port,
    start_gateway,
    usage_record,
)

PRICE = {"input_per_1m": "1", "output_per_1m": "1", "as_of": "2026-11-01"}


def _fake(fake: Server, alias: str, target: str, name: str, **extra: Any) -> dict[str, Any]:
    return fake_model(fake, alias, target, **{"name": name, "price": PRICE, **extra})


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory, fake_openai: Server) -> Iterator[Server]:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = {
        "server": {"require_client_keys": True},
        "store": {"ledger_flush_seconds": 0.05},
        "breaker": {"failure_threshold": 2, "cooldown_seconds": 1},
        "routes": {"solo/slow": {"max_attempts": 3, "backoff_seconds": 0}},
        "policy": {
            "rules": {"internal": {"deny": ["CN"]}, "confidential": {"allow": ["local"]}},
            "reroute_alias": LOCAL,
        },
        "models": [
            {
                "alias": LOCAL,
                "provider": "llama_cpp",
                "target": "bundled:smollm2-135m-instruct",
                "local": {"n_threads": 2},
            },
            _fake(fake_openai, "multi/500", "fail-500", "broken-first"),
            _fake(fake_openai, "multi/500", "echo-model", "echo-after-500"),
            _fake(fake_openai, "multi/hang", "hang", "hangs", timeouts={"total": 1}),
            _fake(fake_openai, "multi/hang", "echo-model", "echo-after-hang"),
            _fake(fake_openai, "multi/reset", "reset", "resets"),
            _fake(fake_openai, "multi/reset", "echo-model", "echo-after-reset"),
            _fake(fake_openai, "multi/midstream", "midstream-drop", "drops"),
            _fake(fake_openai, "multi/midstream", "echo-model", "never-reached"),
            _fake(fake_openai, "solo/midstream", "midstream-drop", "drops-alone"),
            {**_fake(fake_openai, "multi/local", "x", "dead-first"), "base_url": dead},
            {
                "alias": "multi/local",
                "name": "local-second",
                "provider": "llama_cpp",
                "target": "bundled:smollm2-135m-instruct",
                "local": {"n_threads": 2},
            },
            _fake(fake_openai, "flaky", "toggle", "toggle"),
            _fake(fake_openai, "solo/slow", "sleep-60001", "slow-solo", timeouts={"total": 1}),
            _fake(fake_openai, "cloud/echo", "echo-model", "us-echo"),
            _fake(fake_openai, "cn/echo", "echo-model", "cn-echo", jurisdiction="CN"),
            _fake(
                fake_openai,
                "budget/echo",
                "echo-model",
                "budget-echo",
                price={"input_per_1m": "0", "output_per_1m": "1", "as_of": "2026-11-01"},
            ),
        ],
    }
    env = {"ENTREPOT_ADMIN_KEY": ADMIN_KEY, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
    server = start_gateway(tmp_path_factory.mktemp("routed"), "routed", config, env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def key(routed: Server) -> str:
    return create_key(routed, "router-tests")


def _chat(
    gateway: Server, key: str, model: str, text: str = "hello there", **extra: Any
) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}", **extra.pop("headers", {})}
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=60)


def _stream(gateway: Server, key: str, model: str, text: str) -> tuple[str, list[str]]:
    """A streamed chat that started (status 200): its request id and its `data:` events."""
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json={"model": model, "stream": True, "messages": [{"role": "user", "content": text}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
        return response.headers["x-request-id"], events


@pytest.mark.parametrize(
    ("alias", "first", "second", "why"),
    [
        ("multi/500", "broken-first", "echo-after-500", "bad_gateway"),
        ("multi/hang", "hangs", "echo-after-hang", "upstream_timeout"),
        ("multi/reset", "resets", "echo-after-reset", "bad_gateway"),
    ],
)
def test_fallback_on_failure(
    routed: Server, key: str, alias: str, first: str, second: str, why: str
) -> None:
    response = _chat(routed, key, alias)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == alias
    assert response.headers["x-entrepot-deployment"] == second
    record = usage_record(routed, response.headers["x-request-id"])
    assert record["deployment"] == second and record["status"] == 200
    assert record["attempts"] is not None
    attempts = json.loads(record["attempts"])
    assert attempts == [
        {"deployment": first, "outcome": "failed", "reason": why},
        {"deployment": second, "outcome": "ok", "reason": None},
    ]
    if why == "upstream_timeout":  # the first may have generated too: billed as estimated
        assert record["prompt_tokens"] > 2 and record["usage_estimated"]
    else:  # billed once, for the answer that was delivered
        assert record["prompt_tokens"] == 2 and not record["usage_estimated"]


def test_fallback_to_the_bundled_local_model(routed: Server, key: str) -> None:
    response = _chat(routed, key, "multi/local", "Say hi.", max_tokens=8)
    assert response.status_code == 200, response.text
    assert response.headers["x-entrepot-deployment"] == "local-second"
    assert response.json()["choices"][0]["message"]["content"]


def test_no_retry_after_the_first_byte(routed: Server, key: str) -> None:
    request_id, events = _stream(routed, key, "multi/midstream", "one two three four")
    assert '"error"' in events[-1] and "[DONE]" not in events[-1]
    record = usage_record(routed, request_id)
    assert record["status"] == 502 and record["deployment"] == "drops"
    assert '"never-reached"' not in (record["attempts"] or "")


def test_a_timed_out_generation_is_sent_once(routed: Server, key: str, fake_openai: Server) -> None:
    """Three attempts allowed, one deployment: the upstream may have generated the whole answer
    after the deadline, so it is not asked again; every send is in the usage record."""
    response = _chat(routed, key, "solo/slow")
    assert response.status_code == 504
    attempts = json.loads(usage_record(routed, response.headers["x-request-id"])["attempts"])
    assert attempts == [
        {"deployment": "slow-solo", "outcome": "failed", "reason": "upstream_timeout"}
    ]
    time.sleep(0.5)  # time for a second copy to arrive, were one sent
    assert httpx.get(fake_openai.url + "/received/sleep-60001").json() == 1


def test_circuit_breaker_opens_and_recovers(routed: Server, key: str, fake_openai: Server) -> None:
    httpx.post(fake_openai.url + "/control", json={"failing": True})
    try:
        # A request counts once against its deployment: two failed requests open the circuit
        # (threshold 2), and the third is skipped.
        for _ in range(2):
            failed = _chat(routed, key, "flaky")
            assert failed.status_code == 502
            outcomes = json.loads(usage_record(routed, failed.headers["x-request-id"])["attempts"])
            assert [a["outcome"] for a in outcomes] == ["failed"]
        skipped = _chat(routed, key, "flaky")
        assert skipped.status_code == 503
        assert skipped.json()["error"]["code"] == "no_deployment_available"
        record = usage_record(routed, skipped.headers["x-request-id"])
        assert "circuit open" in record["attempts"]
    finally:
        httpx.post(fake_openai.url + "/control", json={"failing": False})
    time.sleep(1.2)
    probe = _chat(routed, key, "flaky")
    assert probe.status_code == 200
    assert _chat(routed, key, "flaky").status_code == 200


def test_streams_that_keep_breaking_mid_answer_open_the_circuit(routed: Server, key: str) -> None:
    # Each stream starts (its first chunk arrives) and then breaks: two such requests are two
    # consecutive failures (threshold 2), so the third is skipped instead of breaking again.
    for _ in range(2):
        _, events = _stream(routed, key, "solo/midstream", "hi there you")
        assert '"error"' in events[-1]
    skipped = _chat(routed, key, "solo/midstream", stream=True)
    assert skipped.status_code == 503
    assert "circuit open" in usage_record(routed, skipped.headers["x-request-id"])["attempts"]


def test_personal_data_is_rerouted_to_the_local_model(routed: Server, key: str) -> None:
    plain = _chat(routed, key, "cloud/echo", "hello")
    assert plain.headers["x-entrepot-deployment"] == "us-echo"
    text = "Pay it to GB82 WEST 1234 5698 7654 32 and mail jane.doe@example.org"
    sensitive = _chat(routed, key, "cloud/echo", text, max_tokens=8)
    assert sensitive.status_code == 200, sensitive.text
    assert sensitive.headers["x-entrepot-deployment"] == f"llama_cpp:{LOCAL}"
    record = usage_record(routed, sensitive.headers["x-request-id"])
    assert record["data_class"] == "confidential"
    assert "GB82" not in record["findings"]
    assert json.loads(record["findings"]) == {"email": 1, "iban": 1}
    # The deployment the rules kept it from, and the rule: what the console counts reroutes by.
    excluded, served = json.loads(record["attempts"])
    assert (excluded["deployment"], excluded["outcome"]) == ("us-echo", "excluded")
    assert excluded["reason"].startswith("data class 'confidential'")
    assert served["outcome"] == "ok"


def test_a_key_is_not_rerouted_to_a_model_outside_its_allow_list(routed: Server) -> None:
    limited = create_key(routed, "cloud-only", allowed_models=["cloud/echo"])
    text = "Pay it to GB82 WEST 1234 5698 7654 32 and mail jane.doe@example.org"
    refused = _chat(routed, limited, "cloud/echo", text, max_tokens=8)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "egress_denied"
    # The refusal is recorded with why it happened: the class the data raised and what was found.
    record = usage_record(routed, refused.headers["x-request-id"])
    assert (record["status"], record["error_type"]) == (403, "egress_denied")
    assert record["data_class"] == "confidential"
    assert json.loads(record["findings"]) == {"email": 1, "iban": 1}
    assert [(a["deployment"], a["outcome"]) for a in json.loads(record["attempts"])] == [
        ("us-echo", "excluded")
    ]
    assert _chat(routed, limited, "cloud/echo", "hello").status_code == 200


def test_deny_rule_is_a_403_naming_the_rule(routed: Server, key: str) -> None:
    response = _chat(routed, key, "cn/echo")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "egress_denied"
    assert "internal" in error["message"] and "CN" in error["message"]
    raised = _chat(routed, key, "cloud/echo", headers={"x-entrepot-data-class": "confidential"})
    assert raised.status_code == 403 and "local" in raised.json()["error"]["message"]
    lowered = _chat(routed, key, "cn/echo", headers={"x-entrepot-data-class": "public"})
    assert lowered.status_code == 403
    unknown = _chat(routed, key, "cloud/echo", headers={"x-entrepot-data-class": "top-secret"})
    assert unknown.status_code == 400


def test_budget_never_overshoots_under_64_concurrent_requests(routed: Server) -> None:
    # Output-only pricing ($1/1M) and an echo of exactly max_tokens=10 words: each request's
    # worst case (10,000 nanos) is also its real cost, so the budget of 100,000 fits exactly ten.
    spender = create_key(routed, "spender", budget={"amount": "0.0001", "period": "day"})
    nine_words = "one two three four five six seven eight nine"
    with ThreadPoolExecutor(max_workers=64) as pool:
        responses = list(
            pool.map(
                lambda _: _chat(routed, spender, "budget/echo", nine_words, max_tokens=10),
                range(64),
            )
        )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10 and statuses.count(402) == 54, statuses
    refused = next(r for r in responses if r.status_code == 402)
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert refused.json()["error"]["type"] == "insufficient_quota"
    records = [usage_record(routed, r.headers["x-request-id"]) for r in responses]
    spent = sum(record["cost_nanos"] or 0 for record in records)
    assert spent == 100_000
    assert all(r["completion_tokens"] == 10 for r in records if r["status"] == 200)


def test_requests_per_minute(routed: Server) -> None:
    limited = create_key(routed, "three-a-minute", requests_per_minute=3)
    statuses = [_chat(routed, limited, "cloud/echo") for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[0].headers["x-ratelimit-limit-requests"] == "3"
    assert statuses[3].json()["error"]["code"] == "rate_limit_exceeded"
    assert int(statuses[3].headers["retry-after"]) >= 1
    sdk = openai.OpenAI(base_url=routed.url + "/v1", api_key=limited, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="cloud/echo", messages=[{"role": "user", "content": "x"}])


def test_cache_hit_is_identical_and_free(routed: Server, key: str) -> None:
    on = {"x-entrepot-cache": "on"}
    first = _chat(routed, key, LOCAL, "Name a fruit.", max_tokens=8, headers=on)
    second = _chat(routed, key, LOCAL, "Name a fruit.", max_tokens=8, headers=on)
    assert first.headers["x-entrepot-cache"] == "miss"
    assert second.headers["x-entrepot-cache"] == "hit"
    assert second.content == first.content
    record = usage_record(routed, second.headers["x-request-id"])
    assert record["cache_hit"] == 1 and record["cost_nanos"] is None
    assert record["prompt_tokens"] == 0
    uncached = _chat(routed, key, LOCAL, "Name a fruit.", max_tokens=8)
    assert "x-entrepot-cache" not in uncached.headers


def test_route_explain(routed: Server, key: str) -> None:
    response = httpx.post(
        routed.url + "/admin/route/explain",
        json={"model": "cn/echo", "key": "router-tests"},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert response.status_code == 200, response.text
    explained = response.json()
    assert explained["data_class"] == "internal"
    (row,) = explained["candidates"]
    assert row["deployment"] == "cn-echo" and not row["admitted"]
    assert "CN" in row["reason"]
