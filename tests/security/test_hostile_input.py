"""Hostile input: each case is refused with a 4xx in OpenAI's error format (or, where the input is
merely unusual, served), the gateway stays up after every one, and its memory stays bounded.

Memory is the gateway process's resident set size, read before the first case and after the last;
the bound is generous (it catches buffering a 50 MB body or a leak per request, not noise).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import orjson
import psutil
import pytest

from tests.conftest import Server, usage_record
from tests.schemas import validate
from tests.security.conftest import ECHO

MB = 1024 * 1024
RSS_GROWTH_BOUND = 200 * MB
MESSAGE = '{"role": "user", "content": "hi"}'


def chat(model: str = f'"{ECHO}"', extra: str = "") -> str:
    return f'{{"model": {model}, "messages": [{MESSAGE}]{extra}}}'


def rss(server: Server) -> int:
    return int(psutil.Process(server.process.pid).memory_info().rss)


@pytest.fixture(scope="module")
def hostile(secure_gateway: Server) -> Iterator[Server]:
    """The gateway under attack; after the module, its memory has grown by less than the bound."""
    httpx.get(secure_gateway.url + "/health")
    before = rss(secure_gateway)
    yield secure_gateway
    after = rss(secure_gateway)
    print(f"\ngateway RSS before {before / MB:.1f} MB, after {after / MB:.1f} MB")
    assert after - before < RSS_GROWTH_BOUND


def post(
    gateway: Server,
    key: str,
    content: bytes | str | Iterator[bytes],
    path: str = "/v1/chat/completions",
) -> httpx.Response:
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    return httpx.post(gateway.url + path, content=content, headers=headers, timeout=60)


def assert_refused(response: httpx.Response, status: int, gateway: Server) -> None:
    assert response.status_code == status, response.text[:500]
    validate(response.json(), "ErrorResponse")
    assert httpx.get(gateway.url + "/health").status_code == 200


DEEP = 100_000
HOSTILE_BODIES = {
    "deep-arrays": "[" * DEEP,
    "deep-arrays-closed": "[" * DEEP + "]" * DEEP,
    "deep-objects": '{"a":' * DEEP,
    "deep-in-a-field": chat(extra=', "tools": ' + "[" * DEEP + "]" * DEEP),
    "too-deep-to-forward": chat(extra=', "metadata": ' + "[" * 300 + "]" * 300),
    "float-overflow-max-tokens": chat(extra=', "max_tokens": 1e400'),
    "float-overflow-temperature": chat(extra=', "temperature": -1e400'),
    "huge-int-max-tokens": chat(extra=', "max_tokens": ' + "9" * 5000),
    "huge-int-temperature": chat(extra=', "temperature": ' + "1" + "0" * 5000),
    "u64-overflow-seed": chat(extra=', "seed": 18446744073709551616'),
    "nan": chat(extra=', "temperature": NaN'),
    "infinity": chat(extra=', "top_p": Infinity'),
    "lone-surrogate": chat(extra=', "user": "\\ud800"'),
    "duplicate-and-empty": '{"model": "", "model": "", "messages": []}',
    "bare-string": '"just a string"',
    "empty": "",
    "bom": "\ufeff" + chat(),
}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
def test_malformed_json_is_a_400(hostile: Server, secure_key: str, name: str, path: str) -> None:
    response = post(hostile, secure_key, HOSTILE_BODIES[name], path)
    assert_refused(response, 400, hostile)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "fake/echo", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
        b'{"model": "fake/\xc0\xaf", "messages": []}',
        b"\xed\xa0\x80",
    ],
    ids=["invalid-byte", "overlong-slash", "encoded-surrogate"],
)
def test_invalid_utf8_is_a_400(hostile: Server, secure_key: str, raw: bytes) -> None:
    assert_refused(post(hostile, secure_key, raw), 400, hostile)


def test_fifty_megabytes_declared_is_refused_before_reading(
    hostile: Server, secure_key: str
) -> None:
    before = rss(hostile)
    body = chat(extra=', "user": "' + "x" * (50 * MB) + '"')
    assert_refused(post(hostile, secure_key, body), 413, hostile)
    assert rss(hostile) - before < 20 * MB, "the body was buffered"


def test_fifty_megabytes_chunked_is_cut_off_at_the_limit(hostile: Server, secure_key: str) -> None:
    """Without a Content-Length the gateway reads until the limit (8 MiB by default), no further."""
    before = rss(hostile)

    def pieces() -> Iterator[bytes]:
        yield b'{"model": "fake/echo", "messages": [{"role": "user", "content": "'
        for _ in range(50):
            yield b"y" * MB
        yield b'"}]}'

    assert_refused(post(hostile, secure_key, pieces()), 413, hostile)
    assert rss(hostile) - before < 60 * MB, "more than the limit was buffered"


def test_five_thousand_messages_are_served(hostile: Server, secure_key: str) -> None:
    messages = ", ".join([MESSAGE] * 5000)
    response = post(hostile, secure_key, f'{{"model": "{ECHO}", "messages": [{messages}]}}')
    assert response.status_code == 200, response.text[:500]
    validate(response.json(), "CreateChatCompletionResponse")


def test_two_hundred_thousand_content_parts_are_served(hostile: Server, secure_key: str) -> None:
    parts = ", ".join(['{"type": "text", "text": ""}'] * 200_000)
    body = f'{{"model": "{ECHO}", "messages": [{{"role": "user", "content": [{parts}]}}]}}'
    response = post(hostile, secure_key, body)
    assert response.status_code == 200, response.text[:500]


MODEL_NAMES = {
    "crlf": "fake/echo\r\nx-injected: yes",
    "lf": "fake/echo\nSet-Cookie: a=b",
    "nul": "fake/echo\u0000",
    "traversal": "../../admin/keys",
    "encoded-traversal": "..%2F..%2Fadmin%2Fkeys",
    "absolute-path": "/etc/passwd",
    "url": "http://127.0.0.1:1/v1",
    "long": "m" * 1_000_000,
    "format-string": "%s%s%s%n{0}{model}",
    "unicode-lookalike": "fake／echo",
    "bidi": "fake/\u202eohce",
}


@pytest.mark.parametrize("name", list(MODEL_NAMES))
def test_hostile_model_names_are_a_404(hostile: Server, secure_key: str, name: str) -> None:
    model = MODEL_NAMES[name]
    response = post(hostile, secure_key, chat(model=orjson.dumps(model).decode()))
    assert_refused(response, 404, hostile)
    assert all("\n" not in v and "\r" not in v for v in response.headers.values())
    assert "x-injected" not in response.headers and "set-cookie" not in response.headers
    assert len(response.content) < 2000, "the name is echoed back in full"


def raw_request(server: Server, request: bytes) -> int:
    """Send bytes no HTTP client would, and return the status the gateway answers with."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
    return int(answer.split(b" ", 2)[1])


MODEL_PATHS = {
    "crlf": "/v1/models/fake%2Fecho%0D%0AX-Injected:%20yes",
    "nul": "/v1/models/fake%2Fecho%00",
    "dot-segments": "/v1/models/../../admin/keys",
    "encoded-dot-segments": "/v1/models/..%2F..%2Fadmin%2Fkeys",
    "long": "/v1/models/" + "m" * 60_000,
}


@pytest.mark.parametrize("name", list(MODEL_PATHS))
def test_hostile_model_paths_are_a_4xx(hostile: Server, secure_key: str, name: str) -> None:
    request = (
        f"GET {MODEL_PATHS[name]} HTTP/1.1\r\nhost: gateway\r\n"
        f"authorization: Bearer {secure_key}\r\nconnection: close\r\n\r\n"
    )
    assert raw_request(hostile, request.encode()) in (400, 404, 414)
    assert httpx.get(hostile.url + "/health").status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        b"x-entrepot-data-class: public\r\n\r\nGET /admin/keys HTTP/1.1",
        b"x-entrepot-data-class: public\x00",
        b"x-entrepot-cache: " + b"o" * MB,
        b"x-api-key: " + b"k" * MB,
    ],
    ids=["smuggled-request", "nul", "huge-cache-header", "huge-key"],
)
def test_hostile_headers_are_a_4xx(hostile: Server, secure_key: str, header: bytes) -> None:
    body = chat().encode()
    key = "" if header.startswith(b"x-api-key") else f"authorization: Bearer {secure_key}\r\n"
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\nconnection: close\r\n"
        b"content-type: application/json\r\n"
        + key.encode()
        + header
        + f"\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    assert 400 <= raw_request(hostile, request) < 500
    assert httpx.get(hostile.url + "/health").status_code == 200


def test_a_nul_in_the_model_name_stays_out_of_the_ledger(hostile: Server, secure_key: str) -> None:
    """PostgreSQL refuses text holding a NUL, which would fail the ledger's whole batch."""
    response = post(hostile, secure_key, chat(model='"fake/echo\\u0000"'))
    assert_refused(response, 404, hostile)
    record = usage_record(hostile, response.headers["x-request-id"])
    assert record["model_alias"] == "fake/echo\N{REPLACEMENT CHARACTER}"
