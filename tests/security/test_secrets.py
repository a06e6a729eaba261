"""Secrets stay secret: client keys are stored only as hashes and checked without timing leaks;
keys, upstream credentials and prompts never reach the logs, the database or an error message.

The leak test plants unique strings — an upstream API key (from the environment) and a header
secret (from the config file), a client key, a wrong key and a prompt marker — drives successes
and every kind of failure through a gateway logging at debug level, then searches its log, its
database files and every response (bodies and headers) for them.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from entrepot.api import auth
from entrepot.api.auth import KeyRing
from entrepot.api.errors import log_unexpected
from entrepot.config import StoreConfig
from entrepot.store.db import open_engine
from entrepot.store.keys import KeyStore, hash_key
from tests.conftest import (
    ADMIN_KEY,
    UPSTREAM_KEY,
    Server,
    create_key,
    fake_model,
    free_port,
    start_gateway,
)
from tests.security.conftest import ECHO, EMBEDDER, secure_config

PLANTED_UPSTREAM_KEY = "sk-planted-upstream-" + secrets.token_hex(12)
PLANTED_HEADER_SECRET = "planted-header-" + secrets.token_hex(12)
PROMPT_MARKER = "prompt-marker-" + secrets.token_hex(12)
WRONG_KEY = "ek-planted-wrong-" + secrets.token_hex(12)


def planted_config(fake_openai: Server) -> dict[str, Any]:
    config = secure_config(fake_openai)

    remote = functools.partial(fake_model, fake_openai)
    config["models"] += [
        remote("planted/echo", "echo-model", api_key_env="PLANTED_UPSTREAM_KEY"),
        remote(
            "planted/header",
            "echo-model",
            api_key_env=None,
            headers={"x-secret": PLANTED_HEADER_SECRET},
        ),
        remote("fake/abroad", "echo-model"),
        remote("fake/broken", "fail-500"),
        remote("fake/rate-limited", "rate-limited"),
        remote("fake/midstream", "midstream-drop"),
        remote(
            "dead/unreachable",
            "x",
            api_key_env=None,
            base_url=f"http://127.0.0.1:{free_port()}/v1",
        ),
    ]
    return config


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory, fake_openai: Server) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("planted")
    env = {
        "ENTREPOT_ADMIN_KEY": ADMIN_KEY,
        "FAKE_UPSTREAM_KEY": UPSTREAM_KEY,
        "PLANTED_UPSTREAM_KEY": PLANTED_UPSTREAM_KEY,
    }
    config = planted_config(fake_openai)
    server = start_gateway(tmp, "planted", config, env, ["--log-level", "debug"])
    yield server
    server.stop()


def _chat(model: str, **extra: Any) -> dict[str, Any]:
    """The marker is in the system prompt and an earlier turn, never in the last user turn
    (which the fake upstream echoes back as its answer)."""
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": f"You keep {PROMPT_MARKER} to yourself."},
            {"role": "user", "content": f"Remember {PROMPT_MARKER}."},
            {"role": "user", "content": "Say hello."},
        ],
        **extra,
    }


def _traffic(gateway: Server, key: str) -> list[httpx.Response]:
    """Successes and failures of every kind, all carrying the planted strings."""
    auth_header = {"authorization": f"Bearer {key}"}
    marker_body = f'{{"model": "{ECHO}", "messages": [{{"content": "{PROMPT_MARKER}"'
    with httpx.Client(base_url=gateway.url, headers=auth_header, timeout=30) as client:
        sent = [
            client.post("/v1/chat/completions", json=_chat(ECHO)),
            client.post("/v1/chat/completions", json=_chat(ECHO, stream=True)),
            client.post(
                "/v1/chat/completions", json=_chat(ECHO), headers={"x-entrepot-cache": "on"}
            ),
            client.post(
                "/v1/chat/completions", json=_chat(ECHO), headers={"x-entrepot-cache": "on"}
            ),
            client.post("/v1/completions", json={"model": ECHO, "prompt": ["hi", PROMPT_MARKER]}),
            client.post("/v1/embeddings", json={"model": EMBEDDER, "input": PROMPT_MARKER}),
            client.post("/v1/chat/completions", json=_chat("planted/echo")),
            client.post("/v1/embeddings", json={"model": "planted/echo", "input": PROMPT_MARKER}),
            client.post("/v1/chat/completions", json=_chat("planted/header")),
            client.post("/v1/chat/completions", json=_chat("fake/broken")),
            client.post("/v1/chat/completions", json=_chat("fake/rate-limited")),
            client.post("/v1/chat/completions", json=_chat("fake/midstream", stream=True)),
            client.post("/v1/chat/completions", json=_chat("dead/unreachable")),
            client.post("/v1/chat/completions", json=_chat("no/such-model")),
            client.post("/v1/chat/completions", json=_chat(ECHO, temperature=PROMPT_MARKER)),
            client.post("/v1/chat/completions", json=_chat(ECHO, max_tokens=-1)),
            client.post(
                "/v1/chat/completions",
                json={"model": ECHO, "messages": [{"role": PROMPT_MARKER, "content": "x"}]},
            ),
            client.post(
                "/v1/chat/completions",
                content=marker_body,
                headers={"content-type": "application/json"},
            ),
            client.post(
                "/v1/chat/completions",
                json=_chat(ECHO, user="x" * (9 * 1024 * 1024)),
            ),
            client.post(
                "/v1/chat/completions",
                json={
                    "model": "fake/abroad",
                    "messages": [{"role": "user", "content": f"mail {PROMPT_MARKER}@example.org"}],
                },
            ),
            client.post("/v1/completions", json=_chat(ECHO)),
            client.get("/v1/models"),
            client.get(f"/v1/models/{ECHO}"),
            client.get("/metrics"),
            client.get("/openapi.json"),
        ]
        for wrong in (WRONG_KEY, f"{key[:-4]}xxxx", "ek-"):
            sent.append(
                client.post(
                    "/v1/chat/completions",
                    json=_chat(ECHO),
                    headers={"authorization": f"Bearer {wrong}"},
                )
            )
        sent.append(client.get("/admin/keys", headers={"authorization": f"Bearer {key}"}))
        sent.append(client.get("/admin/keys", headers={"authorization": f"Bearer {WRONG_KEY}"}))
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        sent.append(client.get("/admin/keys?all=true", headers=admin))
        sent.append(client.get("/admin/usage?by=key", headers=admin))
    return sent


def _leaks(text: str, planted: dict[str, str]) -> list[str]:
    return [name for name, value in planted.items() if value in text]


def test_no_secret_or_prompt_in_logs_responses_or_database(planted: Server) -> None:
    key = create_key(planted, "planted-client")
    revoked = create_key(planted, "planted-revoked")
    httpx.delete(
        planted.url + "/admin/keys/planted-revoked",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    ).raise_for_status()
    responses = _traffic(planted, key)
    responses.append(
        httpx.get(planted.url + "/v1/models", headers={"authorization": f"Bearer {revoked}"})
    )
    statuses = sorted({r.status_code for r in responses})
    assert statuses == [200, 400, 401, 403, 404, 413, 429, 502], statuses
    everywhere = {
        "client key": key,
        "client key (beyond its stored prefix)": key[10:],
        "revoked key": revoked[10:],
        "wrong key": WRONG_KEY,
        "upstream key": PLANTED_UPSTREAM_KEY,
        "shared upstream key": UPSTREAM_KEY,
        "header secret": PLANTED_HEADER_SECRET,
        "admin key": ADMIN_KEY,
        "prompt": PROMPT_MARKER,
    }
    for response in responses:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        found = _leaks(response.text + headers, everywhere)
        assert not found, (response.request.url, response.status_code, found)

    planted.stop()
    log = planted.log.read_text(errors="replace")
    assert "unexpected error" not in log
    assert not _leaks(log, everywhere), _leaks(log, everywhere)
    assert planted.data_dir is not None
    for file in sorted(f for f in planted.data_dir.rglob("*") if f.is_file()):
        content = file.read_bytes().decode("latin-1")
        assert not _leaks(content, everywhere), (file.name, _leaks(content, everywhere))


def test_client_keys_are_hashed_at_rest(secure_gateway: Server) -> None:
    key = create_key(secure_gateway, "hashed-at-rest")
    assert secure_gateway.data_dir is not None
    database = secure_gateway.data_dir / "entrepot.db"
    with sqlite3.connect(database) as db:
        row = db.execute(
            "SELECT key_hash, key_prefix FROM api_keys WHERE name = 'hashed-at-rest'"
        ).fetchone()
    assert row == (hashlib.sha256(key.encode()).hexdigest(), key[:10])
    for file in (f for f in Path(secure_gateway.data_dir).rglob("*") if f.is_file()):
        assert key[10:].encode() not in file.read_bytes(), file.name


def test_client_key_lookup_is_by_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Client keys are found by a dict lookup on the SHA-256 of the presented key, and never
    compared to a stored key directly. How long the lookup takes depends on the digest of the
    guess, which says nothing about how many characters of a real key the guess shares (finding
    a guess whose digest shares a prefix with a stored digest teaches nothing about the key, and
    stored digests are never shown), so no timing side channel leads to a key; a byte-by-byte
    comparison of plaintext keys would, which is why there is none."""
    engine = open_engine(StoreConfig(url=f"sqlite:///{tmp_path / 'keys.db'}"))
    _record, key = KeyStore(engine).create("lookup")
    assert set(KeyStore(engine).active_by_hash()) == {hash_key(key)}
    hashed: list[str] = []

    def spy(secret: str) -> str:
        hashed.append(secret)
        return hash_key(secret)

    monkeypatch.setattr(auth, "hash_key", spy)
    ring = KeyRing(engine, admin_key=None, require_keys=True)

    async def authenticate() -> str | None:
        await ring.reload()
        found = await ring.authenticate({"authorization": f"Bearer {key}"})
        return found.name if found else None

    assert asyncio.run(authenticate()) == "lookup"
    assert hashed == [key]


def test_admin_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The admin key is held in plain memory (it comes from the environment), so it is checked
    with `hmac.compare_digest`, whose running time does not depend on where inputs differ."""
    compared: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return a == b

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    ring = KeyRing(
        engine=open_engine(StoreConfig(url="sqlite://")), admin_key="adm", require_keys=True
    )
    assert ring.is_admin("adm") and not ring.is_admin("adx")
    assert compared == [(b"adm", b"adm"), (b"adx", b"adm")]


def test_unexpected_errors_are_logged_without_their_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail() -> None:
        raise ValueError(f"could not read {PROMPT_MARKER}") from KeyError(PROMPT_MARKER)

    try:
        fail()
    except ValueError as exc:
        with caplog.at_level(logging.ERROR, logger="entrepot.api"):
            log_unexpected(exc)
    assert "ValueError" in caplog.text and "in fail" in caplog.text
    assert PROMPT_MARKER not in caplog.text
