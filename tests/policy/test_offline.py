"""`entrepot serve --offline` with remote models configured and requested: only the local model
answers, and the process never opens a connection beyond loopback — checked by watching its
sockets while the requests are in flight."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator

import httpx
import psutil
import pytest

from entrepot.config import ModelConfig, PolicyConfig, is_loopback
from entrepot.policy.egress import EgressPolicy
from tests.conftest import LOCAL, Server, free_port, start_gateway

LOOPBACK_URLS = [
    "http://127.0.0.1:8000/v1",
    "http://127.0.0.2:8000/v1",
    "http://127.1:8000/v1",
    "http://127.0.1:8000/v1",
    "http://0x7f.1:8000/v1",
    "http://0x7f000001:8000/v1",
    "http://2130706433:8000/v1",
    "http://[::1]:8000/v1",
    "http://[0:0:0:0:0:0:0:1]:8000/v1",
    "http://[::ffff:127.0.0.1]:8000/v1",
    "http://localhost:8000/v1",
    "http://LocalHost/v1",
]
REMOTE_URLS = [
    "http://192.0.2.10/v1",
    "http://192.0.2.10.nip.example/v1",
    "http://127.0.0.1.nip.example/v1",
    "http://localhost.example/v1",
    "http://0.0.0.0/v1",
    "http://[::]/v1",
    "http://[2001:db8::1]/v1",
    "http://1.2.3.4.5/v1",
]


def _outbound(pid: int) -> list[str]:
    found = []
    for conn in psutil.Process(pid).net_connections(kind="inet"):
        if conn.raddr and not ipaddress.ip_address(conn.raddr.ip).is_loopback:
            found.append(f"{conn.raddr.ip}:{conn.raddr.port} {conn.status}")
    return found


@pytest.fixture(scope="module")
def offline_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("offline")
    config = {
        "policy": {"offline": True},
        "models": [
            {
                "alias": LOCAL,
                "provider": "llama_cpp",
                "target": "bundled:smollm2-135m-instruct",
                "local": {"n_threads": 2},
            },
            {
                "alias": "remote/deepseek",
                "provider": "openai_compatible",
                "target": "deepseek-chat",
                "base_url": "http://192.0.2.10/v1",
                "jurisdiction": "CN",
            },
            {
                "alias": "remote/claude",
                "provider": "anthropic",
                "target": "claude-haiku-4-5",
                "base_url": "https://198.51.100.7",
                "jurisdiction": "US",
            },
            {
                "alias": "loopback/vllm",
                "provider": "openai_compatible",
                "target": "x",
                "base_url": f"http://127.0.0.1:{free_port()}/v1",
            },
            {
                "alias": "loopback/short",
                "provider": "openai_compatible",
                "target": "x",
                "base_url": f"http://127.1:{free_port()}/v1",
            },
        ],
    }
    server = start_gateway(tmp, "offline", config)
    yield server
    server.stop()


def test_offline_serves_local_and_opens_no_outbound_socket(offline_gateway: Server) -> None:
    pid = offline_gateway.process.pid
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.extend(_outbound(pid))
            stop.wait(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        url = offline_gateway.url + "/v1/chat/completions"
        for model in ("remote/deepseek", "remote/claude"):
            for stream in (False, True):
                refused = httpx.post(
                    url,
                    json={
                        "model": model,
                        "stream": stream,
                        "messages": [{"role": "user", "content": "hello"}],
                    },
                    timeout=30,
                )
                assert refused.status_code == 403, refused.text
                assert "offline" in refused.json()["error"]["message"]
        local = httpx.post(
            url,
            json={"model": LOCAL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
            timeout=60,
        )
        assert local.status_code == 200
        for model in ("loopback/vllm", "loopback/short"):
            loopback = httpx.post(
                url, json={"model": model, "messages": [{"role": "user", "content": "x"}]}
            )
            # Admitted (any loopback spelling is local), and nothing listens there.
            assert loopback.status_code == 502, (model, loopback.text)
    finally:
        stop.set()
        watcher.join()
    assert seen == []


def _deployment(base_url: str) -> ModelConfig:
    return ModelConfig(alias="m", provider="openai_compatible", target="x", base_url=base_url)


def _offline_verdict(base_url: str) -> bool:
    policy = EgressPolicy(PolicyConfig(offline=True), {})
    verdict = policy.check(
        data_class="internal", team=None, deployment=_deployment(base_url), offline=True
    )
    return verdict.allowed


@pytest.mark.parametrize("base_url", LOOPBACK_URLS)
def test_every_loopback_spelling_is_local(base_url: str) -> None:
    """`127.1` reaches 127.0.0.1 when connected to, so offline mode must admit it like
    `127.0.0.1`; the same for every other way of writing a loopback address."""
    assert _deployment(base_url).is_local
    assert _offline_verdict(base_url)


@pytest.mark.parametrize("base_url", REMOTE_URLS)
def test_names_and_other_addresses_stay_remote(base_url: str) -> None:
    assert not _deployment(base_url).is_local
    assert not _offline_verdict(base_url)


@pytest.mark.parametrize("host", ["[::1]", "::1", "127.1", "localhost", "127.0.0.9"])
def test_bind_addresses_on_loopback_in_any_spelling(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["127.0.0.1 evil", "[::1", "0x", "", "127.0.0.1."])
def test_malformed_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)
