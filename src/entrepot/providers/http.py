"""The HTTP plumbing remote providers share: one pooled aiohttp session, SSE parsing, and the
mapping of transport failures onto the gateway's error hierarchy.

aiohttp rather than httpx because the forwarding hot path measured 2.5x cheaper with it here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from entrepot.config import ModelConfig
from entrepot.exceptions import (
    GatewayError,
    UpstreamError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
)


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str


class HttpUpstream:
    """A pooled session to one upstream base URL, shared by every request to that deployment."""

    def __init__(self, config: ModelConfig, headers: dict[str, str]) -> None:
        self.config = config
        self.base_url = (config.base_url or "").rstrip("/")
        self._headers = {**headers, **config.headers}
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeouts = self.config.timeouts
        self._session = aiohttp.ClientSession(
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=timeouts.total, sock_connect=timeouts.connect),
            connector=aiohttp.TCPConnector(limit=self.config.max_concurrency, ttl_dns_cache=300),
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise UpstreamError(f"deployment {self.config.deployment} is not started")
        return self._session

    async def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self.session.post(self.base_url + path, data=orjson.dumps(body)) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise self.status_error(resp.status, raw, resp.headers.get("Retry-After"))
        except GatewayError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self.transport_error(exc) from exc
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"upstream {self.config.deployment} sent invalid JSON") from None
        if not isinstance(parsed, dict):
            raise UpstreamError(f"upstream {self.config.deployment} sent a non-object answer")
        return parsed

    async def get_ok(self, path: str) -> bool:
        try:
            async with self.session.get(self.base_url + path) as resp:
                return resp.status < 500
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def post_sse(self, path: str, body: dict[str, Any]) -> AsyncIterator[SSEEvent]:
        """Yield server-sent events; the first one arriving means the upstream accepted the call."""
        try:
            async with self.session.post(self.base_url + path, data=orjson.dumps(body)) as resp:
                if resp.status >= 400:
                    raw = await resp.read()
                    raise self.status_error(resp.status, raw, resp.headers.get("Retry-After"))
                event: str | None = None
                data: list[str] = []
                buffer = b""
                async for piece in resp.content.iter_any():
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
        except GatewayError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self.transport_error(exc) from exc

    def status_error(self, status: int, raw: bytes, retry_after: str | None = None) -> GatewayError:
        """Whose fault an upstream error is: theirs (5xx), ours (401/403) or the client's."""
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

    def transport_error(self, exc: BaseException) -> GatewayError:
        name = self.config.deployment
        if isinstance(exc, asyncio.TimeoutError):
            return UpstreamTimeoutError(f"upstream {name} did not answer in time")
        if isinstance(exc, aiohttp.ClientConnectorError):
            return UpstreamError(f"upstream {name} is unreachable")
        return UpstreamError(f"upstream {name} failed: {type(exc).__name__}")


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
