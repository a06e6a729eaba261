"""An OpenAI-compatible upstream whose models refuse in each way the refusal classifier knows, one
that answers, and one that streams at a known pace — for a route's `on_refusal: fallback`.

The model name picks the behaviour (a `paced-<ms>` model sends one word every <ms>
milliseconds). Everything is deterministic, `created` included, so two requests for the same
answer get the same bytes; token counts are word counts, as in `openai_upstream`.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
from aiohttp import web

CREATED = 1_764_000_000
ANSWER = "The capital of France is Paris, on the Seine."
CANNED = "That's beyond my current scope. Let's talk about something else."
PHRASE = "I'm sorry, but I can't help with that request."
# Helpful for eight words, then a canned refusal: past a small hold-back window.
LATE = "Here are some facts about the topic you asked about. " + (
    "This content may violate our usage policies."
)
# A refusal that goes on: caught in the window, the rest is never read.
LONG_REFUSAL = "I can't help with that. " + " ".join(f"reason{i}" for i in range(60))
PACED = " ".join(f"word{i}" for i in range(60))
FILTER_ERROR = {"error": {"message": "Content Exists Risk", "type": "invalid_request_error"}}

# model -> (answer text, finish_reason)
ANSWERS: dict[str, tuple[str, str]] = {
    "answers": (ANSWER, "stop"),
    "canned": (CANNED, "stop"),
    "phrase": (PHRASE, "stop"),
    "empty": ("", "stop"),
    "filtered": ("Here is", "content_filter"),
    "late": (LATE, "stop"),
    "long-refusal": (LONG_REFUSAL, "stop"),
}


def _words(text: str) -> int:
    return len(text.split())


def _prompt_words(body: dict[str, Any]) -> int:
    return sum(_words(str(m.get("content") or "")) for m in body.get("messages", []))


def _usage(body: dict[str, Any], answer: str) -> dict[str, Any]:
    prompt, completion = _prompt_words(body), _words(answer)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _answer(model: str) -> tuple[str, str, float]:
    """(text, finish_reason, seconds between words) for `model`."""
    if model.startswith("paced-"):
        return PACED, "stop", int(model.removeprefix("paced-")) / 1000
    text, finish = ANSWERS[model]
    return text, finish, 0.02 if model == "long-refusal" else 0.0


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json(loads=orjson.loads)
    model = str(body.get("model", ""))
    received = request.app["received"]
    received[model] = received.get(model, 0) + 1
    if model == "filter-error":
        return web.json_response(FILTER_ERROR, status=400)
    text, finish, pause = _answer(model)
    base = {"id": f"chatcmpl-{model}", "created": CREATED, "model": model}
    if body.get("stream"):
        return await _stream(request, body, base, text, finish, pause)
    message = {"role": "assistant", "content": text}
    choice = {"index": 0, "message": message, "finish_reason": finish}
    completion = {**base, "object": "chat.completion", "choices": [choice]}
    completion["usage"] = _usage(body, text)
    return web.json_response(completion, dumps=lambda o: orjson.dumps(o).decode())


async def _stream(
    request: web.Request,
    body: dict[str, Any],
    base: dict[str, Any],
    text: str,
    finish: str,
    pause: float,
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)

    async def send(delta: dict[str, Any], finish_reason: str | None = None) -> None:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        chunk = {**base, "object": "chat.completion.chunk", "choices": [choice]}
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")

    try:
        await send({"role": "assistant", "content": ""})
        for i, word in enumerate(text.split()):
            if pause:
                await asyncio.sleep(pause)
            await send({"content": word if i == 0 else " " + word})
        await send({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {**base, "object": "chat.completion.chunk", "choices": []}
            usage["usage"] = _usage(body, text)
            await response.write(b"data: " + orjson.dumps(usage) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        request.app["completed"][base["model"]] = True
    except ConnectionResetError:  # the gateway closed it: the generation stops here
        request.app["closed"][base["model"]] = True
    return response


async def received(request: web.Request) -> web.Response:
    """How many requests a model got, and whether its last stream ran to the end or was
    closed by the gateway."""
    app, model = request.app, request.match_info["model"]
    return web.json_response(
        {
            "requests": app["received"].get(model, 0),
            "completed": app["completed"].get(model, False),
            "closed": app["closed"].get(model, False),
        }
    )


async def models(_request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": []})


def build_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/received/{model}", received)
    app["received"], app["completed"], app["closed"] = {}, {}, {}
    return app


if __name__ == "__main__":
    web.run_app(build_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None)
