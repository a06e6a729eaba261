"""The gateway's own token count, for the answers an upstream did not count: it omitted `usage`,
its stream failed or was abandoned before the usage report, or the usage it sent claims nothing
was used. A record billed from this count is flagged `usage_estimated`.

The gateway ships no tokenizer for remote models, so the count is an estimate, documented here:

- text is a quarter of its UTF-8 bytes, rounded up — about right for English and code under
  today's vocabularies, and closer than characters/4 for other scripts (a CJK character is three
  bytes and usually one token or less);
- a chat prompt adds 4 tokens per message for the template's role markers, as OpenAI's counting
  guide does, and counts tool definitions as their JSON; image and audio parts are not counted;
- a streamed answer is at least one token per chunk that carried text, as servers send each token
  as it is generated;
- the count by bytes is at most the output cap the upstream was sent (an upstream that honours
  it cannot have generated more, and the budget reserved no more); only chunks counted past the
  cap, which prove the upstream ignored it, are billed beyond it;
- generated text includes reasoning (`reasoning_content`, `reasoning`) and tool calls' names and
  arguments, which upstreams bill as output.

Local models (llama.cpp) count with their own tokenizer and always report usage, so they are never
estimated unless their stream is cut off.
"""

from __future__ import annotations

from typing import Any

import orjson

from entrepot.types import JSON, TokenUsage

BYTES_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
ANSWER_FIELDS = ("content", "refusal")
REASONING_FIELDS = ("reasoning_content", "reasoning")


def tokens_in(size: int) -> int:
    """Tokens in `size` bytes of text: a quarter, rounded up."""
    return -(-size // BYTES_PER_TOKEN)


def prompt_tokens(body: JSON) -> int:
    """The prompt of a chat, completion or embedding body, counted as the module says."""
    messages = body.get("messages")
    if isinstance(messages, list):
        size = sum(_message_bytes(m) for m in messages)
        tools = body.get("tools")
        if tools:
            size += len(orjson.dumps(tools))
        return tokens_in(size) + TOKENS_PER_MESSAGE * len(messages)
    source = body.get("prompt", body.get("input"))
    items = source if isinstance(source, list) else [source]
    total = 0
    for item in items:
        if isinstance(item, str):
            total += tokens_in(len(item.encode()))
        elif isinstance(item, list):  # already tokens: a list of token ids
            total += len(item)
        elif isinstance(item, int):
            total += 1
    return total


def answer_usage(body: JSON, answer: JSON, cap: int | None = None) -> TokenUsage:
    """The usage of a complete answer: its prompt, and the text of every choice (at most `cap`
    tokens in all, the output cap the upstream was sent)."""
    generated = reasoning = 0
    for choice in answer.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            text, thought = _output_bytes(message)
            generated += text + thought
            reasoning += thought
        generated += _size(choice.get("text"))
    completion = _capped(tokens_in(generated), cap)
    return TokenUsage(
        prompt_tokens=prompt_tokens(body),
        completion_tokens=completion,
        reasoning_tokens=min(tokens_in(reasoning), completion),
    )


class StreamTally:
    """Counts a stream's output chunk by chunk, and keeps the last usage report seen."""

    __slots__ = ("generated", "pieces", "reasoning", "reasoning_pieces", "usage")

    def __init__(self) -> None:
        self.usage: Any = None
        self.generated = self.reasoning = 0
        self.pieces = self.reasoning_pieces = 0

    def add(self, chunk: JSON) -> None:
        """Count one chunk. Called for every chunk of every stream, so it walks each delta's
        fields once rather than looking up every field it might have."""
        usage = chunk.get("usage")
        if usage is not None:
            self.usage = usage
        for choice in chunk.get("choices") or ():
            text = thought = 0
            delta = choice.get("delta")
            if delta.__class__ is dict:
                for name, value in delta.items():
                    if value.__class__ is str:
                        if name in ANSWER_FIELDS:
                            text += _size(value)
                        elif name in REASONING_FIELDS:
                            thought += _size(value)
                    elif name == "tool_calls":
                        text += _calls_bytes(delta)
            elif "text" in choice:
                text = _size(choice["text"])
            if text or thought:
                self.pieces += 1
                self.generated += text + thought
                if thought:
                    self.reasoning_pieces += 1
                    self.reasoning += thought

    def output_tokens(self, cap: int | None = None) -> int:
        return max(self.pieces, _capped(tokens_in(self.generated), cap))

    def estimate(self, body: JSON, cap: int | None = None) -> TokenUsage:
        """The stream's usage by the gateway's count, for the prompt it was sent as `body` with
        the output cap `cap`."""
        completion = self.output_tokens(cap)
        return TokenUsage(
            prompt_tokens=prompt_tokens(body),
            completion_tokens=completion,
            reasoning_tokens=max(self.reasoning_pieces, min(tokens_in(self.reasoning), completion)),
        )


def _capped(tokens: int, cap: int | None) -> int:
    return tokens if cap is None else min(tokens, cap)


def _message_bytes(message: object) -> int:
    if not isinstance(message, dict):
        return 0
    content = message.get("content")
    if isinstance(content, list):
        size = sum(_size(p.get("text")) for p in content if isinstance(p, dict))
    else:
        size = _size(content)
    size += _size(message.get("role")) + _size(message.get("name"))
    return size + _calls_bytes(message) + _reasoning_bytes(message)


def _output_bytes(part: JSON) -> tuple[int, int]:
    """(bytes of answer text and tool calls, bytes of reasoning) in a message or a delta."""
    text = _size(part.get("content")) + _size(part.get("refusal")) + _calls_bytes(part)
    return text, _reasoning_bytes(part)


def _calls_bytes(part: JSON) -> int:
    size = 0
    for call in part.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            size += _size(function.get("name")) + _size(function.get("arguments"))
    return size


def _reasoning_bytes(part: JSON) -> int:
    return sum(_size(part.get(name)) for name in REASONING_FIELDS)


def _size(value: object) -> int:
    """UTF-8 bytes of a string (and 0 of anything else), without encoding ASCII."""
    if not isinstance(value, str):
        return 0
    return len(value) if value.isascii() else len(value.encode())
