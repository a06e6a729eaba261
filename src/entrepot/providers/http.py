"""The HTTP plumbing remote providers share: a pool of keep-alive connections per upstream, SSE
parsing, and the mapping of upstream answers onto the gateway's error hierarchy.
"""

from __future__ import annotations

import re
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

NO_MESSAGE = "no error message"
MESSAGE_LIMIT = 200
_TRACEBACK = "Traceback (most recent call last)"
_FILE_LINE = re.compile(r'File "[^"]*", line \d+(?:, in [^\s,]+)?')
# Absolute paths: Unix ones of two segments or more (or one with a file extension), Windows
# drive and UNC paths. A path inside a URL or a model name ("org/model") is no file path.
_PATH = re.compile(
    r"(?<![\w.:/\\-])(?:/[\w.@+~-]+){2,}/?|(?<![\w.:/\\-])/[\w@+~-]+\.[A-Za-z]\w*"
    r"|\b[A-Za-z]:\\[^\s\"'<>|:*?]*|\\\\[^\s\"'<>|:*?]+"
)


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
        # A success by its status that cannot be read was generated (and is billed by the
        # upstream): `delivered`, billed as a generation of unknown length.
        name = f"upstream {self.config.deployment}"
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"{name} sent invalid JSON", delivered=True) from None
        if not isinstance(parsed, dict):
            raise UpstreamError(f"{name} sent a non-object answer", delivered=True)
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
            source = _key_source(self.config)
            return UpstreamError(
                f"upstream {name} rejected the gateway's credentials ({status}): {source}"
            )
        if status == 408:
            return UpstreamTimeoutError(f"upstream {name} timed out ({status})")
        if status >= 500:
            return UpstreamError(f"upstream {name} failed with status {status}: {detail}")
        return UpstreamRejectedError(
            f"upstream {name}: {detail}", status_code=status, retry_after=_seconds(retry_after)
        )


def _key_source(config: ModelConfig) -> str:
    """Where the key it sent came from, so the operator knows which variable to fix (its name
    only: the key itself is never in a message)."""
    if config.api_key_env is None:
        return "no key was sent (the model has no api_key_env)"
    if not config.api_key():
        return f"no key was sent: ${config.api_key_env} is not set"
    return f"check the key in ${config.api_key_env}"


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
        return NO_MESSAGE
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return clean_message(error["message"])
        if isinstance(error, str):
            return clean_message(error)
        if isinstance(parsed.get("message"), str):
            return clean_message(parsed["message"])
    return NO_MESSAGE


def clean_message(text: str) -> str:
    """An upstream's error message fit to pass on: its first line (or, for a traceback, the
    exception's line), without file paths, at most `MESSAGE_LIMIT` characters. Self-hosted
    servers put their stack traces and install paths in error messages, which tell clients
    nothing they can act on and tell anyone how the server is laid out."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return NO_MESSAGE
    line = lines[-1] if lines[0].startswith(_TRACEBACK) else lines[0]
    line = line.split(_TRACEBACK, 1)[0].strip() or line
    line = " ".join(_PATH.sub("…", _FILE_LINE.sub("…", line)).split())
    if len(line) > MESSAGE_LIMIT:
        line = line[: MESSAGE_LIMIT - 1].rstrip() + "…"
    return line or NO_MESSAGE


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
