"""The Response object: its output items and parts (shared with the stream's events), and how
a complete internal answer (a `chat.completion`) becomes one."""

from __future__ import annotations

import time
from typing import Any

import orjson

from entrepot.api.responses.items import new_id
from entrepot.exceptions import GatewayError
from entrepot.types import JSON, TokenUsage

# A chat finish reason that cut the answer short, and what the Response says about it.
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def skeleton(settings: JSON, response_id: str, created_at: int) -> JSON:
    """A Response still being generated: the request's settings, no output yet."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        **settings,
        "output": [],
    }


def finish(response: JSON, output: list[JSON], finish_reason: Any, usage: Any) -> JSON:
    """The Response once its output is complete: completed, or incomplete if it was cut off."""
    reason = INCOMPLETE.get(str(finish_reason))
    response["status"] = "completed" if reason is None else "incomplete"
    response["completed_at"] = int(time.time()) if reason is None else None
    response["incomplete_details"] = None if reason is None else {"reason": reason}
    response["output"] = output
    if isinstance(usage, dict):
        response["usage"] = responses_usage(usage)
    return response


def fail(response: JSON, output: list[JSON], exc: GatewayError) -> JSON:
    """The Response when generation broke off: `error` carries one of the codes the Response
    schema allows, and the gateway's message."""
    code = "rate_limit_exceeded" if exc.status_code == 429 else "server_error"
    response["status"] = "failed"
    response["completed_at"] = response["incomplete_details"] = None
    response["error"] = {"code": code, "message": exc.message}
    response["output"] = output
    return response


def responses_usage(usage: JSON) -> JSON:
    """OpenAI's chat usage (also DeepSeek's spelling of cached tokens) as the Responses API
    counts it."""
    tokens = TokenUsage.from_openai(usage) or TokenUsage()
    return {
        "input_tokens": tokens.prompt_tokens,
        "input_tokens_details": {"cached_tokens": tokens.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": tokens.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": tokens.reasoning_tokens},
        "total_tokens": tokens.prompt_tokens + tokens.completion_tokens,
    }


def from_answer(response: JSON, result: JSON) -> JSON:
    """The complete Response for an internal answer (`response` is its skeleton)."""
    choices = result.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}
    finish_reason = choice.get("finish_reason")
    status = "completed" if str(finish_reason) not in INCOMPLETE else "incomplete"
    return finish(response, output_items(message, status), finish_reason, result.get("usage"))


def output_items(message: JSON, status: str) -> list[JSON]:
    """Reasoning, then the message's text, then its function calls, each an output item."""
    items: list[JSON] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        items.append(reasoning_item(new_id("rs"), [reasoning_part(reasoning)], "completed"))
    parts: list[JSON] = []
    if isinstance(message.get("content"), str) and message["content"]:
        parts.append(text_part(message["content"]))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append(refusal_part(message["refusal"]))
    calls = message.get("tool_calls")
    calls = [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []
    if parts or not (calls or items):
        items.append(message_item(new_id("msg"), parts or [text_part("")], status))
    for call in calls:
        function = call.get("function")
        if not isinstance(function, dict):
            function = {}
        call_id, name = call.get("id"), function.get("name")
        items.append(
            function_call_item(
                new_id("fc"),
                call_id if isinstance(call_id, str) and call_id else new_id("call"),
                name if isinstance(name, str) else "",
                arguments_text(function.get("arguments")),
                status,
            )
        )
    return items


def arguments_text(arguments: Any) -> str:
    """A call's arguments as the JSON text the Responses API carries: some upstreams send the
    object itself, which is written out as JSON (never as Python's repr of it)."""
    if isinstance(arguments, str):
        return arguments
    return "" if arguments is None else orjson.dumps(arguments).decode()


def message_item(item_id: str, parts: list[JSON], status: str) -> JSON:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": parts,
    }


def reasoning_item(item_id: str, parts: list[JSON], status: str) -> JSON:
    return {"id": item_id, "type": "reasoning", "summary": [], "content": parts, "status": status}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> JSON:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def text_part(text: str) -> JSON:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def refusal_part(text: str) -> JSON:
    return {"type": "refusal", "refusal": text}


def reasoning_part(text: str) -> JSON:
    return {"type": "reasoning_text", "text": text}
