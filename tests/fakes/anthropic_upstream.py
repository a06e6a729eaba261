"""A deterministic stand-in for Anthropic's Messages API, for tests and benchmarks.

Rules: the answer is "echo: " + the last user text, cut before the first of the request's
`stop_sequences` it contains (stop_reason "stop_sequence"); with tools and "weather" in that text
it calls the first tool with {"city": "Paris"} — and, with "parallel" too, again with
{"city": "London"} in a second tool_use block; a system prompt containing "think" adds a thinking
block; "fail-midstream" makes a stream send an overloaded_error after its first delta. With
`thinking` enabled, an assistant turn that called tools must begin with its thinking block, as
Anthropic requires. Token counts are word counts; the words of system blocks marked
`cache_control` are counted as cache reads (not in `input_tokens`), and such a prompt also reports
CACHE_WRITE_TOKENS cache writes. The last request body is kept at GET /last-request, and the
number of requests received at GET /received.

Run standalone with `python -m tests.fakes.anthropic_upstream PORT`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

JSON = dict[str, Any]
DEFAULT_KEY = "test-anthropic-key"
LAST_REQUEST: web.AppKey[JSON] = web.AppKey("last_request")
COUNTER: web.AppKey[list[int]] = web.AppKey("counter")
RECEIVED: web.AppKey[list[int]] = web.AppKey("received")
CACHE_WRITE_TOKENS = 3
BAD_BLOCKS = [
    {"type": "text", "text": 5},
    {"type": "hologram", "data": "x"},
    {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": "not an object"},
]
LATE_OUTPUT_TOKENS = 1000


def build_app() -> web.Application:
    app = web.Application()
    app[LAST_REQUEST] = {}
    app[COUNTER] = [0]
    app[RECEIVED] = [0]
    app.router.add_post("/v1/messages", _messages)
    app.router.add_get("/last-request", _last_request)
    app.router.add_get("/received", _received)
    return app


@dataclass
class RunningFake:
    url: str
    app: web.Application

    @property
    def last_request(self) -> JSON:
        return self.app[LAST_REQUEST].copy()


@asynccontextmanager
async def serve(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[RunningFake]:
    """Run the fake inside the current event loop; port 0 picks a free one."""
    app = build_app()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    try:
        yield RunningFake(f"http://{host}:{bound}", app)
    finally:
        await runner.cleanup()


def _error(status: int, kind: str, message: str) -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return web.json_response(body, status=status)


async def _last_request(request: web.Request) -> web.Response:
    return web.json_response(request.app[LAST_REQUEST])


async def _received(request: web.Request) -> web.Response:
    return web.json_response(request.app[RECEIVED][0])


async def _messages(request: web.Request) -> web.StreamResponse:
    request.app[RECEIVED][0] += 1
    if request.headers.get("x-api-key") != os.environ.get("FAKE_ANTHROPIC_KEY", DEFAULT_KEY):
        return _error(401, "authentication_error", "invalid x-api-key")
    try:
        body = await request.json()
    except json.JSONDecodeError:
        return _error(400, "invalid_request_error", "body is not JSON")
    request.app[LAST_REQUEST].clear()
    request.app[LAST_REQUEST].update(body)
    for field in ("model", "messages", "max_tokens"):
        if field not in body:
            return _error(400, "invalid_request_error", f"{field}: Field required")
    unthought = _tool_turn_without_thinking(body)
    if unthought is not None:
        return _error(400, "invalid_request_error", unthought)
    request.app[COUNTER][0] += 1
    message = _answer(body, f"msg_fake{request.app[COUNTER][0]:04d}")
    if body.get("stream"):
        return await _stream(request, message, fail="fail-midstream" in _last_user_text(body))
    if body["model"] == "message-delta-without-usage":
        del message["usage"]
    if body["model"] == "bad-content-blocks":
        message["content"] = BAD_BLOCKS
    return web.json_response(message)


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    for block in content or []:
        if block.get("type") == "text":
            texts.append(block["text"])
        elif block.get("type") == "tool_result":
            texts.extend(_texts(block.get("content")))
    return texts


def _tool_turn_without_thinking(body: JSON) -> str | None:
    if (body.get("thinking") or {}).get("type") != "enabled":
        return None
    for i, message in enumerate(body["messages"]):
        content = message.get("content")
        if message.get("role") != "assistant" or not isinstance(content, list):
            continue
        kinds = [block.get("type") for block in content]
        if "tool_use" in kinds and kinds[0] not in ("thinking", "redacted_thinking"):
            return f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`"
    return None


def _cached_words(system: Any) -> int:
    if not isinstance(system, list):
        return 0
    return sum(len(b["text"].split()) for b in system if b.get("cache_control"))


def _last_user_text(body: JSON) -> str:
    users = [m for m in body["messages"] if m.get("role") == "user"]
    return " ".join(_texts(users[-1]["content"])) if users else ""


def _answer(body: JSON, message_id: str) -> JSON:
    last = _last_user_text(body)
    system = " ".join(_texts(body.get("system")))
    blocks: list[JSON] = []
    if "think" in system:
        blocks.append({"type": "thinking", "thinking": "thinking about it", "signature": "sig"})
    tools = body.get("tools") or []
    stop_sequence = None
    if tools and "weather" in last:
        cities = ["Paris", "London"] if "parallel" in last else ["Paris"]
        for n, city in enumerate(cities, 1):
            tool = {"type": "tool_use", "id": f"toolu_{n}", "name": tools[0]["name"]}
            blocks.append({**tool, "input": {"city": city}})
        stop_reason, out_words = "tool_use", 3 * len(cities)
    else:
        text, stop_sequence = _until_stop(f"echo: {last}", body.get("stop_sequences") or [])
        words = text.split()
        stop_reason = "end_turn" if stop_sequence is None else "stop_sequence"
        if len(words) > body["max_tokens"]:
            words, stop_reason, stop_sequence = words[: body["max_tokens"]], "max_tokens", None
        blocks.append({"type": "text", "text": " ".join(words)})
        out_words = len(words)
    request_text = _texts(body.get("system")) + [
        text for m in body["messages"] for text in _texts(m["content"])
    ]
    cached = _cached_words(body.get("system"))
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {
            "input_tokens": len(" ".join(request_text).split()) - cached,
            "output_tokens": out_words,
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": CACHE_WRITE_TOKENS if cached else 0,
        },
    }


def _until_stop(text: str, stops: list[str]) -> tuple[str, str | None]:
    """The text up to the first stop sequence it contains, and that sequence."""
    found = [(text.index(s), s) for s in stops if s in text]
    if not found:
        return text, None
    at, stop = min(found)
    return text[:at], stop


def _block_events(index: int, block: JSON) -> list[JSON]:
    if block["type"] == "text":
        start: JSON = {"type": "text", "text": ""}
        words = block["text"].split(" ")
        pieces = [w + " " for w in words[:-1]] + words[-1:]
        deltas = [{"type": "text_delta", "text": p} for p in pieces]
    elif block["type"] == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [
            {"type": "thinking_delta", "thinking": "thinking "},
            {"type": "thinking_delta", "thinking": "about it"},
            {"type": "signature_delta", "signature": block["signature"]},
        ]
    else:
        start = {**block, "input": {}}
        arguments = json.dumps(block["input"])
        deltas = [
            {"type": "input_json_delta", "partial_json": arguments[i : i + 5]}
            for i in range(0, len(arguments), 5)
        ]
    return [
        {"type": "content_block_start", "index": index, "content_block": start},
        *({"type": "content_block_delta", "index": index, "delta": d} for d in deltas),
        {"type": "content_block_stop", "index": index},
    ]


async def _stream(request: web.Request, message: JSON, *, fail: bool) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[JSON] = [{"type": "message_start", "message": start}, {"type": "ping"}]
    for index, block in enumerate(message["content"]):
        events.extend(_block_events(index, block))
    events.append(
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": message["stop_reason"],
                "stop_sequence": message["stop_sequence"],
            },
            "usage": {"output_tokens": usage["output_tokens"]},
        }
    )
    events.append({"type": "message_stop"})
    events = _hostile(message["model"], events)
    for event in events:
        await response.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        if fail and event["type"] == "content_block_delta":
            error = {
                "type": "error",
                "error": {"type": "overloaded_error", "message": "Overloaded"},
            }
            await response.write(f"event: error\ndata: {json.dumps(error)}\n\n".encode())
            break
    await response.write_eof()
    return response


def _hostile(model: str, events: list[JSON]) -> list[JSON]:
    """The stream's events as a malformed target sends them (unchanged for any other model)."""
    if model == "delta-unstarted-index":
        stray = {"type": "content_block_delta", "index": 5}
        stray["delta"] = {"type": "text_delta", "text": " stray"}
        return [*events[:2], stray, *events[2:]]
    if model == "message-delta-without-usage":
        return [
            {k: v for k, v in e.items() if e["type"] != "message_delta" or k != "usage"}
            for e in events
        ]
    if model == "events-after-stop":
        late = {"type": "content_block_delta", "index": 0}
        late["delta"] = {"type": "text_delta", "text": " late"}
        usage = {"output_tokens": LATE_OUTPUT_TOKENS}
        stop = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage}
        return [*events, late, stop, {"type": "message_stop"}]
    if model == "bad-content-blocks":
        bad = [
            {"type": "content_block_start", "index": 0, "content_block": "text"},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 5}},
            {"type": "content_block_delta", "index": "one", "delta": {"type": "text_delta"}},
            {"type": "content_block_start", "index": 1, "content_block": BAD_BLOCKS[2]},
            {"type": "content_block_delta", "index": 1, "delta": "partial"},
            {"type": "content_block_stop", "index": 1},
        ]
        return [*events[:2], *bad, *events[-2:]]
    return events


def main() -> None:
    web.run_app(build_app(), host="127.0.0.1", port=int(sys.argv[1]))


if __name__ == "__main__":
    main()
