"""Any upstream that speaks OpenAI's wire format: OpenAI, DeepSeek, DashScope's compatible mode,
OpenRouter, vLLM, Ollama, a llama.cpp server, or another Entrepôt.

The body is forwarded as the client sent it (only `model` is swapped for the target, and the
output cap is sent in the one field the upstream honours), so fields this gateway has never heard
of — `reasoning_effort`, vendor extensions — still reach the upstream, and DeepSeek/Qwen
`reasoning_content` comes back untouched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from entrepot.config import ModelConfig
from entrepot.exceptions import UpstreamError
from entrepot.providers.http import HttpUpstream
from entrepot.types import JSON


class OpenAICompatibleProvider:
    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        key = config.api_key()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = HttpUpstream(config, headers)

    async def start(self) -> None:
        await self._http.start()

    async def close(self) -> None:
        await self._http.close()

    async def chat(self, body: JSON) -> JSON:
        capped = _capped(body, self.config.output_cap_field)
        return self._answer(await self._http.post_json("/chat/completions", capped), "choices")

    def stream_chat(self, body: JSON) -> AsyncIterator[JSON]:
        return self._stream("/chat/completions", _capped(body, self.config.output_cap_field))

    # The legacy completions API has only ever known `max_tokens`.
    async def complete(self, body: JSON) -> JSON:
        capped = _capped(body, "max_tokens")
        return self._answer(await self._http.post_json("/completions", capped), "choices")

    def stream_complete(self, body: JSON) -> AsyncIterator[JSON]:
        return self._stream("/completions", _capped(body, "max_tokens"))

    async def embed(self, body: JSON) -> JSON:
        return self._answer(await self._http.post_json("/embeddings", body), "data")

    async def health(self) -> bool:
        return await self._http.get_ok("/models")

    def _answer(self, result: JSON, field: str) -> JSON:
        """Some upstreams report an error with status 200; relayed, it would be billed and cached
        as an answer, so a body without its list of answer objects fails (and may fall back)."""
        if _objects(result.get(field)):
            return result
        reason = _error_text(result["error"]) if "error" in result else f"no list of {field}"
        raise UpstreamError(f"upstream {self.config.deployment} sent no answer: {reason}")

    async def _stream(self, path: str, body: JSON) -> AsyncIterator[JSON]:
        """Relay the upstream's chunks, and fail a stream that stops before its answer is done.

        A stream that ends without `[DONE]` is complete only if it gave a finish reason: one
        closed cleanly halfway through an answer would otherwise reach the client as a success.
        """
        finished = False
        async for event in self._http.post_sse(path, body):
            if event.data == "[DONE]":
                return
            try:
                chunk = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                raise UpstreamError(
                    f"upstream {self.config.deployment} sent a malformed stream event"
                ) from None
            if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
                raise UpstreamError(
                    f"upstream {self.config.deployment} failed mid-stream: "
                    f"{_error_text(chunk['error'])}"
                )
            if not isinstance(chunk, dict) or not _objects(chunk.get("choices", [])):
                raise UpstreamError(f"upstream {self.config.deployment} sent a malformed chunk")
            finished = finished or _gives_finish_reason(chunk)
            yield chunk
        if not finished:
            raise UpstreamError(
                f"upstream {self.config.deployment} ended its stream before the answer was complete"
            )


def _capped(body: JSON, field: str) -> JSON:
    """The output cap in `field` only. Many OpenAI-compatible servers ignore
    `max_completion_tokens` and generate to their own limit, past what the budget reserved;
    OpenAI's reasoning models refuse `max_tokens`. Sending one field avoids both."""
    other = "max_tokens" if field == "max_completion_tokens" else "max_completion_tokens"
    if other not in body:
        return body
    capped = {key: value for key, value in body.items() if key != other}
    if capped.get(field) is None:
        capped[field] = body[other]
    return capped


def _objects(items: object) -> bool:
    return isinstance(items, list) and all(isinstance(item, dict) for item in items)


def _gives_finish_reason(chunk: JSON) -> bool:
    return any(choice.get("finish_reason") for choice in chunk.get("choices", ()))


def _error_text(error: object) -> str:
    if isinstance(error, dict):
        return str(error.get("message", "unknown error"))[:500]
    return str(error)[:500]
