"""The Python floor: a bare ASGI app that forwards each request with one pooled aiohttp session.

No framework, no checks, no ledger: the least any Python gateway can do on this path. Entrepôt is
measured against it in the same run. Run as `uvicorn benchmarks.perf.floor:app` with
`FLOOR_UPSTREAM` set to the upstream's base URL.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

UPSTREAM = os.environ.get("FLOOR_UPSTREAM", "http://127.0.0.1:8080")
_session: aiohttp.ClientSession | None = None
JSON_HEADERS = {"Content-Type": "application/json"}


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _lifespan(receive: Receive, send: Send) -> None:
    global _session
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _session is not None:
                await _session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    assert _session is not None
    body = await _read_body(receive)
    async with _session.request(
        scope["method"], UPSTREAM + scope["path"], data=body or None, headers=JSON_HEADERS
    ) as upstream:
        content_type = upstream.content_type.encode()
        if content_type != b"text/event-stream":
            answer = await upstream.read()
            await send(
                {
                    "type": "http.response.start",
                    "status": upstream.status,
                    "headers": [
                        (b"content-type", content_type),
                        (b"content-length", str(len(answer)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": answer})
            return
        await send(
            {
                "type": "http.response.start",
                "status": upstream.status,
                "headers": [(b"content-type", content_type)],
            }
        )
        async for piece in upstream.content.iter_any():
            await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
