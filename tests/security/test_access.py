"""Who may do what: the admin API only with the admin key, no exposure beyond loopback without
authentication, no way for a client to point the gateway at a URL of its choosing, CORS only
where configured, and a key's model allow-list on every endpoint, streaming and cache included.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from entrepot.cli.gateway import check_bind
from entrepot.config import Config, ServerConfig
from entrepot.exceptions import ConfigError
from tests.conftest import ADMIN_KEY, ROOT, Server, create_key, free_port, start_gateway
from tests.schemas import validate
from tests.security.conftest import ECHO, EMBEDDER, OTHER, secure_config

ORIGIN = "https://app.example"


def _error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    validate(response.json(), "ErrorResponse")
    if code is not None:
        assert response.json()["error"]["code"] == code


@pytest.fixture(scope="module")
def open_gateway(tmp_path_factory: pytest.TempPathFactory, fake_openai: Server) -> Iterator[Server]:
    """Keys not required, no admin key, CORS configured for one origin."""
    config = secure_config(fake_openai, require_client_keys=False, cors_origins=[ORIGIN])
    env = {"FAKE_UPSTREAM_KEY": "test-upstream-key"}
    server = start_gateway(tmp_path_factory.mktemp("open"), "open", config, env)
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/admin/keys"), ("GET", "/admin/usage"), ("DELETE", "/admin/keys/1")],
)
def test_admin_api_needs_the_admin_key(
    secure_gateway: Server, secure_key: str, method: str, path: str
) -> None:
    for sent in (None, "wrong-admin-key", secure_key, ADMIN_KEY[:-1]):
        headers = {"authorization": f"Bearer {sent}"} if sent else {}
        response = httpx.request(method, secure_gateway.url + path, headers=headers)
        _error(response, 401)
    create = httpx.post(
        secure_gateway.url + "/admin/keys",
        json={"name": "not-by-a-client"},
        headers={"authorization": f"Bearer {secure_key}"},
    )
    _error(create, 401)
    allowed = httpx.get(
        secure_gateway.url + "/admin/keys", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert allowed.status_code == 200


def test_responses_do_not_name_the_server_software(open_gateway: Server) -> None:
    for response in (
        httpx.get(open_gateway.url + "/health"),
        httpx.post(open_gateway.url + "/v1/chat/completions", json={"model": ECHO, "messages": []}),
    ):
        assert "server" not in response.headers


def test_admin_api_is_off_without_an_admin_key(open_gateway: Server) -> None:
    for sent in (None, ADMIN_KEY, ""):
        headers = {"authorization": f"Bearer {sent}"} if sent else {}
        response = httpx.get(open_gateway.url + "/admin/keys", headers=headers)
        _error(response, 403, "admin_disabled")


def _serve(host: str, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "entrepot", "serve", "--host", host, "--port", str(free_port())]
    environment = {**os.environ, "ENTREPOT_DATA_DIR": str(tmp), "ENTREPOT_ADMIN_KEY": "", **env}
    return subprocess.run(
        args, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "127.attacker.example"])
def test_serving_beyond_loopback_without_auth_refuses_to_start(host: str, tmp_path: Path) -> None:
    result = _serve(host, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    output = " ".join((result.stdout + result.stderr).split())
    assert f"refusing to bind {host}" in output
    assert "ENTREPOT_ADMIN_KEY" in output and "require_client_keys" in output


def test_an_admin_key_alone_is_not_enough_beyond_loopback(tmp_path: Path) -> None:
    """Client keys stay optional by default; with them optional, anyone could use the models."""
    result = _serve("0.0.0.0", tmp_path, ENTREPOT_ADMIN_KEY=ADMIN_KEY)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "refusing to bind 0.0.0.0" in " ".join(result.stdout.split())


def test_bind_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    locked = Config(server=ServerConfig(require_client_keys=True))
    monkeypatch.setenv("ENTREPOT_ADMIN_KEY", ADMIN_KEY)
    check_bind(locked, "0.0.0.0")
    check_bind(Config(), "127.0.0.1")
    with pytest.raises(ConfigError):
        check_bind(Config(), "0.0.0.0")
    monkeypatch.setenv("ENTREPOT_ADMIN_KEY", "")
    check_bind(Config(), "localhost")
    with pytest.raises(ConfigError):
        check_bind(locked, "192.0.2.1")


class Listener:
    """A loopback socket nobody should connect to. It never accepts while listening: the kernel
    completes connections into its backlog, and `connections()` counts them afterwards."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


@pytest.fixture
def listener() -> Iterator[Listener]:
    target = Listener()
    yield target
    target.sock.close()


def test_clients_cannot_point_the_gateway_at_a_url(
    secure_gateway: Server, secure_key: str, fake_openai: Server, listener: Listener
) -> None:
    """URLs in the model name, in body fields other gateways read, or in headers: a model that is
    not configured is a 404, and a configured one goes to its configured upstream, with the
    fields as inert data; the listener the URLs name never sees a connection."""
    url = f"http://127.0.0.1:{listener.port}"
    headers = {"authorization": f"Bearer {secure_key}"}
    client = httpx.Client(base_url=secure_gateway.url, headers=headers, timeout=30)
    message = [{"role": "user", "content": "ssrf-probe"}]
    redirects = {
        "base_url": f"{url}/v1",
        "api_base": f"{url}/v1",
        "api_url": url,
        "url": url,
        "endpoint": url,
        "extra_headers": {"host": f"127.0.0.1:{listener.port}"},
    }
    spoofed = {
        "x-forwarded-host": f"127.0.0.1:{listener.port}",
        "forwarded": f"host=127.0.0.1:{listener.port}",
        "x-upstream-url": url,
        "x-entrepot-base-url": url,
        "x-entrepot-deployment": url,
    }
    body = {"model": ECHO, "messages": message, **redirects}
    served = client.post("/v1/chat/completions", json=body, headers=spoofed)
    assert served.status_code == 200, served.text
    assert served.headers["x-entrepot-deployment"] == f"openai_compatible:{ECHO}"
    assert served.json()["choices"][0]["message"]["content"] == "echo: ssrf-probe"
    forwarded = httpx.get(fake_openai.url + "/last-request").json()
    # Forwarded as sent, but for the target name and the output cap the budget reserved for.
    assert forwarded == {**body, "model": "echo-model", "max_tokens": 4096}

    for model in (url, f"{url}/v1", f"openai_compatible:{url}", f"{ECHO}@{url}", f"//{url}"):
        chat = {"model": model, "messages": message, **redirects}
        _error(client.post("/v1/chat/completions", json=chat, headers=spoofed), 404)
        _error(client.post("/v1/embeddings", json={"model": model, "input": "x"}), 404)
        _error(client.get(f"/v1/models/{model}"), 404)
    client.close()
    assert httpx.get(fake_openai.url + "/last-request").json() == forwarded
    assert listener.connections() == 0


def _preflight(gateway: Server, origin: str) -> httpx.Response:
    return httpx.options(
        gateway.url + "/v1/chat/completions",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": (
                "authorization, content-type, x-entrepot-data-class, x-entrepot-cache"
            ),
        },
    )


def test_cors_is_off_by_default(secure_gateway: Server, secure_key: str) -> None:
    preflight = _preflight(secure_gateway, ORIGIN)
    assert preflight.status_code == 405
    get = httpx.get(
        secure_gateway.url + "/v1/models",
        headers={"origin": ORIGIN, "authorization": f"Bearer {secure_key}"},
    )
    assert get.status_code == 200
    for response in (preflight, get, httpx.get(secure_gateway.url + "/health")):
        assert not any(h.startswith("access-control-") for h in response.headers)


def test_cors_allows_only_the_configured_origins(open_gateway: Server) -> None:
    preflight = _preflight(open_gateway, ORIGIN)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in preflight.headers
    get = httpx.get(open_gateway.url + "/v1/models", headers={"origin": ORIGIN})
    assert get.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in get.headers["access-control-expose-headers"]

    foreign = "https://elsewhere.example"
    assert _preflight(open_gateway, foreign).status_code == 400
    refused = httpx.get(open_gateway.url + "/v1/models", headers={"origin": foreign})
    assert "access-control-allow-origin" not in refused.headers


@pytest.fixture(scope="module")
def limited(secure_gateway: Server) -> openai.OpenAI:
    key = create_key(secure_gateway, "only-other", allowed_models=[OTHER])
    return openai.OpenAI(base_url=secure_gateway.url + "/v1", api_key=key, max_retries=0)


def test_allow_list_on_every_endpoint(limited: openai.OpenAI) -> None:
    hello: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
    calls = {
        "chat": lambda: limited.chat.completions.create(model=ECHO, messages=hello),
        "chat stream": lambda: limited.chat.completions.create(
            model=ECHO, messages=hello, stream=True
        ),
        "completion": lambda: limited.completions.create(model=ECHO, prompt="x"),
        "completion stream": lambda: limited.completions.create(
            model=ECHO, prompt="x", stream=True
        ),
        "embedding": lambda: limited.embeddings.create(model=EMBEDDER, input="x"),
        "model": lambda: limited.models.retrieve(ECHO),
        "unknown model": lambda: limited.models.retrieve("no/such-model"),
    }
    for name, call in calls.items():
        with pytest.raises(openai.PermissionDeniedError) as caught:
            call()
        assert caught.value.code == "model_not_allowed", name

    assert [m.id for m in limited.models.list()] == [OTHER]
    assert limited.models.retrieve(OTHER).id == OTHER
    assert limited.chat.completions.create(model=OTHER, messages=hello).choices
    chunks = list(limited.chat.completions.create(model=OTHER, messages=hello, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello"


def test_a_cached_answer_is_not_served_past_the_allow_list(
    secure_gateway: Server, secure_key: str, limited: openai.OpenAI
) -> None:
    body = {"model": ECHO, "messages": [{"role": "user", "content": "cache me"}]}
    url = secure_gateway.url + "/v1/chat/completions"
    for _ in range(2):
        full = httpx.post(
            url,
            json=body,
            headers={"authorization": f"Bearer {secure_key}", "x-entrepot-cache": "on"},
        )
        assert full.status_code == 200
    assert full.headers["x-entrepot-cache"] == "hit"
    denied = httpx.post(
        url,
        json=body,
        headers={"authorization": f"Bearer {limited.api_key}", "x-entrepot-cache": "on"},
    )
    _error(denied, 403, "model_not_allowed")


def test_a_revoked_key_is_refused_everywhere(secure_gateway: Server) -> None:
    key = create_key(secure_gateway, "revoked-everywhere")
    httpx.delete(
        secure_gateway.url + "/admin/keys/revoked-everywhere",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    ).raise_for_status()
    for header in ({"authorization": f"Bearer {key}"}, {"x-api-key": key}):
        with httpx.Client(base_url=secure_gateway.url, headers=header, timeout=30) as client:
            _error(client.get("/v1/models"), 401)
            _error(client.get(f"/v1/models/{ECHO}"), 401)
            _error(client.post("/v1/chat/completions", json={"model": ECHO, "messages": []}), 401)
            _error(client.post("/v1/completions", json={"model": ECHO, "prompt": "x"}), 401)
            _error(client.post("/v1/embeddings", json={"model": EMBEDDER, "input": "x"}), 401)
