"""A deterministic OpenAI-compatible upstream for exact-number checks and fault injection.

The upstream model name picks the behaviour: `echo-model` answers "echo: <last user text>"
(as does `sleep-N`, after N milliseconds, and `slow-bytes`, one byte at a time);
`reasoner` adds `reasoning_content` and DeepSeek-style cache counts; `fail-500`, `hang`, `reset`,
`rate-limited` (with a Retry-After), `malformed-json`, `empty-body`, `error-200` (an error object)
and `odd-choices` (choices that are not objects; these four with status 200) fail in the way their
names say; `midstream-drop` (connection reset) and `truncated-sse` (a clean close without a finish
reason or `[DONE]`) break a stream after its second word and answer non-streaming requests
normally. Billing checks: `no-usage` answers like `echo-model` but never reports usage;
`slow-stream` streams one word every `SLOW_WORD_SECONDS` (`slow-stream-drop` resets the connection
after its fourth word), so a client can leave mid-answer; `max-tokens-only` ignores
`max_completion_tokens`, as many servers do, and writes `max_tokens` words (else `OWN_CAP`).
Upstream quirks: `llamacpp-tool-stream` streams its two tool calls as llama.cpp's server does,
repeating name, id and type in every delta; `tool-call-no-index` leaves out the deltas' `index`;
`tool-call-whole` sends both calls whole in one delta. `ignores-n` answers one choice (streamed
or not) whatever `n` says, with the seed in its answer; `caps-n-2` answers at most two;
`empty-choices` answers none; `fails-on-refill` answers one choice to a call asking for three or
more, and fails (500) the call asking for the rest. `error-with-traceback` fails (500) with a
Python traceback full of server paths, and `midstream-traceback` streams one word, then an error
event with one.
Token counts are word counts, so tests can compute the expected bill by hand. Known quality:
`weak-on-hard` answers like `echo-model` except "I do not know" to a prompt containing "hard".
Every chat request is counted per model (`GET /received/<model>`), so a test can tell how many
times a request was sent; `gate` fails (503), holds or answers as `POST /gate` sets it, and
`GET /gate` says how many requests it holds.
Malformed answers (streamed or not, each with usage): `tool-arguments-not-string` calls a tool
with its arguments as an object; `choices-without-delta` leaves out `delta` (or `message`);
`reasoning-number` sends `reasoning_content` as a number; `delta-not-object` sends a string for
the delta (or message); `tool-calls-not-list` sends `tool_calls` as an object.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import time
from typing import Any

import orjson
from aiohttp import web

EXPECTED_KEY = os.environ.get("FAKE_OPENAI_KEY", "test-upstream-key")
RETRY_AFTER_SECONDS = "7"
SLOW_BYTE_SECONDS = 0.001
SLOW_WORD_SECONDS = 0.05
OWN_CAP = 200
BROKEN_EVENT = b'data: {"id": "chatcmpl-fake", "choi\n\n'
BROKEN_JSON = b'{"id": "chatcmpl-fake", "choi'
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/llm/venv/lib/python3.11/site-packages/server/engine.py", line 812, in run\n'
    "    tokens = self.tokenize(prompt)\n"
    "RuntimeError: tokenizer failed on /srv/llm/models/secret-model.gguf"
)
TOOL_QUIRKS = ("llamacpp-tool-stream", "tool-call-no-index", "tool-call-whole")
HOSTILE = (
    "tool-arguments-not-string",
    "choices-without-delta",
    "reasoning-number",
    "delta-not-object",
    "tool-calls-not-list",
)
HOSTILE_ARGUMENTS = {"city": "Paris", "days": [1, 2]}


def _words(text: str) -> int:
    return len(text.split())


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
            return str(content)
    return ""


def _prompt_words(body: dict[str, Any]) -> int:
    if "messages" in body:
        return sum(_words(str(m.get("content") or "")) for m in body["messages"])
    prompt = body.get("prompt", "")
    return _words(prompt if isinstance(prompt, str) else " ".join(map(str, prompt)))


def _usage(body: dict[str, Any], answer: str, reasoning: str = "") -> dict[str, Any]:
    prompt = _prompt_words(body)
    completion = _words(answer) + _words(reasoning)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": _words(reasoning)}
        usage["prompt_cache_hit_tokens"] = min(2, prompt)
    return usage


async def _fault(model: str, request: web.Request, stream: bool) -> web.StreamResponse | None:
    if model.startswith("sleep-"):
        await asyncio.sleep(int(model.removeprefix("sleep-")) / 1000)
    if model == "gate":
        return await _gate(request)
    if model == "toggle" and request.app.get("toggle_failing"):
        return web.json_response({"error": {"message": "toggled off"}}, status=503)
    if model == "fail-500":
        return web.json_response({"error": {"message": "upstream exploded"}}, status=500)
    if model == "error-with-traceback":
        return web.json_response({"error": {"message": TRACEBACK}}, status=500)
    if model == "rate-limited":
        return web.json_response(
            {"error": {"message": "slow down"}},
            status=429,
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    if model == "odd-choices":
        odd = orjson.dumps({"id": "chatcmpl-odd", "object": "chat.completion", "choices": ["odd"]})
        return web.Response(
            body=b"data: " + odd + b"\n\n" if stream else odd,
            content_type="text/event-stream" if stream else "application/json",
        )
    if model == "error-200":
        error = orjson.dumps({"error": {"message": "quota check failed", "type": "server_error"}})
        return web.Response(
            body=b"data: " + error + b"\n\n" if stream else error,
            content_type="text/event-stream" if stream else "application/json",
        )
    if model in ("malformed-json", "empty-body"):
        body = (BROKEN_EVENT if stream else BROKEN_JSON) if model == "malformed-json" else b""
        return web.Response(
            body=body, content_type="text/event-stream" if stream else "application/json"
        )
    if model == "hang":
        await asyncio.sleep(30)
    if model == "reset":
        assert request.transport is not None
        request.transport.abort()
        return web.Response()
    return None


async def _gate(request: web.Request) -> web.Response | None:
    gate = request.app["gate"]
    gate["held"] += 1
    try:
        while gate["state"] == "hold":
            await asyncio.sleep(0.01)
    finally:
        gate["held"] -= 1
    if gate["state"] == "fail":
        return web.json_response({"error": {"message": "the gate is closed"}}, status=503)
    return None


def _answer(body: dict[str, Any]) -> tuple[str, str, list[dict[str, Any]] | None]:
    text = _last_user_text(body.get("messages", []))
    reasoning = "let me think" if body.get("model") == "reasoner" else ""
    tools = body.get("tools")
    if tools and "weather" in text:
        name = tools[0]["function"]["name"]
        cities = ["Paris", "Rome"] if body.get("model") in TOOL_QUIRKS else ["Paris"]
        calls = [
            {
                "id": f"call_{i + 1}",
                "type": "function",
                "function": {"name": name, "arguments": f'{{"city": "{city}"}}'},
            }
            for i, city in enumerate(cities)
        ]
        return "", reasoning, calls
    if body.get("model") == "ignores-n" and body.get("seed") is not None:
        return f"echo: {text} (seed {body['seed']})", reasoning, None
    if body.get("model") == "weak-on-hard" and "hard" in text:
        return "I do not know", reasoning, None
    if body.get("model") == "max-tokens-only":
        return " ".join(["word"] * int(body.get("max_tokens") or OWN_CAP)), reasoning, None
    if (body.get("response_format") or {}).get("type") == "json_object":
        return '{"echo": true}', reasoning, None
    return f"echo: {text}", reasoning, None


async def chat(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Authorization") != f"Bearer {EXPECTED_KEY}":
        return web.json_response({"error": {"message": "bad key"}}, status=401)
    body = await request.json(loads=orjson.loads)
    request.app["last"] = body
    model = body.get("model", "")
    received = request.app["received"]
    received[model] = received.get(model, 0) + 1
    fault = await _fault(model, request, bool(body.get("stream")))
    if fault is not None:
        return fault
    if model == "fails-on-refill" and int(body.get("n") or 1) < 3:
        return web.json_response({"error": {"message": "refill refused"}}, status=500)
    if model in HOSTILE:
        return await _hostile(request, body, model)
    answer, reasoning, tool_calls = _answer(body)
    base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": model}
    finish = "tool_calls" if tool_calls else "stop"
    if body.get("stream"):
        return await _stream_chat(request, body, base, answer, reasoning, tool_calls, finish)
    message: dict[str, Any] = {"role": "assistant", "content": answer or None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = tool_calls
    choices = [
        {"index": i, "message": message, "finish_reason": finish}
        for i in range(_choice_count(body))
    ]
    usage = _usage(body, answer, reasoning)
    completion = {**base, "object": "chat.completion", "choices": choices, "usage": usage}
    if model == "no-usage":
        del completion["usage"]
    if model == "slow-bytes":
        data = orjson.dumps(completion)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(data)
        await response.prepare(request)
        await _write(response, data, slow=True)
        await response.write_eof()
        return response
    return web.json_response(completion, dumps=lambda o: orjson.dumps(o).decode())


def _choice_count(body: dict[str, Any]) -> int:
    asked = int(body.get("n") or 1)
    fixed = {"ignores-n": 1, "caps-n-2": min(asked, 2), "empty-choices": 0, "fails-on-refill": 1}
    return fixed.get(body.get("model", ""), asked)


def _tool_deltas(model: str, calls: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The `tool_calls` of each delta that streams `calls`, as the model's server sends them."""
    if model == "tool-call-whole":
        return [[{"index": i, **call} for i, call in enumerate(calls)]]
    deltas: list[list[dict[str, Any]]] = []
    for i, call in enumerate(calls):
        arguments = call["function"]["arguments"]
        pieces = [arguments[:5], arguments[5:12], arguments[12:]]
        if model == "llamacpp-tool-stream":
            function = call["function"]
            deltas += [
                [{"index": i, **call, "function": {**function, "arguments": piece}}]
                for piece in pieces
            ]
        elif model == "tool-call-no-index":
            opening = {**call, "function": {**call["function"], "arguments": ""}}
            deltas += [[opening], *([{"function": {"arguments": p}}] for p in pieces)]
        else:
            deltas.append([{"index": i, **call}])
    return deltas


async def _write(response: web.StreamResponse, data: bytes, slow: bool) -> None:
    """Send `data` at once, or (`slow`) one byte at a time with a short pause after each."""
    if not slow:
        await response.write(data)
        return
    for offset in range(len(data)):
        await response.write(data[offset : offset + 1])
        await asyncio.sleep(SLOW_BYTE_SECONDS)


async def _stream_chat(
    request: web.Request,
    body: dict[str, Any],
    base: dict[str, Any],
    answer: str,
    reasoning: str,
    tool_calls: list[dict[str, Any]] | None,
    finish: str,
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    model = body.get("model")
    slow = model == "slow-bytes"
    count = _choice_count(body)

    async def send(delta: dict[str, Any], finish_reason: str | None = None) -> None:
        """The same delta for each of the `n` choices (one, unless `n` asks for more)."""
        choices = [
            {"index": i, "delta": delta, "finish_reason": finish_reason} for i in range(count)
        ]
        chunk = {**base, "object": "chat.completion.chunk", "choices": choices}
        await _write(response, b"data: " + orjson.dumps(chunk) + b"\n\n", slow)

    await send({"role": "assistant", "content": ""})
    if reasoning:
        await send({"reasoning_content": reasoning})
    for i, word in enumerate(answer.split(" ")):
        if model in ("slow-stream", "slow-stream-drop"):
            await asyncio.sleep(SLOW_WORD_SECONDS)
        await send({"content": word if i == 0 else " " + word})
        if model == "slow-stream-drop" and i == 3:
            assert request.transport is not None
            request.transport.abort()
            return response
        if model == "midstream-drop" and i == 1:
            assert request.transport is not None
            request.transport.abort()
            return response
        if model == "truncated-sse" and i == 1:
            await response.write_eof()
            return response
        if model == "midstream-traceback" and i == 0:
            error = orjson.dumps({"error": {"message": TRACEBACK, "type": "server_error"}})
            await _write(response, b"data: " + error + b"\n\n", slow)
            await response.write_eof()
            return response
    for calls in _tool_deltas(str(model), tool_calls or []):
        await send({"tool_calls": calls})
    await send({}, finish)
    if (body.get("stream_options") or {}).get("include_usage") and model != "no-usage":
        usage_chunk = {
            **base,
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": _usage(body, answer, reasoning),
        }
        await _write(response, b"data: " + orjson.dumps(usage_chunk) + b"\n\n", slow)
    await _write(response, b"data: [DONE]\n\n", slow)
    await response.write_eof()
    return response


def _hostile_parts(model: str) -> tuple[list[Any], Any]:
    """The malformed stream choices (before the finish) and the malformed whole message."""
    call = {"index": 0, "id": "call_1", "type": "function"}
    call["function"] = {"name": "lookup", "arguments": HOSTILE_ARGUMENTS}
    text = {"index": 0, "delta": {"content": "echo: hi"}}
    parts: dict[str, tuple[list[Any], Any]] = {
        "tool-arguments-not-string": (
            [{"index": 0, "delta": {"tool_calls": [call]}}],
            {"role": "assistant", "content": None, "tool_calls": [call]},
        ),
        "choices-without-delta": ([{"index": 0}, text, {"index": 0}], None),
        "reasoning-number": (
            [{"index": 0, "delta": {"reasoning_content": 42}}, text],
            {"role": "assistant", "content": "echo: hi", "reasoning_content": 42},
        ),
        "delta-not-object": ([{"index": 0, "delta": "oops"}, text], "oops"),
        "tool-calls-not-list": (
            [{"index": 0, "delta": {"tool_calls": call}}, text],
            {"role": "assistant", "content": "echo: hi", "tool_calls": call},
        ),
    }
    return parts[model]


async def _hostile(request: web.Request, body: dict[str, Any], model: str) -> web.StreamResponse:
    choices, message = _hostile_parts(model)
    base = {"id": "chatcmpl-hostile", "created": int(time.time()), "model": model}
    usage = _usage(body, "echo: hi")
    finish: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
    if model != "choices-without-delta":
        finish["delta"] = {}
    if not body.get("stream"):
        choice = {**finish, "message": message} if message is not None else finish
        completion = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
        return web.json_response(completion, dumps=lambda o: orjson.dumps(o).decode())
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    chunks = [{**base, "object": "chat.completion.chunk", "choices": [c]} for c in choices]
    chunks.append({**base, "object": "chat.completion.chunk", "choices": [finish]})
    chunks.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    for chunk in chunks:
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def completions(request: web.Request) -> web.StreamResponse:
    body = await request.json(loads=orjson.loads)
    fault = await _fault(body.get("model", ""), request, bool(body.get("stream")))
    if fault is not None:
        return fault
    prompt = body.get("prompt", "")
    answer = f"echo: {prompt if isinstance(prompt, str) else prompt[0]}"
    base = {"id": "cmpl-fake", "created": int(time.time()), "model": body.get("model")}
    if body.get("stream"):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in answer.split(" "):
            choice = {"text": word + " ", "index": 0, "logprobs": None, "finish_reason": None}
            chunk = {**base, "object": "text_completion", "choices": [choice]}
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        usage_chunk = {
            **base,
            "object": "text_completion",
            "choices": [],
            "usage": _usage(body, answer),
        }
        await response.write(b"data: " + orjson.dumps(usage_chunk) + b"\n\ndata: [DONE]\n\n")
        await response.write_eof()
        return response
    choice = {"text": answer, "index": 0, "logprobs": None, "finish_reason": "stop"}
    return web.json_response(
        {**base, "object": "text_completion", "choices": [choice], "usage": _usage(body, answer)}
    )


async def embeddings(request: web.Request) -> web.Response:
    body = await request.json(loads=orjson.loads)
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = []
    for i, text in enumerate(inputs):
        digest = hashlib.sha256(str(text).encode()).digest()
        data.append({"object": "embedding", "index": i, "embedding": [b / 255 for b in digest[:8]]})
    tokens = sum(_words(str(t)) for t in inputs)
    return web.json_response(
        {
            "object": "list",
            "model": body["model"],
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def last_request(request: web.Request) -> web.Response:
    return web.json_response(request.app.get("last"))


async def control(request: web.Request) -> web.Response:
    """Tests switch the `toggle` model between failing and healthy."""
    request.app["toggle_failing"] = bool((await request.json())["failing"])
    return web.json_response({"ok": True})


async def gate(request: web.Request) -> web.Response:
    if request.method == "POST":
        request.app["gate"]["state"] = (await request.json())["state"]
    return web.json_response(request.app["gate"])


async def received(request: web.Request) -> web.Response:
    return web.json_response(request.app["received"].get(request.match_info["model"], 0))


async def models(_request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": []})


def build_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/last-request", last_request)
    app.router.add_post("/control", control)
    app.router.add_get("/gate", gate)
    app.router.add_post("/gate", gate)
    app.router.add_get("/received/{model}", received)
    app["gate"] = {"state": "open", "held": 0}
    app["received"] = {}
    return app


if __name__ == "__main__":
    # A held request ends when its client gives up, so the fake stops at once after a hang.
    web.run_app(
        build_app(),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        print=None,
        handler_cancellation=True,
    )
