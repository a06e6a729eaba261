"""An internal answer (a `chat.completion`) as an Anthropic message — or, when an Anthropic
deployment answered, that deployment's own message, as it sent it.

Two mappings are shared with the stream encoder: why the answer stopped, and what it used.
Anthropic counts `input_tokens` without the prompt-cache reads, which it reports apart
(`cache_read_input_tokens`); the internal usage counts them in, as OpenAI does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from entrepot.exceptions import UpstreamError
from entrepot.providers.anthropic import NATIVE_MESSAGE
from entrepot.types import JSON, TokenUsage

_STOPS = {
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


@dataclass(frozen=True, slots=True)
class Asked:
    """What the answer is written for: the model name the client asked for, which it is
    answered under, and its stop sequences, which `stop_sequence` must name."""

    model: str
    stop_sequences: tuple[str, ...] = ()


def message(result: JSON, asked: Asked) -> JSON:
    native = result.get(NATIVE_MESSAGE)
    if isinstance(native, dict):
        return {**native, "model": asked.model}
    choice = _first_choice(result)
    reply = choice.get("message")
    if not isinstance(reply, dict):
        reply = {}
    content: list[JSON] = []
    thought = reasoning_of(reply)
    if thought:
        content.append({"type": "thinking", "thinking": thought, "signature": ""})
    text = _text_of(reply.get("content"))
    refusal = reply.get("refusal")
    if text or (isinstance(refusal, str) and refusal):
        content.append({"type": "text", "text": text or refusal})
    calls = [tool_use(call) for call in reply.get("tool_calls") or ()]
    content += calls
    finish = "content_filter" if refusal and not text else choice.get("finish_reason")
    reason, sequence = stop_reason(finish, choice.get("stop_reason"), text, bool(calls), asked)
    return {
        "id": message_id(result.get("id")),
        "type": "message",
        "role": "assistant",
        "model": asked.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage(result.get("usage")),
    }


def message_id(internal_id: Any) -> str:
    """Anthropic's `msg_` ids, from the internal answer's id where it has one."""
    if isinstance(internal_id, str) and internal_id:
        return "msg_" + internal_id.removeprefix("chatcmpl-")
    return f"msg_{uuid.uuid4().hex}"


def stop_reason(
    finish: Any, matched: Any, text: str, called: bool, asked: Asked
) -> tuple[str, str | None]:
    """Anthropic's `stop_reason` and `stop_sequence` for an internal finish reason. A plain
    stop is `stop_sequence` only when it is shown to be one: the upstream named the sequence
    (vLLM's `stop_reason` on the choice), or the text ends with it."""
    if finish in _STOPS:
        return _STOPS[finish], None
    if called:
        return "tool_use", None
    if isinstance(matched, str) and matched in asked.stop_sequences:
        return "stop_sequence", matched
    for sequence in asked.stop_sequences:
        if sequence and text.endswith(sequence):
            return "stop_sequence", sequence
    return "end_turn", None


def usage(reported: Any) -> JSON:
    tokens = TokenUsage.from_openai(reported) or TokenUsage()
    cached = min(tokens.cached_tokens, tokens.prompt_tokens)
    return {
        "input_tokens": tokens.prompt_tokens - cached,
        "output_tokens": tokens.completion_tokens,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }


def tool_use(call: Any) -> JSON:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        raise UpstreamError("the upstream sent a tool call without a function")
    raw = function.get("arguments") or "{}"
    try:
        arguments = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        arguments = None
    if not isinstance(arguments, dict):
        raise UpstreamError("the upstream sent tool call arguments that are not a JSON object")
    tool_id, name = call.get("id"), function.get("name")
    if not isinstance(tool_id, str) or not tool_id:
        tool_id = f"toolu_{uuid.uuid4().hex}"
    name = name if isinstance(name, str) else ""
    return {"type": "tool_use", "id": tool_id, "name": name, "input": arguments}


def reasoning_of(part: JSON) -> str:
    """A message's or delta's reasoning text, under either name upstreams give it."""
    for name in ("reasoning_content", "reasoning"):
        value = part.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def _first_choice(result: JSON) -> JSON:
    choices = result.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""
