"""Anthropic's Messages API behind the OpenAI wire format.

Unlike the OpenAI-compatible provider this one cannot pass OpenAI-format bodies through: requests
and answers are rebuilt by `anthropic_translate`. The upstream is always asked to stream when the
client streams, because its stream is where the final token counts arrive for the ledger.

A client of the gateway's own Messages API is passed through instead (`messages`,
`stream_messages`): its body is sent as it came, and the answer is still translated — for
billing, the ledger and the stream's tally — but carries the upstream's message, or each of its
stream events, untouched under `NATIVE_MESSAGE` / `NATIVE_EVENT`, for that client to receive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from entrepot.config import ModelConfig
from entrepot.exceptions import InvalidRequestError, UpstreamError
from entrepot.providers.anthropic_translate import (
    StreamTranslator,
    request_to_anthropic,
    response_to_openai,
)
from entrepot.providers.http import HttpUpstream, clean_message
from entrepot.types import JSON

ANTHROPIC_VERSION = "2023-06-01"
MESSAGES_PATH = "/v1/messages"
NATIVE_MESSAGE = "anthropic_message"
NATIVE_EVENT = "anthropic_event"


class AnthropicProvider:
    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        headers = {"anthropic-version": ANTHROPIC_VERSION, "content-type": "application/json"}
        key = config.api_key()
        if key:
            headers["x-api-key"] = key
        self._http = HttpUpstream(config, headers)
        self._started = False

    async def start(self) -> None:
        await self._http.start()
        self._started = True

    async def close(self) -> None:
        self._started = False
        await self._http.close()

    async def chat(self, body: JSON) -> JSON:
        request = request_to_anthropic(body)
        message = await self._http.post_json(MESSAGES_PATH, request)
        return response_to_openai(message, self._model(body))

    async def stream_chat(self, body: JSON) -> AsyncIterator[JSON]:
        translator = StreamTranslator(self._model(body))
        async for event in self._events({**request_to_anthropic(body), "stream": True}):
            for chunk in translator.feed(event):
                yield chunk
        yield self._usage_chunk(translator)

    async def messages(self, body: JSON, native: JSON) -> JSON:
        """A Messages API client's request, sent as it came (see `_as_sent`)."""
        message = await self._http.post_json(MESSAGES_PATH, _as_sent(body, native))
        answer = response_to_openai(message, self._model(body))
        if not isinstance(message.get("usage"), dict):
            # Anthropic's clients require it; the ledger bills the gateway's own count.
            message["usage"] = {"input_tokens": 0, "output_tokens": 0}
        answer[NATIVE_MESSAGE] = message
        return answer

    async def stream_messages(self, body: JSON, native: JSON) -> AsyncIterator[JSON]:
        """Every upstream event reaches the client, so each is attached to a chunk: to the first
        it translates into, or to an empty one (a ping, a signature, a block's end)."""
        translator = StreamTranslator(self._model(body))
        async for event in self._events({**_as_sent(body, native), "stream": True}):
            chunks = translator.feed(event) or [translator.empty_chunk()]
            chunks[0][NATIVE_EVENT] = event
            for chunk in chunks:
                yield chunk
        yield self._usage_chunk(translator)

    async def _events(self, request: JSON) -> AsyncIterator[JSON]:
        """The upstream's stream events, parsed; an `error` event fails the stream, and
        `message_stop` ends it: whatever an upstream sends after is neither relayed nor billed."""
        async for event in self._http.post_sse(MESSAGES_PATH, request):
            data = self._event_data(event.data)
            if data.get("type") == "error":
                raise UpstreamError(
                    f"upstream {self.config.deployment} failed mid-stream: {_error_text(data)}"
                )
            yield data
            if data.get("type") == "message_stop":
                break

    def _usage_chunk(self, translator: StreamTranslator) -> JSON:
        if not translator.finished:
            raise UpstreamError(f"upstream {self.config.deployment} ended the stream early")
        return translator.usage_chunk()

    async def complete(self, body: JSON) -> JSON:
        chat = await self.chat(_completion_as_chat(body))
        choice = chat["choices"][0]
        text = {
            "text": choice["message"]["content"] or "",
            "index": 0,
            "logprobs": None,
            "finish_reason": choice["finish_reason"],
        }
        return {**_as_text_completion(chat), "choices": [text]}

    async def stream_complete(self, body: JSON) -> AsyncIterator[JSON]:
        async for chunk in self.stream_chat(_completion_as_chat(body)):
            if not chunk["choices"]:
                yield _as_text_completion(chunk)
                continue
            choice = chunk["choices"][0]
            text = choice["delta"].get("content") or ""
            if text or choice["finish_reason"] is not None:
                piece = {
                    "text": text,
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": choice["finish_reason"],
                }
                yield {**_as_text_completion(chunk), "choices": [piece]}

    async def embed(self, body: JSON) -> JSON:
        raise InvalidRequestError(
            f"model {self.config.alias} cannot embed: anthropic has no embeddings API",
            param="model",
        )

    async def health(self) -> bool:
        """Anthropic has no free endpoint to probe, so health means "ready to send", not "up"."""
        return self._started

    def _model(self, body: JSON) -> str:
        return str(body.get("model") or self.config.target)

    def _event_data(self, raw: str) -> JSON:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise UpstreamError(f"upstream {self.config.deployment} sent a malformed stream event")
        return data


def _as_sent(body: JSON, native: JSON) -> JSON:
    """The client's Messages body under the deployment's model name, with the output cap the
    budget reserved for (the internal body's, which the pipeline wrote out) and no stream
    flag: the caller sets the one it reads."""
    request = {key: value for key, value in native.items() if key != "stream"}
    request["model"] = body["model"]
    request["max_tokens"] = body["max_tokens"]
    return request


def _completion_as_chat(body: JSON) -> JSON:
    """A legacy completions body as a one-message chat, the only way Anthropic takes a prompt."""
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise InvalidRequestError(
                "anthropic models take one prompt string per request", param="prompt"
            )
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidRequestError("prompt must be a string", param="prompt")
    chat = {key: value for key, value in body.items() if key != "prompt"}
    chat["messages"] = [{"role": "user", "content": prompt}]
    return chat


def _as_text_completion(chat: JSON) -> JSON:
    completion = {**chat, "object": "text_completion"}
    completion["id"] = "cmpl-" + str(chat["id"]).removeprefix("chatcmpl-")
    return completion


def _error_text(event: JSON) -> str:
    error = event.get("error")
    if isinstance(error, dict):
        return f"{error.get('type', 'error')}: {clean_message(str(error.get('message', '')))}"
    return "unknown error"
