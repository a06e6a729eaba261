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
from entrepot.exceptions import UpstreamError, UpstreamIncapableError
from entrepot.providers.http import HttpUpstream, clean_message
from entrepot.providers.upstream_quirks import ToolCallDeltas, merged_usage
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
        answer = self._answer(await self._http.post_json("/chat/completions", capped), "choices")
        wanted = _wanted(body)
        if len(answer["choices"]) >= wanted:
            return answer
        return await self._fill(capped, answer, wanted)

    def stream_chat(self, body: JSON) -> AsyncIterator[JSON]:
        capped = _capped(body, self.config.output_cap_field)
        return self._stream("/chat/completions", capped, _wanted(body))

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
        if "error" in result:
            reason = _error_text(result["error"])
            raise UpstreamError(f"upstream {self.config.deployment} sent no answer: {reason}")
        raise self._broken(f"sent no answer: no list of {field}")

    async def _fill(self, body: JSON, answer: JSON, wanted: int) -> JSON:
        """An upstream that ignores `n` is asked again for the choices still missing, at most
        `n` calls in all; a seeded request moves its seed on, so the choices differ as OpenAI's
        do. The answer bills what every call used. A call that brought no choice at all is a
        failed generation, not an ignored `n`: it is not sent to this deployment again."""
        choices, usages = list(answer["choices"]), [answer.get("usage")]
        try:
            while choices and len(choices) < wanted:  # each call adds a choice or ends the loop
                more = {**body, "n": wanted - len(choices)}
                if isinstance(body.get("seed"), int):
                    more["seed"] = body["seed"] + len(choices)
                extra = await self._http.post_json("/chat/completions", more)
                extra = self._answer(extra, "choices")
                if not extra["choices"]:
                    break
                choices += extra["choices"][: wanted - len(choices)]
                usages.append(extra.get("usage"))
            if len(choices) < wanted:
                # No choice at all is a broken upstream, not merely one that ignores `n`.
                failure = UpstreamIncapableError if choices else UpstreamError
                raise failure(
                    f"upstream {self.config.deployment} answered {len(choices)} of the {wanted}"
                    " choices asked for"
                )
        except UpstreamError as exc:
            # The calls that answered were generated and are billed: by their reports, or (one
            # of them unreported) as a generation of unknown length.
            exc.spent = merged_usage(usages)
            exc.delivered = exc.delivered or exc.spent is None
            raise
        filled = {**answer, "choices": [{**c, "index": i} for i, c in enumerate(choices)]}
        usage = merged_usage(usages)
        if usage is None:
            filled.pop("usage", None)
        else:
            filled["usage"] = usage
        return filled

    def _broken(self, what: str) -> UpstreamError:
        """An answer the upstream began as a success and then broke: it generated (for all the
        gateway can tell), so what was not read is billed as a generation of unknown length."""
        return UpstreamError(f"upstream {self.config.deployment} {what}", delivered=True)

    async def _stream(self, path: str, body: JSON, wanted: int = 1) -> AsyncIterator[JSON]:
        """Relay the upstream's chunks, and fail a stream that stops before its answer is done.

        A stream that ends without `[DONE]` is complete only if it gave a finish reason: one
        closed cleanly halfway through an answer would otherwise reach the client as a success.
        Tool-call deltas are set right (see upstream_quirks.py), and a stream asked for `n` > 1
        choices that brought fewer fails at its end, after its usage report.
        """
        finished = done = False
        seen: set[int] | None = set() if wanted > 1 else None
        tool_calls: ToolCallDeltas | None = None
        async for event in self._http.post_sse(path, body):
            if event.data == "[DONE]":
                done = True
                break
            try:
                chunk = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                raise self._broken("sent a malformed stream event") from None
            if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
                raise UpstreamError(
                    f"upstream {self.config.deployment} failed mid-stream: "
                    f"{_error_text(chunk['error'])}"
                )
            if not isinstance(chunk, dict) or not _objects(choices := chunk.get("choices", [])):
                raise self._broken("sent a malformed chunk")
            for choice in choices:
                delta = choice.get("delta")
                if type(delta) is dict:
                    if "tool_calls" in delta:
                        tool_calls = tool_calls or ToolCallDeltas()
                        tool_calls.fix(choice.get("index", 0), delta["tool_calls"])
                elif delta is not None:  # a delta is an object, or absent (completions)
                    raise self._broken("sent a malformed chunk")
                if choice.get("finish_reason"):
                    finished = True
                if seen is not None:
                    seen.add(choice.get("index", 0))
            yield chunk
        if not (finished or done):
            raise self._broken("ended its stream before the answer was complete")
        if seen is not None and len(seen) < wanted:
            raise UpstreamIncapableError(
                f"upstream {self.config.deployment} streamed {len(seen)} of the {wanted}"
                " choices asked for"
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


def _wanted(body: JSON) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and n > 1 else 1


def _error_text(error: object) -> str:
    """What an upstream said went wrong, cleaned of its paths and tracebacks."""
    if isinstance(error, dict):
        return clean_message(str(error.get("message", "unknown error")))
    return clean_message(str(error))
