"""Two replicas (separate processes) on one PostgreSQL database and one Redis: what one learns —
a key created or revoked, an answer cached, an upstream failing — the other knows too.

Timings are measured and printed (run with `-s` to see them), never asserted beyond what the
issue demands: a key revoked on one replica is refused by the other within one second.
"""

from __future__ import annotations

import contextlib
import functools
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.console.conftest import hidden, log_in
from tests.backing import new_database, start_redis
from tests.conftest import (
    ADMIN_KEY,
    UPSTREAM_KEY,
    Server,
    admin,
    create_key,
    fake_model,
    start_fake,
    start_gateway,
)

ENTREPOT = [sys.executable, "-m", "entrepot"]
ECHO = "shared-state/echo"
GATE = "shared-state/gate"
COOLDOWN = 2.0
PROBE_ELSEWHERE = "circuit half-open; a probe is already in flight on another replica"


@dataclass
class Fleet:
    a: Server
    b: Server
    fake: Server

    def stop(self) -> None:
        for server in (self.a, self.b, self.fake):
            server.stop()


def start_fleet(tmp: Path, postgres_url: str, redis_url: str, gate: str) -> Fleet:
    """A fake upstream and two replicas of one gateway in front of it, started one after the
    other (each migrates the database first, if needed)."""
    fake = start_fake(tmp, "openai_upstream", "/v1/models")
    config = {
        "server": {"require_client_keys": True},
        "store": {"url": new_database(postgres_url), "ledger_flush_seconds": 0.05},
        "shared": {"backend": "redis"},
        "default_route": {"max_attempts": 1},
        "breaker": {"failure_threshold": 2, "cooldown_seconds": COOLDOWN},
        "models": [fake_model(fake, ECHO, "echo-model"), fake_model(fake, gate, "gate")],
    }
    env = {
        "ENTREPOT_ADMIN_KEY": ADMIN_KEY,
        "FAKE_UPSTREAM_KEY": UPSTREAM_KEY,
        "ENTREPOT_REDIS_URL": redis_url,
    }
    a = start_gateway(tmp, "a", config, env)
    b = start_gateway(tmp, "b", config, env)
    return Fleet(a, b, fake)


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str
) -> Iterator[Fleet]:
    fleet = start_fleet(tmp_path_factory.mktemp("shared-state"), postgres_url, redis_url, GATE)
    yield fleet
    fleet.stop()


def ask(server: Server, secret: str, model: str, **headers: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": f"hello {uuid.uuid4()}"}]}
    return httpx.post(
        server.url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {secret}", **headers},
        timeout=30,
    )


def accepts(replica: httpx.Client, secret: str) -> bool:
    """Whether a replica takes `secret` as a key (401: unknown or revoked)."""
    response = replica.get("/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


def refuses(replica: httpx.Client, secret: str) -> bool:
    return not accepts(replica, secret)


def explain(server: Server, model: str) -> dict[str, Any]:
    """The first candidate of a route as this replica sees it now: circuit state and reason."""
    with admin(server) as client:
        response = client.post("/admin/route/explain", json={"model": model})
    assert response.status_code == 200, response.text
    candidate: dict[str, Any] = response.json()["candidates"][0]
    return candidate


def eventually(check: Any, seconds: float) -> Any:
    """Poll `check` until it returns something truthy or `seconds` have passed; its last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.005)


def set_gate(fake: Server, state: str) -> None:
    assert httpx.post(fake.url + "/gate", json={"state": state}).status_code == 200


def received(fake: Server, target: str) -> int:
    count: int = httpx.get(f"{fake.url}/received/{target}").json()
    return count


def test_a_key_revoked_on_one_replica_is_refused_by_the_other_within_a_second(
    fleet: Fleet,
) -> None:
    sent_to_refused, answered_to_refused = [], []
    with admin(fleet.a) as client, httpx.Client(base_url=fleet.b.url) as b:
        for round_ in range(20):
            secret = create_key(fleet.a, f"gone-{round_}")
            assert eventually(functools.partial(accepts, b, secret), 1.0)
            sent = time.monotonic()
            assert client.delete(f"/admin/keys/gone-{round_}").status_code == 200
            answered = time.monotonic()
            refused = eventually(functools.partial(refuses, b, secret), 1.0)
            sent_to_refused.append(time.monotonic() - sent)
            answered_to_refused.append(time.monotonic() - answered)
            assert refused, f"round {round_}: still accepted a second after the revocation"
    for what, delays in (("sent", sent_to_refused), ("answered", answered_to_refused)):
        delays.sort()
        print(
            f"\nrevoked key refused by the other replica, ms after the revocation was {what}:"
            f" min {delays[0] * 1000:.1f}, median {statistics.median(delays) * 1000:.1f},"
            f" p90 {delays[17] * 1000:.1f}, max {delays[-1] * 1000:.1f}"
        )


def test_a_key_created_on_one_replica_is_accepted_by_the_other(fleet: Fleet) -> None:
    secret = create_key(fleet.a, "created-here")
    assert ask(fleet.b, secret, ECHO).status_code == 200


def test_an_answer_cached_through_one_replica_is_a_hit_on_the_other(fleet: Fleet) -> None:
    secret = create_key(fleet.a, "cached")
    body = {"model": ECHO, "messages": [{"role": "user", "content": f"cache {uuid.uuid4()}"}]}
    headers = {"Authorization": f"Bearer {secret}", "x-entrepot-cache": "on"}
    first = httpx.post(fleet.a.url + "/v1/chat/completions", json=body, headers=headers)
    assert first.status_code == 200 and first.headers["x-entrepot-cache"] == "miss"
    upstream_calls = received(fleet.fake, "echo-model")
    second = httpx.post(fleet.b.url + "/v1/chat/completions", json=body, headers=headers)
    assert second.status_code == 200 and second.headers["x-entrepot-cache"] == "hit"
    assert second.json() == first.json()
    assert received(fleet.fake, "echo-model") == upstream_calls


def test_failures_through_one_replica_open_the_circuit_on_the_other(fleet: Fleet) -> None:
    secret = create_key(fleet.a, "circuit")
    set_gate(fleet.fake, "fail")
    try:
        assert explain(fleet.b, GATE)["circuit"] == "closed"
        for _ in range(2):
            assert ask(fleet.a, secret, GATE).status_code == 502
        assert eventually(lambda: explain(fleet.b, GATE)["circuit"] == "open", 1.0)
        upstream_calls = received(fleet.fake, "gate")
        refused = ask(fleet.b, secret, GATE)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "no_deployment_available"
        assert received(fleet.fake, "gate") == upstream_calls
        # The upstream recovers; a probe through B closes the circuit on A too.
        set_gate(fleet.fake, "open")
        assert eventually(lambda: explain(fleet.b, GATE)["circuit"] == "half-open", COOLDOWN + 1)
        assert ask(fleet.b, secret, GATE).status_code == 200
        assert eventually(lambda: explain(fleet.a, GATE)["circuit"] == "closed", 1.0)
    finally:
        set_gate(fleet.fake, "open")


def test_the_probe_lease_of_a_killed_replica_expires(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    gate = f"shared-state/lease-{uuid.uuid4().hex[:8]}"
    fleet = start_fleet(tmp_path, postgres_url, redis_url, gate)
    try:
        secret = create_key(fleet.a, "lease")
        set_gate(fleet.fake, "fail")
        for _ in range(2):
            assert ask(fleet.a, secret, gate).status_code == 502
        assert eventually(lambda: explain(fleet.a, gate)["circuit"] == "half-open", COOLDOWN + 1)
        set_gate(fleet.fake, "hold")
        probe = threading.Thread(target=_ask_quietly, args=(fleet.a, secret, gate))
        probe.start()  # A's probe, held by the upstream ...
        assert eventually(lambda: httpx.get(fleet.fake.url + "/gate").json()["held"] == 1, 5)
        assert eventually(lambda: explain(fleet.b, gate)["reason"] == PROBE_ELSEWHERE, 1.0)
        assert ask(fleet.b, secret, gate).status_code == 503
        fleet.a.process.kill()  # ... when A dies, holding the probe lease
        killed = time.monotonic()
        set_gate(fleet.fake, "open")
        answered = eventually(lambda: ask(fleet.b, secret, gate).status_code == 200, COOLDOWN + 3)
        print(f"\nB probed {time.monotonic() - killed:.2f}s after A was killed holding the lease")
        assert answered
        assert explain(fleet.b, gate)["circuit"] == "closed"
        probe.join()
    finally:
        fleet.stop()


def _ask_quietly(server: Server, secret: str, model: str) -> None:
    """A request whose server is killed under it."""
    with contextlib.suppress(httpx.HTTPError):
        ask(server, secret, model)


def test_without_redis_requests_are_still_served(tmp_path: Path) -> None:
    """Redis stopped under a replica: the cache misses, the circuit is the replica's own, keys
    are created and revoked as with one process; nothing fails for want of shared state."""
    redis = start_redis(tmp_path / "redis")
    fake = start_fake(tmp_path, "openai_upstream", "/v1/models")
    broken = "shared-state/broken"
    config = {
        "server": {"require_client_keys": True},
        "shared": {"backend": "redis"},
        "default_route": {"max_attempts": 1},
        "breaker": {"failure_threshold": 2, "cooldown_seconds": 60},
        "models": [fake_model(fake, ECHO, "echo-model"), fake_model(fake, broken, "fail-500")],
    }
    env = {
        "ENTREPOT_ADMIN_KEY": ADMIN_KEY,
        "FAKE_UPSTREAM_KEY": UPSTREAM_KEY,
        "ENTREPOT_REDIS_URL": redis.url,
    }
    replica = start_gateway(tmp_path, "alone", config, env)
    try:
        secret = create_key(replica, "no-redis")
        cached = {"x-entrepot-cache": "on"}
        body = {"model": ECHO, "messages": [{"role": "user", "content": "the same question"}]}
        headers = {"Authorization": f"Bearer {secret}", **cached}

        def ask_cached() -> str:
            response = httpx.post(replica.url + "/v1/chat/completions", json=body, headers=headers)
            assert response.status_code == 200, response.text
            return response.headers["x-entrepot-cache"]

        assert [ask_cached(), ask_cached()] == ["miss", "hit"]
        redis.stop()
        assert [ask_cached(), ask_cached()] == ["miss", "miss"]
        for _ in range(2):
            assert ask(replica, secret, broken).status_code == 502
        calls = received(fake, "fail-500")
        assert ask(replica, secret, broken).status_code == 503  # opened here, without Redis
        assert received(fake, "fail-500") == calls
        other = create_key(replica, "made-without-redis")
        assert ask(replica, other, ECHO).status_code == 200
        with admin(replica) as client:
            assert client.delete("/admin/keys/made-without-redis").status_code == 200
        assert ask(replica, other, ECHO).status_code == 401
        assert httpx.get(replica.url + "/health").status_code == 200
    finally:
        replica.stop()
        fake.stop()
        redis.stop()


def test_a_key_revoked_with_the_cli_is_refused_by_every_replica_within_a_second(
    fleet: Fleet, redis_url: str
) -> None:
    """`entrepot keys revoke` writes the database and announces it, like the admin API."""
    secret = create_key(fleet.a, "revoked-from-the-cli")
    path = fleet.a.log.parent / "a.yaml"  # replica A's own configuration file
    with httpx.Client(base_url=fleet.a.url) as a, httpx.Client(base_url=fleet.b.url) as b:
        assert accepts(a, secret) and accepts(b, secret)
        result = subprocess.run(
            [*ENTREPOT, "keys", "revoke", "revoked-from-the-cli", "--config", str(path)],
            env={**os.environ, "ENTREPOT_REDIS_URL": redis_url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert eventually(functools.partial(refuses, a, secret), 1.0)
        assert eventually(functools.partial(refuses, b, secret), 1.0)


def test_a_console_logout_on_one_replica_ends_the_session_on_the_other(fleet: Fleet) -> None:
    with httpx.Client(base_url=fleet.a.url, timeout=30) as a:
        assert log_in(a).status_code == 303
        cookie = a.cookies["entrepot_console"]
        with httpx.Client(base_url=fleet.b.url, timeout=30) as b:
            b.cookies.set("entrepot_console", cookie, path="/ui")
            assert b.get("/ui/keys").status_code == 200  # one session, valid on every replica
            token = hidden(a.get("/ui/keys").text, "csrf_token")
            assert a.post("/ui/logout", data={"csrf_token": token}).status_code == 303
            refused = b.get("/ui/keys")
    assert refused.status_code == 303 and refused.headers["location"] == "/ui/login"
