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

from tests.conftest import LOCAL, Server, free_port, start_gateway


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
        loopback = httpx.post(
            url, json={"model": "loopback/vllm", "messages": [{"role": "user", "content": "x"}]}
        )
        assert loopback.status_code == 502  # admitted (loopback is local), nothing listening
    finally:
        stop.set()
        watcher.join()
    assert seen == []
