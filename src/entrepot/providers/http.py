"""The HTTP plumbing remote providers share: a pool of keep-alive connections per upstream, SSE
parsing, and the mapping of upstream answers onto the gateway's error hierarchy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from entrepot.config import ModelConfig
from entrepot.exceptions import (
    GatewayError,
    UpstreamError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
)
from entrepot.providers.connection import ConnectionPool, Response


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str


class HttpUpstream:
    """The connections to one upstream base URL, shared by every request to that deployment."""

    def __init__(self, config: ModelConfig, headers: dict[str, str]) -> None:
        self.config = config
        self._pool = ConnectionPool(
            config.deployment,
            config.base_url or "",
            {**headers, **config.headers},
            limit=config.max_concurrency,
            connect_timeout=config.timeouts.connect,
            total_timeout=config.timeouts.total,
        )

    async def start(self) -> None:
        """Connections open on first use."""

    async def close(self) -> None:
        await self._pool.close()

    async def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._pool.request("POST", path, orjson.dumps(body))
        raw = await response.read()
        if response.status >= 400:
            raise self.status_error(response, raw)
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"upstream {self.config.deployment} sent invalid JSON") from None
        if not isinstance(parsed, dict):
            raise UpstreamError(f"upstream {self.config.deployment} sent a non-object answer")
        return parsed

    async def get_ok(self, path: str) -> bool:
        try:
            response = await self._pool.request("GET", path)
            await response.read()
        except GatewayError:
            return False
        return response.status < 500

    async def post_sse(self, path: str, body: dict[str, Any]) -> AsyncIterator[SSEEvent]:
        """Yield server-sent events; the first one arriving means the upstream accepted the call."""
        response = await self._pool.request("POST", path, orjson.dumps(body))
        try:
            if response.status >= 400:
                raise self.status_error(response, await response.read())
            async for event in _events(response):
                yield event
        finally:
            response.release()

    def status_error(self, response: Response, raw: bytes) -> GatewayError:
        """Whose fault an upstream error is: theirs (5xx), ours (401/403) or the client's."""
        status, retry_after = response.status, response.headers.get("retry-after")
        name = self.config.deployment
        detail = _upstream_message(raw)
        if status in (401, 403):
            return UpstreamError(f"upstream {name} rejected the gateway's credentials ({status})")
        if status == 408:
            return UpstreamTimeoutError(f"upstream {name} timed out ({status})")
        if status >= 500:
            return UpstreamError(f"upstream {name} failed with status {status}: {detail}")
        return UpstreamRejectedError(
            f"upstream {name}: {detail}", status_code=status, retry_after=_seconds(retry_after)
        )


def _seconds(retry_after: str | None) -> str | None:
    """A `Retry-After` worth passing on: a number of seconds, the form AI APIs send. A date would
    mean trusting the upstream's clock, and anything else is not for the client's headers."""
    value = (retry_after or "").strip()
    return value if value.isascii() and value.isdigit() and len(value) <= 9 else None


def _upstream_message(raw: bytes) -> str:
    """The upstream's own error message, if it sent one in a known shape; never the raw body."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "no error message"
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:500]
        if isinstance(error, str):
            return error[:500]
        if isinstance(parsed.get("message"), str):
            return str(parsed["message"])[:500]
    return "no error message"


async def _events(response: Response) -> AsyncIterator[SSEEvent]:
    event: str | None = None
    data: list[str] = []
    buffer = b""
    async for piece in response.iter_chunks():
        buffer += piece
        *lines, buffer = buffer.split(b"\n")
        for raw_line in lines:
            line = raw_line.rstrip(b"\r").decode("utf-8", errors="replace")
            if not line:
                if data:
                    yield SSEEvent(event, "\n".join(data))
                event, data = None, []
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif line.startswith("event:"):
                event = line[6:].strip()
    if data:
        yield SSEEvent(event, "\n".join(data))
