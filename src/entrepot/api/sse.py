"""Server-sent events with a guaranteed ending.

Starlette's StreamingResponse may leave its generator suspended when the client goes away; here
the generator is always closed, and a client disconnect cancels it at once — so a local model stops
decoding for nobody and the stream's usage record is written exactly once. The caller takes the
first event before building the response: a generator that has started always runs its cleanup
when closed, even if the client vanished before the response began.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from starlette.types import Receive, Scope, Send

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class SSEResponse:
    def __init__(
        self, first: bytes, events: AsyncGenerator[bytes, None], headers: dict[str, str]
    ) -> None:
        self.first = first
        self.events = events
        self.headers = SSE_HEADERS + [(k.encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def pump() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": self.headers})
            await send({"type": "http.response.body", "body": self.first, "more_body": True})
            async for data in self.events:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                continue

        tasks = {asyncio.create_task(pump()), asyncio.create_task(watch_disconnect())}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.events.aclose()
