"""Pure translation between OpenAI's chat format and Anthropic's Messages API.

Kept free of I/O so every mapping rule can be tested without a server. Anything OpenAI can express
but Anthropic cannot (`n`, JSON Schema output, audio or file parts) is refused with a 400 naming
the parameter, rather than silently answered differently from what the client asked.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from entrepot.exceptions import InvalidRequestError, UpstreamError
from entrepot.types import JSON, TokenUsage

DEFAULT_MAX_TOKENS = 4096
JSON_OBJECT_INSTRUCTION = (
    "Answer with a single valid JSON object only, with no other text before or after it."
)
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_TOOL_CHOICES = {"auto": "auto", "required": "any", "none": "none"}


def request_to_anthropic(body: JSON) -> JSON:
    """A Messages API body for an OpenAI chat body; `stream` is left to the caller."""
    if int(body.get("n") or 1) != 1:
        raise InvalidRequestError("anthropic models return one choice; n must be 1", param="n")
    system, messages = _messages(body.get("messages") or [])
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        raise InvalidRequestError(
            "anthropic models do not support response_format json_schema", param="response_format"
        )
    if response_format.get("type") == "json_object":
        system.append(JSON_OBJECT_INSTRUCTION)
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    request: JSON = {
        "model": body.get("model"),
        "messages": messages,
        "max_tokens": DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
    }
    if system:
        request["system"] = "\n\n".join(system)
    stop = body.get("stop")
    if stop:
        request["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            request[key] = body[key]
    # Anthropic's own extended-thinking switch, reachable through the OpenAI SDK's `extra_body`.
    if isinstance(body.get("thinking"), dict):
        request["thinking"] = body["thinking"]
    if body.get("user"):
        request["metadata"] = {"user_id": str(body["user"])}
    if body.get("tools"):
        request["tools"] = [_tool(tool) for tool in body["tools"]]
        choice = _tool_choice(body.get("tool_choice"))
        if body.get("parallel_tool_calls") is False and choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
        request["tool_choice"] = choice
    return request


def _messages(messages: list[JSON]) -> tuple[list[str], list[JSON]]:
    """System prompts hoisted out, and turns merged so roles alternate as Anthropic requires."""
    system: list[str] = []
    turns: list[JSON] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.append("".join(b["text"] for b in _blocks(message.get("content"))))
            continue
        if role == "user":
            blocks = _blocks(message.get("content"))
        elif role == "assistant":
            blocks = _blocks(message.get("content"))
            blocks += [_tool_use(call) for call in message.get("tool_calls") or []]
        elif role == "tool":
            role, blocks = "user", [_tool_result(message)]
        else:
            raise InvalidRequestError(f"unsupported message role {role!r}", param="messages")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return [s for s in system if s], turns


def _blocks(content: Any) -> list[JSON]:
    """Content blocks for string or part-array content; Anthropic rejects empty text blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[JSON] = []
    for part in content:
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind) or ""
            if not text:
                continue
            block: JSON = {"type": "text", "text": text}
        elif kind == "image_url":
            block = _image(part.get("image_url"))
        else:
            raise InvalidRequestError(
                f"anthropic models do not accept {kind!r} content parts", param="messages"
            )
        # Prompt caching is opt-in per block; this is how OpenAI-format clients ask for it.
        if isinstance(part.get("cache_control"), dict):
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _image(image_url: Any) -> JSON:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str):
        raise InvalidRequestError("image_url part without a url", param="messages")
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if encoding != "base64" or not data:
            raise InvalidRequestError("image data URLs must be base64-encoded", param="messages")
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequestError("image_url must be a data: or http(s) URL", param="messages")


def _tool_use(call: JSON) -> JSON:
    function = call.get("function") or {}
    try:
        arguments = orjson.loads(function.get("arguments") or "{}")
    except orjson.JSONDecodeError:
        raise InvalidRequestError(
            f"tool call {call.get('id')!r} has arguments that are not JSON", param="messages"
        ) from None
    if not isinstance(arguments, dict):
        raise InvalidRequestError(
            f"tool call {call.get('id')!r} arguments must be a JSON object", param="messages"
        )
    return {
        "type": "tool_use",
        "id": call.get("id"),
        "name": function.get("name"),
        "input": arguments,
    }


def _tool_result(message: JSON) -> JSON:
    content = message.get("content")
    text = content if isinstance(content, str) else "".join(b["text"] for b in _blocks(content))
    return {"type": "tool_result", "tool_use_id": message.get("tool_call_id"), "content": text}


def _tool(tool: JSON) -> JSON:
    if tool.get("type") != "function":
        raise InvalidRequestError(
            f"anthropic models support only function tools, not {tool.get('type')!r}",
            param="tools",
        )
    function = tool.get("function") or {}
    schema = function.get("parameters") or {"type": "object", "properties": {}}
    spec: JSON = {"name": function.get("name"), "input_schema": schema}
    if function.get("description"):
        spec["description"] = function["description"]
    return spec


def _tool_choice(choice: Any) -> JSON:
    if choice is None:
        return {"type": "auto"}
    if isinstance(choice, str) and choice in _TOOL_CHOICES:
        return {"type": _TOOL_CHOICES[choice]}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    raise InvalidRequestError(f"unsupported tool_choice {choice!r}", param="tool_choice")


def usage_from_anthropic(usage: JSON) -> TokenUsage:
    """Anthropic counts cache reads and writes apart from `input_tokens`; OpenAI counts them in."""
    cache_read = _count(usage.get("cache_read_input_tokens"))
    cache_write = _count(usage.get("cache_creation_input_tokens"))
    return TokenUsage(
        prompt_tokens=_count(usage.get("input_tokens")) + cache_read + cache_write,
        completion_tokens=_count(usage.get("output_tokens")),
        cached_tokens=cache_read,
    )


def _count(value: Any) -> int:
    """A token count as reported; anything but a count is none."""
    return value if type(value) is int and value > 0 else 0


def _malformed(what: str) -> UpstreamError:
    return UpstreamError(f"anthropic upstream sent {what}")


def response_to_openai(message: JSON, model: str) -> JSON:
    """A `chat.completion` for a Messages API answer."""
    if message.get("type") != "message" or not isinstance(message.get("content"), list):
        raise UpstreamError("anthropic upstream sent an answer that is not a message")
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[JSON] = []
    for block in message["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(_string(block, "text"))
        elif kind == "thinking":
            thoughts.append(_string(block, "thinking"))
        elif kind == "tool_use":
            calls.append(_call(block))
        elif not isinstance(kind, str):  # a block type added later is skipped, not refused
            raise _malformed("a content block without a type")
    content = "".join(texts) if texts else None
    reply: JSON = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    if thoughts:
        reply["reasoning_content"] = "".join(thoughts)
    finish = FINISH_REASONS.get(str(message.get("stop_reason")), "stop")
    answer: JSON = {
        "id": f"chatcmpl-{message.get('id') or uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": reply, "logprobs": None, "finish_reason": finish}],
    }
    usage = message.get("usage")
    if isinstance(usage, dict):  # else unreported, and counted by the gateway
        answer["usage"] = usage_from_anthropic(usage).to_openai()
    return answer


def _string(block: JSON, field: str) -> str:
    value = block.get(field, "")
    if not isinstance(value, str):
        raise _malformed(f"a {block['type']} block whose {field} is not a string")
    return value


def _call(block: JSON) -> JSON:
    tool_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(tool_id, str) or not isinstance(name, str) or not isinstance(arguments, dict):
        raise _malformed("a tool_use block without a string id and name and an object input")
    function = {"name": name, "arguments": orjson.dumps(arguments).decode()}
    return {"id": tool_id, "type": "function", "function": function}


class StreamTranslator:
    """Turns Messages API stream events into `chat.completion.chunk` dicts, one event at a time.

    Anthropic numbers content blocks across text, thinking and tool use alike, while OpenAI numbers
    tool calls alone from 0, so block indexes are remapped as tool_use blocks open.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.finished = False
        self._usage: JSON = {}
        self._reported = False  # whether `message_delta` gave the final usage
        self._tool_index: dict[int, int] = {}
        self._started: set[int] = set()

    def feed(self, event: JSON) -> list[JSON]:
        """The chunks one event produces; `error` events are the caller's to raise. An event
        no client could assemble a message from fails the stream. A `message_delta` without
        usage is given the usage known so far, as Anthropic's clients require it."""
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            message = message if isinstance(message, dict) else {}
            if isinstance(message.get("id"), str) and message["id"]:
                self.id = f"chatcmpl-{message['id']}"
            self._merge_usage(message.get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(self._index(event, False), event.get("content_block"))
        if kind == "content_block_delta":
            return self._block_delta(self._index(event, True), event.get("delta"))
        if kind == "content_block_stop":
            self._index(event, True)
        elif kind == "message_delta":
            return self._message_delta(event)
        elif kind == "message_stop":
            self.finished = True
        return []

    def usage_chunk(self) -> JSON:
        """The last chunk: with the usage reported, or none, for the gateway to count."""
        if not self._reported:
            return self.empty_chunk()
        usage = usage_from_anthropic(self._usage).to_openai()
        return {**self._base(), "choices": [], "usage": usage}

    def _index(self, event: JSON, started: bool) -> int:
        index = event.get("index")
        if type(index) is not int or (started and index not in self._started):
            raise _malformed(f"a {event['type']} event for a content block never started")
        return index

    def _message_delta(self, event: JSON) -> list[JSON]:
        if isinstance(event.get("usage"), dict):
            self._merge_usage(event["usage"])
            self._reported = True
        else:
            event["usage"] = {"output_tokens": _count(self._usage.get("output_tokens"))}
        delta = event.get("delta")
        stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        return [self._chunk({}, FINISH_REASONS.get(str(stop_reason), "stop"))]

    def empty_chunk(self) -> JSON:
        """A chunk that says nothing: a carrier for an event that translates into none."""
        return {**self._base(), "choices": []}

    def _block_start(self, index: int, block: Any) -> list[JSON]:
        if not isinstance(block, dict):
            raise _malformed("a content_block_start event without a block")
        self._started.add(index)
        if block.get("type") == "tool_use":
            position = self._tool_index[index] = len(self._tool_index)
            function = {"name": block.get("name"), "arguments": ""}
            call = {"index": position, "id": block.get("id"), "type": "function"}
            return [self._chunk({"tool_calls": [{**call, "function": function}]})]
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        return []

    def _block_delta(self, index: int, delta: Any) -> list[JSON]:
        kind = delta.get("type") if isinstance(delta, dict) else None
        if kind == "text_delta":
            return [self._chunk({"content": _string(delta, "text")})]
        if kind == "thinking_delta":
            return [self._chunk({"reasoning_content": _string(delta, "thinking")})]
        if kind == "input_json_delta" and index in self._tool_index and delta.get("partial_json"):
            call = {
                "index": self._tool_index[index],
                "function": {"arguments": delta["partial_json"]},
            }
            return [self._chunk({"tool_calls": [call]})]
        return []

    def _merge_usage(self, usage: Any) -> None:
        """`message_delta` usage is cumulative, so later counts replace earlier ones."""
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})

    def _base(self) -> JSON:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }

    def _chunk(self, delta: JSON, finish_reason: str | None = None) -> JSON:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return {**self._base(), "choices": [choice]}
