"""In-process local models through llama-cpp-python, without blocking the event loop.

Each deployment loads `local.parallel` model instances; each request borrows one and decodes in a
worker thread, handing pieces back to the loop as they are produced. Requests beyond that wait in
a bounded queue: a full queue, or a wait longer than `local.queue_timeout`, is a clear 503 rather
than unbounded memory growth or a hung client.

Chat answers pass through a reader per choice (local_tool_calls.py) that turns the generated text
into the same deltas for a stream and for a plain answer; with tools, it reads the calls out of
the text (local_tools.py says which calls a request allows).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from entrepot.config import ModelConfig
from entrepot.exceptions import (
    InvalidRequestError,
    OverloadedError,
    UpstreamError,
    WeightsMismatchError,
)
from entrepot.providers.local_generation import (
    LocalModel,
    Piece,
    Sampling,
    resolve_adapter,
    resolve_weights,
)
from entrepot.providers.local_messages import template_input
from entrepot.providers.local_tool_calls import CallReader, TextReader, message_of
from entrepot.providers.local_tools import ToolPlan, finish_reason
from entrepot.providers.provenance import local_facts
from entrepot.providers.weights import Provenance, verify
from entrepot.types import JSON, TokenUsage

_END = object()
PromptOf = Callable[[LocalModel], list[int]]
logger = logging.getLogger(__name__)


class LlamaCppProvider:
    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self._options = config.local
        self._idle: asyncio.Queue[LocalModel] = asyncio.Queue()
        self._loaded: list[LocalModel] = []
        self._waiting = 0
        self._renders_tools = False
        # The digests of the files served (see `providers/weights.py`), or why they are not.
        self.provenance: Provenance | None = None
        self._refused: str | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=self._options.parallel, thread_name_prefix=f"llama-{config.alias}"
        )

    async def start(self) -> None:
        """Check the files against their declared digests, then load them. Files that do not
        match are not loaded: this model's requests are refused, the gateway's others served."""
        path = resolve_weights(self.config.target)
        adapter = resolve_adapter(self.config.adapter)
        loop = asyncio.get_running_loop()
        try:
            self.provenance = await loop.run_in_executor(
                self._executor, verify, self.config, path, adapter
            )
        except WeightsMismatchError as exc:
            logger.error("%s", exc.message)
            self._refused = exc.message
            return
        facts = await loop.run_in_executor(self._executor, local_facts, self.config)
        if facts is not None and facts.licence_contradicted(self.config):
            logger.warning(
                "model %s: the declared licence %r contradicts its file's own (%r)",
                self.config.alias,
                self.config.licence,
                facts.file_licence,
            )
        for _ in range(self._options.parallel):
            model = await loop.run_in_executor(
                self._executor,
                LocalModel,
                path,
                self._options.n_ctx,
                self._options.n_threads,
                self._options.embedding,
                adapter,
            )
            self._loaded.append(model)
            self._idle.put_nowait(model)
        self._renders_tools = self._loaded[0].renders_tools

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` read literally by this model's tokenizer: for usage estimates.
        Safe while the instances decode, since tokenizing only reads the vocabulary."""
        if self._refused is not None:
            raise WeightsMismatchError(self._refused)
        if not self._loaded:
            raise UpstreamError(f"local model {self.config.alias} is not loaded")
        return self._loaded[0].count_tokens(text)

    async def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def health(self) -> bool:
        if self._refused is not None:
            return False
        return self._idle.qsize() > 0 or self._waiting < self._options.max_queue

    @asynccontextmanager
    async def _borrow(self) -> AsyncIterator[LocalModel]:
        """Take an idle instance at once (claimed synchronously, so concurrent arrivals cannot
        all see the same one free), else wait in line behind earlier arrivals."""
        if self._refused is not None:
            raise WeightsMismatchError(self._refused)
        if not self._idle.empty() and self._waiting == 0:
            model = self._idle.get_nowait()
        else:
            if self._waiting >= self._options.max_queue:
                raise OverloadedError(
                    f"local model {self.config.alias} is busy: {self._waiting} requests already"
                    " waiting; retry shortly"
                )
            self._waiting += 1
            try:
                model = await asyncio.wait_for(self._idle.get(), self._options.queue_timeout)
            except TimeoutError:
                raise OverloadedError(
                    f"local model {self.config.alias} stayed busy for"
                    f" {self._options.queue_timeout:g}s; retry shortly"
                ) from None
            finally:
                self._waiting -= 1
        try:
            yield model
        finally:
            self._idle.put_nowait(model)

    def _sampling(self, body: JSON) -> Sampling:
        return Sampling.from_body(body, self._options.seed)

    async def _pieces(self, prompt_of: PromptOf, sampling: Sampling) -> AsyncIterator[Piece]:
        """Borrow a model, decode in its thread, and relay pieces; stop decoding if abandoned."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()
        async with self._borrow() as model:

            def decode() -> None:
                try:
                    for piece in model.generate(prompt_of(model), sampling, cancelled):
                        loop.call_soon_threadsafe(queue.put_nowait, piece)
                except BaseException as exc:
                    loop.call_soon_threadsafe(queue.put_nowait, exc)
                finally:
                    loop.call_soon_threadsafe(queue.put_nowait, _END)

            done = loop.run_in_executor(self._executor, decode)
            try:
                while (item := await queue.get()) is not _END:
                    if isinstance(item, InvalidRequestError):
                        raise item
                    if isinstance(item, BaseException):
                        raise UpstreamError(
                            f"local model {self.config.alias} failed: {type(item).__name__}"
                        ) from item
                    yield item
            finally:
                cancelled.set()
                await asyncio.shield(done)

    # --- chat -----------------------------------------------------------------------------

    def _chat_request(self, body: JSON) -> tuple[PromptOf, Sampling, ToolPlan]:
        """Everything a request can get wrong is found here, before it waits for a model."""
        plan = ToolPlan.from_body(body)
        messages, tools = template_input(body["messages"], plan.tools, self._renders_tools)
        sampling = self._sampling(body)
        grammar = plan.grammar()
        if grammar is not None:
            sampling = dataclasses.replace(sampling, grammar=grammar)
        return (lambda model: model.chat_prompt(messages, tools)), sampling, plan

    async def chat(self, body: JSON) -> JSON:
        prompt_of, sampling, plan = self._chat_request(body)
        created, choices, usage = int(time.time()), [], TokenUsage()
        for index in range(int(body.get("n") or 1)):
            reader = plan.reader()
            deltas, finish = await self._collect(
                prompt_of, sampling.for_choice(index), usage, reader
            )
            choices.append(
                {
                    "index": index,
                    "message": message_of(deltas),
                    "finish_reason": finish_reason(finish, reader),
                    "logprobs": None,
                }
            )
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": created,
            "model": self.config.target,
            "choices": choices,
            "usage": usage.to_openai(),
        }

    async def stream_chat(self, body: JSON) -> AsyncIterator[JSON]:
        prompt_of, sampling, plan = self._chat_request(body)
        base = _chunk_base("chatcmpl", "chat.completion.chunk", self.config.target)
        opening = {"role": "assistant", "content": None if plan.mode == "forced" else ""}
        usage = TokenUsage()
        for index in range(int(body.get("n") or 1)):
            reader, started = plan.reader(), False
            async for piece in self._pieces(prompt_of, sampling.for_choice(index)):
                if not started:
                    # Only now is the model borrowed: a full queue was already a clean 503.
                    started = True
                    yield {**base, "choices": [_delta(index, opening)]}
                if piece.finish_reason is None:
                    for delta in reader.feed(piece.text):
                        yield {**base, "choices": [_delta(index, delta)]}
                else:
                    for delta in reader.close():
                        yield {**base, "choices": [_delta(index, delta)]}
                    _add(usage, piece)
                    finish = finish_reason(piece.finish_reason, reader)
                    yield {**base, "choices": [_delta(index, {}, finish)]}
        yield {**base, "choices": [], "usage": usage.to_openai()}

    # --- legacy completions ---------------------------------------------------------------

    def _text_prompt(self, body: JSON) -> PromptOf:
        prompt = body.get("prompt", "")
        if isinstance(prompt, list):
            if len(prompt) != 1 or not isinstance(prompt[0], str):
                raise InvalidRequestError(
                    "local models take one prompt string per request", param="prompt"
                )
            prompt = prompt[0]
        return lambda model: model.text_prompt(prompt)

    async def complete(self, body: JSON) -> JSON:
        prompt_of, sampling = self._text_prompt(body), self._sampling(body)
        choices, usage = [], TokenUsage()
        for index in range(int(body.get("n") or 1)):
            deltas, finish = await self._collect(
                prompt_of, sampling.for_choice(index), usage, TextReader()
            )
            text = "".join(delta["content"] for delta in deltas)
            choices.append(
                {"text": text, "index": index, "logprobs": None, "finish_reason": finish}
            )
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.config.target,
            "choices": choices,
            "usage": usage.to_openai(),
        }

    async def stream_complete(self, body: JSON) -> AsyncIterator[JSON]:
        prompt_of, sampling = self._text_prompt(body), self._sampling(body)
        base = _chunk_base("cmpl", "text_completion", self.config.target)
        usage = TokenUsage()
        for index in range(int(body.get("n") or 1)):
            async for piece in self._pieces(prompt_of, sampling.for_choice(index)):
                if piece.finish_reason is not None:
                    _add(usage, piece)
                choice = {
                    "text": piece.text,
                    "index": index,
                    "logprobs": None,
                    "finish_reason": piece.finish_reason,
                }
                yield {**base, "choices": [choice]}
        yield {**base, "choices": [], "usage": usage.to_openai()}

    # --- embeddings -----------------------------------------------------------------------

    async def embed(self, body: JSON) -> JSON:
        if not self._options.embedding:
            raise InvalidRequestError(
                f"model {self.config.alias} is not configured for embeddings"
                " (set local.embedding: true)",
                param="model",
            )
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else list(raw or [])
        if not all(isinstance(item, str) for item in inputs):
            raise InvalidRequestError(
                "local embeddings take strings, not token arrays", param="input"
            )
        loop = asyncio.get_running_loop()
        async with self._borrow() as model:
            vectors, tokens = await loop.run_in_executor(self._executor, model.embed, inputs)
        return {
            "object": "list",
            "model": self.config.target,
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def _collect(
        self, prompt_of: PromptOf, sampling: Sampling, usage: TokenUsage, reader: CallReader
    ) -> tuple[list[JSON], str]:
        """One choice's deltas, as a stream would send them, and its finish reason."""
        deltas: list[JSON] = []
        finish = "stop"
        async for piece in self._pieces(prompt_of, sampling):
            if piece.finish_reason is None:
                deltas += reader.feed(piece.text)
            else:
                deltas += reader.close()
                finish = piece.finish_reason
                _add(usage, piece)
        return deltas, finish


def _add(usage: TokenUsage, piece: Piece) -> None:
    """The n choices of one request read the same prompt, which OpenAI bills once; their
    completions add up."""
    usage.prompt_tokens = piece.prompt_tokens
    usage.completion_tokens += piece.completion_tokens


def _chunk_base(prefix: str, kind: str, model: str) -> JSON:
    return {
        "id": f"{prefix}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
    }


def _delta(index: int, delta: JSON, finish_reason: str | None = None) -> JSON:
    return {"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
